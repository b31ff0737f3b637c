"""The PrometheusRule the program renders, checked by Prometheus's own `promtool` (Debian package `prometheus`):
`check rules` parses every expression, and `test rules` replays, for every alert, series that break and then
heal, and expects the alert firing while broken and gone once healed (and not firing before).

The rules come from the stack exactly as `pulumi up` would create them (`run_stack`), not from a copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from components.metrics_catalog import ALERTS
from testbed.harness import run_stack

pytestmark = pytest.mark.slow

NS = 'namespace="airflow-dev"'
AIRFLOW = f'{NS}, job="dev-statsd-exporter"'
BASE = {"namespace": "airflow-dev"}
FLAT_GAP = "0+12x20 240x20 240+12x20"  # a counter that grows, stops for 20 minutes, then grows again


def _alternating(n: int) -> str:
    return " ".join("1" if i % 2 else "0" for i in range(n))


# alert -> input series, eval time while broken (expected labels there), eval times where it must not fire.
# `value` is what `{{ $value }}` renders to in the summary.
CASES: dict[str, dict] = {
    "AirflowSchedulerHeartbeatLost": dict(
        series={f"airflow_scheduler_heartbeat{{{AIRFLOW}}}": FLAT_GAP}, firing=33, quiet=(10, 55), labels={}),
    "AirflowDagProcessorDown": dict(
        series={f"airflow_dag_processor_heartbeat{{{AIRFLOW}}}": FLAT_GAP}, firing=36, quiet=(10, 55), labels={}),
    "AirflowTriggererDown": dict(
        series={f"airflow_triggerer_heartbeat{{{AIRFLOW}}}": FLAT_GAP}, firing=36, quiet=(10, 55), labels={}),
    "AirflowTasksStuckInQueued": dict(
        series={
            f'airflow_ti_queued{{{AIRFLOW}, dag_id="etl", task_id="load", queue="default"}}': "0x10 2x25 0x25",
            # A busy task whose instances leave queued within a minute never fires.
            f'airflow_ti_queued{{{AIRFLOW}, dag_id="etl", task_id="extract", queue="default"}}': _alternating(61),
        },
        firing=30, quiet=(10, 50), labels={"dag_id": "etl", "task_id": "load", "queue": "default"}),
    "AirflowTaskPodCreationRefused": dict(
        series={
            f'airflow_kubernetes_executor_pod_creation_status{{{AIRFLOW}, status="403"}}': "_x10 1+1x20 21x30",
            f'airflow_kubernetes_executor_pod_creation_status{{{AIRFLOW}, status="200"}}': "0+5x60",
        },
        firing=25, quiet=(10, 55), labels={"status": "403"}),
    "AirflowPodPendingTooLong": dict(
        series={f'kube_pod_status_phase{{{NS}, pod="etl-load-x1", phase="Pending"}}': "0x10 1x20 0x30"},
        firing=25, quiet=(10, 45), labels={"pod": "etl-load-x1"}),
    "AirflowPodImagePullFailing": dict(
        series={
            f'kube_pod_container_status_waiting_reason{{{NS}, pod="etl-load-x1", container="base", '
            f'reason="ImagePullBackOff"}}': "0x10 1x20 0x30"
        },
        firing=25, quiet=(10, 45), labels={"pod": "etl-load-x1", "container": "base", "reason": "ImagePullBackOff"}),
    "AirflowNamespaceQuotaNearlyFull": dict(
        series={
            f'kube_resourcequota{{{NS}, resourcequota="dev-quota", resource="pods", type="hard"}}': "200x60",
            f'kube_resourcequota{{{NS}, resourcequota="dev-quota", resource="pods", type="used"}}': "100x10 190x20 100x30",
        },
        firing=28, quiet=(10, 45), labels={"resource": "pods"}),
    "AirflowDatabasePoolerNearLimit": dict(
        series={f'cnpg_pgbouncer_lists_used_clients{{{NS}, pod="dev-pgbouncer-5d8f9-abcde"}}': "100x10 900x20 100x30"},
        firing=25, quiet=(10, 45), labels={"pod": "dev-pgbouncer-5d8f9-abcde"}),
    "AirflowDatabaseClientsWaiting": dict(
        series={
            f'cnpg_pgbouncer_pools_cl_waiting{{{NS}, pod="dev-pgbouncer-5d8f9-abcde", database="airflow", '
            f'user="airflow"}}': "0x10 3x20 0x30"
        },
        firing=25, quiet=(10, 45), labels={"pod": "dev-pgbouncer-5d8f9-abcde"}),
    "AirflowDatabaseBackupFailing": dict(
        series={
            f'barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{NS}, pod="dev-pg-1"}}': "1000x30 3000x30",
            f'barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp{{{NS}, pod="dev-pg-1"}}': "0x10 2000x50",
        },
        firing=25, quiet=(10, 45), labels={}),
    "AirflowDatabaseBackupTooOld": dict(
        # promtool's clock starts at the epoch: a backup taken 100000 s before it is older than 26 hours.
        series={f'barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{NS}, pod="dev-pg-1"}}': "-100000x30 1500x30"},
        firing=20, quiet=(10, 50), labels={}),
    "AirflowDagImportErrors": dict(
        series={f"airflow_dag_processing_import_errors{{{AIRFLOW}}}": "0x10 2x25 0x25"},
        firing=30, quiet=(10, 50), labels={}, value="2"),
    "AirflowMetricsExporterDown": dict(
        series={f"up{{{AIRFLOW}}}": "1x10 0x20 1x30"}, firing=25, quiet=(10, 50), labels={}),
}


def _render(template: str, labels: dict[str, str], value: str) -> str:
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.replace("{{ $value }}", value)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: scripts/test installs it (Debian package prometheus) or set PROMTOOL")
    return path


@pytest.fixture(scope="module")
def rules() -> dict:
    # Backups on, CloudNativePG, quota on: every alert applies.
    run = run_stack({"metrics": {"prometheusOperator": True}}, {"s3AccessKeyId": "a", "s3SecretAccessKey": "b"})
    return run.by_pulumi_name("PrometheusRule", "dev-alerts").inputs["spec"]


def _promtool(promtool: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_every_rule(promtool, rules, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    proc = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(ALERTS)} rules found" in proc.stdout


def test_every_alert_has_a_case():
    assert set(CASES) == {alert.name for alert in ALERTS}


def promtool_tests(rules: dict) -> dict:
    by_name = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    tests = []
    for name, case in CASES.items():
        rule = by_name[name]
        labels = {**BASE, **case["labels"], "severity": rule["labels"]["severity"]}
        annotations = {key: _render(text, labels, case.get("value", "")) for key, text in rule["annotations"].items()}
        checks = [{"eval_time": f"{t}m", "alertname": name, "exp_alerts": []} for t in case["quiet"]]
        checks.insert(1, {"eval_time": f"{case['firing']}m", "alertname": name,
                          "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]})
        tests.append({
            "name": name,
            "interval": "1m",
            "input_series": [{"series": series, "values": values} for series, values in case["series"].items()],
            "alert_rule_test": checks,
        })
    # A scheduler that never sent anything (or an exporter that lost it): absent() fires, with the selector's labels.
    heartbeat = by_name["AirflowSchedulerHeartbeatLost"]
    absent_labels = {**BASE, "job": "dev-statsd-exporter", "severity": "critical"}
    tests.append({
        "name": "AirflowSchedulerHeartbeatLost (no series at all)",
        "interval": "1m",
        "input_series": [{"series": f"airflow_triggerer_heartbeat{{{AIRFLOW}}}", "values": "0+12x20"}],
        "alert_rule_test": [{"eval_time": "5m", "alertname": heartbeat["alert"], "exp_alerts": [{
            "exp_labels": absent_labels,
            "exp_annotations": {k: _render(v, absent_labels, "") for k, v in heartbeat["annotations"].items()},
        }]}],
    })
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


def test_each_alert_fires_when_broken_and_resolves_when_healed(promtool, rules, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(promtool_tests(rules), sort_keys=False))
    proc = _promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert proc.returncode == 0, f"promtool test rules failed:\n{proc.stdout}\n{proc.stderr}"
    assert "SUCCESS" in proc.stdout + proc.stderr
