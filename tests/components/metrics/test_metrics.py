"""The Metrics component and the metrics settings, under mocks: what the stack renders for Prometheus."""

from __future__ import annotations

import hashlib
import re

import pytest
import yaml

from components import metrics_catalog
from components.settings import ConfigError, parse_settings
from components.metrics_catalog import ALERTS, EXPORTER_IMAGE, EXPORTER_VERSION, STATSD_MAPPING
from testbed.harness import ROOT, run_stack

S3 = {"s3AccessKeyId": "a", "s3SecretAccessKey": "b"}
MONITORING = "kubernetes:monitoring.coreos.com/v1"


def _run(**metrics):
    return run_stack({"metrics": metrics} if metrics else {}, S3)


def _monitoring(run):
    return [r for r in run.resources if r.type.startswith(MONITORING)]


def test_exporter_is_pinned_restricted_and_bounded():
    run = _run()
    deployment = run.by_pulumi_name("Deployment", "dev-statsd-exporter").inputs["spec"]
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == EXPORTER_IMAGE
    resources = container["resources"]
    assert (resources["requests"]["cpu"], resources["requests"]["memory"]) == ("50m", "64Mi")
    assert (resources["limits"]["cpu"], resources["limits"]["memory"]) == ("200m", "256Mi")
    assert "ephemeral-storage" in resources["limits"]  # like every container: a full disk is bounded
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
        "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsUser"] == 65534 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert deployment["replicas"] == 1
    assert {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]} == {
        "statsd": (9125, "UDP"), "metrics": (9102, "TCP")}


def test_image_and_test_build_are_the_same_version():
    go_mod = (ROOT / "toolchain" / "statsd_exporter" / "go.mod").read_text()
    assert re.search(rf"github.com/prometheus/statsd_exporter {re.escape(EXPORTER_VERSION)}\b", go_mod)
    assert EXPORTER_IMAGE.endswith(f":{EXPORTER_VERSION}")


def test_airflow_sends_tagged_statsd_to_the_exporter_service_and_task_pods_too():
    run = _run()
    config = run.one("ConfigMap", "-config").inputs["data"]
    assert config["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert config["AIRFLOW__METRICS__STATSD_HOST"] == "dev-statsd-exporter.airflow-dev.svc"
    assert config["AIRFLOW__METRICS__STATSD_PORT"] == "9125"
    assert config["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "True"
    assert config["AIRFLOW__METRICS__LEGACY_NAMES_ON"] == "False"
    service = run.by_pulumi_name("Service", "dev-statsd-exporter").inputs
    assert service["metadata"]["name"] == "dev-statsd-exporter"
    assert {p["name"]: (p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {
        "statsd": (9125, "UDP"), "metrics": (9102, "TCP")}
    # Task pods read the same ConfigMap, so they send ti.start/ti.finish too.
    template = yaml.safe_load(run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])
    assert {"configMapRef": {"name": "dev-config"}} in template["spec"]["containers"][0]["envFrom"]


def test_mapping_change_rolls_the_exporter():
    run = _run()
    mapping = run.by_pulumi_name("ConfigMap", "dev-statsd-mapping").inputs["data"]["mapping.yaml"]
    assert yaml.safe_load(mapping) == STATSD_MAPPING
    annotations = run.by_pulumi_name("Deployment", "dev-statsd-exporter").inputs["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] == hashlib.sha256(mapping.encode()).hexdigest()


def test_statsd_only_from_the_instance_and_metrics_from_prometheus():
    policy = _run().by_pulumi_name("NetworkPolicy", "dev-statsd-exporter").inputs["spec"]
    udp, tcp = policy["ingress"]
    assert udp["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "dev"}}}]
    assert udp["ports"] == [{"port": 9125, "protocol": "UDP"}]
    assert tcp["ports"] == [{"port": 9102, "protocol": "TCP"}]


def test_no_prometheus_operator_objects_by_default():
    assert _monitoring(_run()) == []


def test_operator_objects_scrape_exporter_and_cnpg_and_carry_the_selector_labels():
    run = _run(prometheusOperator=True, monitorLabels={"release": "kube-prometheus-stack"})
    kinds = sorted((r.kind, r.k8s_name) for r in _monitoring(run))
    assert kinds == [("PodMonitor", "dev-pg"), ("PodMonitor", "dev-pgbouncer"), ("PrometheusRule", "dev-alerts"),
                     ("ServiceMonitor", "dev-statsd-exporter")]
    for resource in _monitoring(run):
        assert resource.metadata["labels"]["release"] == "kube-prometheus-stack"
    monitor = run.by_pulumi_name("ServiceMonitor", "dev-statsd-exporter").inputs["spec"]
    assert monitor["endpoints"] == [{"port": "metrics", "interval": "30s"}]
    pooler = run.by_pulumi_name("PodMonitor", "dev-pgbouncer-metrics").inputs["spec"]
    assert pooler["selector"] == {"matchLabels": {"cnpg.io/poolerName": "dev-pgbouncer"}}
    rules = run.by_pulumi_name("PrometheusRule", "dev-alerts").inputs["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [a.name for a in ALERTS]
    by_name = {r["alert"]: r for r in rules}
    # Thresholds follow the stack: 80% of the pooler's max_client_conn, half the queued timeout (capped at 15m).
    assert by_name["AirflowDatabasePoolerNearLimit"]["expr"].endswith("> 800")
    assert "[15m]" in by_name["AirflowTasksStuckInQueued"]["expr"]
    assert 'job="dev-statsd-exporter"' in by_name["AirflowSchedulerHeartbeatLost"]["expr"]


def test_external_database_and_no_backups_leave_out_the_alerts_that_cannot_apply():
    run = run_stack({"metrics": {"prometheusOperator": True}, "postgres": {"mode": "external"}, "quota": {"enabled": False},
                     "executor": {"taskQueuedTimeoutSeconds": 600}},
                    {**S3, "postgresExternalUri": "postgresql://u:p@db.example.org:5432/airflow"})
    assert sorted(r.kind for r in _monitoring(run)) == ["PrometheusRule", "ServiceMonitor"]  # registered in either order
    rules = run.by_pulumi_name("PrometheusRule", "dev-alerts").inputs["spec"]["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert not names & {"AirflowDatabasePoolerNearLimit", "AirflowDatabaseClientsWaiting", "AirflowDatabaseBackupFailing",
                        "AirflowDatabaseBackupTooOld", "AirflowNamespaceQuotaNearlyFull"}
    assert "[5m]" in next(r for r in rules if r["alert"] == "AirflowTasksStuckInQueued")["expr"]


def test_metrics_off_removes_the_exporter_and_the_statsd_settings():
    run = run_stack({"metrics": {"enabled": False, "prometheusOperator": True}}, S3)
    assert not [r for r in run.resources if "statsd" in (r.k8s_name or "")] and _monitoring(run) == []
    assert not [k for k in run.one("ConfigMap", "-config").inputs["data"] if k.startswith("AIRFLOW__METRICS__")]


@pytest.mark.parametrize("image", ["quay.io/prometheus/statsd-exporter", "quay.io/prometheus/statsd-exporter:latest"])
def test_exporter_image_must_be_an_exact_version(image):
    with pytest.raises(ConfigError, match="metrics.exporterImage"):
        parse_settings({"instance": "dev", "metrics": {"exporterImage": image}})


def test_every_alert_declares_the_series_it_reads_and_has_a_runbook():
    context = metrics_catalog.RuleContext(namespace="n", exporter_job="j", pooler="p", cluster="c")
    for alert in ALERTS:
        read = set(re.findall(r"\b([a-z_:][a-z0-9_:]*)\{", alert.expr(context)))
        assert read == set(alert.series), alert.name
        assert alert.runbook and alert.severity in ("critical", "warning")


def test_the_alert_table_of_the_metrics_page_is_current():
    page = (ROOT / "docs" / "metrics-and-alerts.md").read_text()
    assert f"<!-- alerts:begin -->\n{metrics_catalog.alerts_markdown()}\n<!-- alerts:end -->" in page, (
        "docs/metrics-and-alerts.md's alert table is stale: run scripts/gen-docs"
    )
