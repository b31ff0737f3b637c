"""The NetworkPolicies: ingress denied by default, each allowed path one named policy, task pods' egress, and the
switch for clusters without an enforcing CNI. The paths tried on a real cluster: tests/node/test_network_policies.py."""

import yaml

from components import kube
from testbed.runs import dev, stack


def policies(run):
    return {p.k8s_name.split("-", 1)[1]: p.inputs["spec"] for p in run.of_kind("NetworkPolicy")}


def test_ingress_is_denied_by_default_and_each_allowed_path_is_one_named_policy():
    found = policies(stack("prod"))
    assert set(found) == {"deny-ingress", "api-from-tasks", "api-from-ingress", "pool-from-airflow",
                          "pg-from-pool", "pg-from-cluster", "pg-from-operator", "task-egress", "statsd-exporter"}
    assert found["deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_task_pods_may_send_statsd_to_the_exporter_and_prometheus_may_scrape_the_database_exporters():
    egress = policies(stack("prod"))["task-egress"]["egress"]
    statsd = [rule for rule in egress if rule.get("ports") == [{"port": 9125, "protocol": "UDP"}]]
    # The same selector the exporter's Deployment selects its pods by.
    assert statsd and statsd[0]["to"] == [{"podSelector": {"matchLabels": kube.selector_labels("prod", "statsd-exporter")}}]
    scraped = policies(stack("prod", {"metrics": {"prometheusOperator": True}}))
    assert scraped["pg-metrics"]["ingress"][0]["ports"] == [{"port": 9187, "protocol": "TCP"}]
    assert scraped["pool-metrics"]["ingress"][0]["ports"] == [{"port": 9127, "protocol": "TCP"}]
    assert "pg-metrics" not in policies(stack("prod"))


def test_prometheus_scrapes_from_any_namespace_but_the_instances_own_where_task_pods_run():
    run = stack("prod", {"metrics": {"prometheusOperator": True}})
    namespace = run.of_kind("Namespace")[0].inputs["metadata"]["name"]
    found = policies(run)
    not_here = {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [namespace]}]}}
    assert found["pg-metrics"]["ingress"][0]["from"] == [not_here]
    assert found["pool-metrics"]["ingress"][0]["from"] == [not_here]
    metrics_port = [rule for rule in found["statsd-exporter"]["ingress"] if rule["ports"][0]["port"] == 9102]
    assert metrics_port[0]["from"] == [not_here]


def test_only_airflow_components_reach_pgbouncer_and_only_pgbouncer_and_the_operator_reach_postgres():
    found = policies(stack("prod"))
    pool = found["pool-from-airflow"]
    assert pool["podSelector"] == {"matchLabels": {"cnpg.io/poolerName": "prod-pgbouncer"}}
    (rule,) = pool["ingress"]
    (expression,) = rule["from"][0]["podSelector"]["matchExpressions"]
    assert "task" not in expression["values"]
    assert set(expression["values"]) == {"api-server", "scheduler", "dag-processor", "triggerer", "migrate", "db-cleanup"}
    postgres = {"cnpg.io/cluster": "prod-pg", "cnpg.io/podRole": "instance"}
    assert found["pg-from-pool"]["podSelector"]["matchLabels"] == postgres
    assert found["pg-from-pool"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"cnpg.io/poolerName": "prod-pgbouncer"}}}]
    assert found["pg-from-operator"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}}
    ]


def test_task_pods_reach_the_execution_api_dns_and_allowed_egress_but_not_the_metadata_service():
    run = stack("prod")
    found = policies(run)
    assert found["api-from-tasks"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "task"
    egress = found["task-egress"]
    assert egress["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "task"
    dns, api, outside, statsd = egress["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api-server"
    assert outside["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]
    # The labels the policies select by are the labels the pods carry.
    api_labels = run.one("Deployment", "prod-api-server").inputs["spec"]["template"]["metadata"]["labels"]
    assert found["api-from-tasks"]["podSelector"]["matchLabels"].items() <= api_labels.items()
    task_labels = yaml.safe_load(run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])["metadata"]["labels"]
    assert egress["podSelector"]["matchLabels"].items() <= task_labels.items()


def test_the_ingress_controller_reaches_the_api_server_only_when_there_is_an_ingress():
    assert "api-from-ingress" not in policies(stack("dev"))
    assert policies(stack("prod", {"network": {"ingressControllerNamespace": "traefik"}}))["api-from-ingress"]["ingress"][0][
        "from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}]


def test_network_policies_can_be_switched_off_for_clusters_without_an_enforcing_cni():
    assert stack("dev", {"network": {"enabled": False}}).of_kind("NetworkPolicy") == []
