"""`pulumi up` of a branch-like stack on the test node, through the real engine and with no skipAwait: the
engine's own readiness wait ends with every workload up; a DAG delivered by git-sync runs its task in its own
pod under the task service account; the task's log is readable through the REST API while it runs and from
the stack's bucket afterwards; `destroy` leaves nothing in the cluster.
"""

from __future__ import annotations

import json
import time

import pytest

import engine
from testbed.node.database import cnpg_items
from testbed.node.instance import aws_client, items, object_keys
from testbed.toolchain import pulumi_bin_or_skip

pytestmark = pytest.mark.slow

pulumi_bin_or_skip()

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def test_up_waits_until_every_workload_is_ready(node, deployed):
    stack, up, _ = deployed
    assert up.summary.result == "succeeded"
    namespace = up.outputs["namespace"].value
    deployments = items(node.api, f"/apis/apps/v1/namespaces/{namespace}/deployments")
    components = {d["metadata"]["labels"].get("app.kubernetes.io/component") for d in deployments}
    assert set(AIRFLOW_COMPONENTS) <= components
    for deployment in deployments:
        status, wanted = deployment["status"], deployment["spec"]["replicas"]
        assert status.get("availableReplicas") == wanted, (deployment["metadata"]["name"], status)
    cluster = cnpg_items(node, namespace, "clusters")[0]
    assert cluster["status"]["phase"] == "Cluster in healthy state"
    assert cluster["status"]["readyInstances"] == cluster["spec"]["instances"]
    pooler = cnpg_items(node, namespace, "poolers")[0]
    assert pooler["status"]["instances"] >= 1


def test_the_migration_job_completed_before_any_airflow_component_started(node, deployed):
    _, up, _ = deployed
    namespace = up.outputs["namespace"].value
    jobs = [j for j in items(node.api, f"/apis/batch/v1/namespaces/{namespace}/jobs")
            if j["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate"]
    assert jobs and all(j["status"].get("succeeded") == 1 for j in jobs)
    finished = max(j["status"]["completionTime"] for j in jobs)
    pods = items(node.api, f"/api/v1/namespaces/{namespace}/pods")
    starts = [p["status"]["startTime"] for p in pods
              if p["metadata"]["labels"].get("app.kubernetes.io/component") in AIRFLOW_COMPONENTS]
    assert starts and min(starts) >= finished


def test_a_second_preview_changes_nothing(deployed):
    stack, _, _ = deployed
    stack.preview(color="never", diff=True, expect_no_changes=True)


def test_a_triggered_task_runs_in_its_own_pod_under_the_task_service_account(node, deployed, airflow):
    _, up, _ = deployed
    namespace = up.outputs["namespace"].value
    airflow.wait_for_dag("node_smoke")
    triggered = time.monotonic()
    run_id = airflow.trigger("node_smoke")
    task_pods, timings = {}, {}
    deadline = time.monotonic() + 300
    while True:
        for pod in items(node.api, f"/api/v1/namespaces/{namespace}/pods?labelSelector=dag_id%3Dnode_smoke"):
            task_pods[pod["metadata"]["name"]] = pod
            if pod["status"].get("phase") in ("Running", "Succeeded"):
                timings.setdefault("task pod running", time.monotonic() - triggered)
        state = airflow.get(f"/dags/node_smoke/dagRuns/{run_id}").json().get("state")
        if state in ("success", "failed"):
            timings["run finished"] = time.monotonic() - triggered
            break
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(1)
    print(f"\ntrigger to: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    assert state == "success", airflow.log("node_smoke", run_id, "hello")
    assert len(task_pods) == 1
    spec = next(iter(task_pods.values()))["spec"]
    task_accounts = [a for a in up.outputs["service_accounts"].value.values() if a.endswith("-task")]
    assert spec["serviceAccountName"] in task_accounts
    env_names = {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    assert not any("SQL_ALCHEMY_CONN" in name for name in env_names)
    # The run is marked a success before the task pod has uploaded its log; until the upload lands the API
    # server says it cannot read the (gone) pod's log server. Seconds, not minutes.
    deadline = time.monotonic() + 60
    while "hello from a task pod" not in (log := airflow.log("node_smoke", run_id, "hello")):
        assert time.monotonic() < deadline, log
        time.sleep(1)
    assert "database URL in env: False" in log
    deadline = time.monotonic() + 60
    while items(node.api, f"/api/v1/namespaces/{namespace}/pods?labelSelector=dag_id%3Dnode_smoke"):
        assert time.monotonic() < deadline, "the finished task's pod was not deleted"
        time.sleep(1)


def test_the_finished_tasks_log_is_in_the_stacks_bucket(deployed, s3_on_bridge, airflow):
    _, up, _ = deployed
    s3 = aws_client(s3_on_bridge)
    deadline = time.monotonic() + 60
    while True:
        keys = object_keys(s3, up.outputs["log_bucket"].value)
        smoke = [k for k in keys if "dag_id=node_smoke" in k]
        if smoke or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert smoke, keys
    body = s3.get_object(Bucket=up.outputs["log_bucket"].value, Key=smoke[0])["Body"].read().decode()
    assert "hello from a task pod" in body


def test_a_running_tasks_log_is_readable_while_it_runs(node, deployed, airflow):
    airflow.wait_for_dag("node_long")
    run_id = airflow.trigger("node_long")
    deadline = time.monotonic() + 240
    while airflow.task_instance("node_long", run_id, "tick").get("state") != "running":
        assert time.monotonic() < deadline, airflow.task_instance("node_long", run_id, "tick")
        time.sleep(1)
    deadline = time.monotonic() + 30
    while "tick 3" not in (log := airflow.log("node_long", run_id, "tick")):
        assert time.monotonic() < deadline, log
        time.sleep(1)
    assert airflow.task_instance("node_long", run_id, "tick")["state"] == "running"
    deadline = time.monotonic() + 180
    while airflow.get(f"/dags/node_long/dagRuns/{run_id}").json().get("state") not in ("success", "failed"):
        assert time.monotonic() < deadline
        time.sleep(2)
    # As for the smoke task: the run's success comes seconds before the log's upload.
    deadline = time.monotonic() + 60
    while "tick 44" not in (log := airflow.log("node_long", run_id, "tick")):
        assert time.monotonic() < deadline, log
        time.sleep(1)


@pytest.mark.destroys_instance
def test_destroy_leaves_nothing_in_the_cluster(node, deployed):
    stack, up, _ = deployed
    namespace = up.outputs["namespace"].value
    engine.destroy(stack)
    deadline = time.monotonic() + 180
    while node.api.request("GET", f"/api/v1/namespaces/{namespace}").status != 404:
        assert time.monotonic() < deadline, items(node.api, f"/api/v1/namespaces/{namespace}/pods")
        time.sleep(1)
