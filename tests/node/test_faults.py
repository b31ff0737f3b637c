"""Faults while the instance runs, each with a DAG run in flight: the run ends in success and nothing that was
committed is lost.

- The scheduler's pod is killed mid-task: the Deployment starts a new scheduler, which adopts the running task
  pod (the KubernetesExecutor's adoption of pods its predecessor launched); the run ends in success and no task
  instance is left running.
- The PostgreSQL instance's pod is killed mid-task: CloudNativePG brings it back on the same volume, Airflow
  reconnects through PgBouncer, the run ends in success, and every DAG run and task instance row counted before
  the fault is still there after it.
- The S3 endpoint goes down while a task finishes: the task's state is set through the Execution API, which
  does not need the store, so it is right at once; the pod keeps retrying its log upload (the log connection's
  `s3.logUploadAttempts`) and the log lands in the bucket once the endpoint is back.
- The namespace's quota is full when a task is queued: the scheduler's pod creation is refused ("exceeded
  quota"), it says so in its log and keeps the task queued, and the task runs, on its first try, once room
  frees up.
"""

from __future__ import annotations

import json
import time

import pytest

from components import kube
from testbed.node import database as db
from testbed.node.instance import aws_client, items, object_keys

pytestmark = pytest.mark.slow

LONG_DAG, LONG_TASK = "node_long", "tick"


def _start_long_run(airflow) -> str:
    airflow.wait_for_dag(LONG_DAG)
    run_id = airflow.trigger(LONG_DAG)
    deadline = time.monotonic() + 240
    while airflow.task_instance(LONG_DAG, run_id, LONG_TASK).get("state") != "running":
        assert time.monotonic() < deadline, airflow.task_instance(LONG_DAG, run_id, LONG_TASK)
        time.sleep(1)
    return run_id


def _nothing_left_running(airflow) -> list[dict]:
    running = airflow.get("/dags/~/dagRuns/~/taskInstances", params={"state": "running"}).json()
    return running.get("task_instances", [])


def test_a_scheduler_killed_mid_task_is_replaced_and_the_run_succeeds(node, deployed, airflow):
    _, up, _ = deployed
    namespace = up.outputs["namespace"].value
    run_id = _start_long_run(airflow)
    (scheduler,) = db.pods(node, namespace, "app.kubernetes.io/component=scheduler")
    killed = time.monotonic()
    db.kubectl(node, "delete", "pod", "-n", namespace, scheduler["metadata"]["name"], "--grace-period=0", "--force")

    assert airflow.run_to_end(LONG_DAG, run_id, timeout=300) == "success"
    print(f"\nscheduler killed: the run ended in success {time.monotonic() - killed:.0f}s later")
    assert airflow.task_instance(LONG_DAG, run_id, LONG_TASK)["try_number"] == 1  # adopted, not run again
    assert "tick 44" in airflow.uploaded_log(LONG_DAG, run_id, LONG_TASK, "tick 44")
    assert _nothing_left_running(airflow) == []


def _database_back(node, namespace: str, replaced_uid: str, timeout: float = 300) -> float:
    """Seconds until a new PostgreSQL instance pod (not `replaced_uid`) is ready and the Cluster is healthy."""
    started = time.monotonic()
    while True:
        pods = [p for p in db.pods(node, namespace, f"{kube.CNPG_POD_ROLE_LABEL}=instance")
                if p["metadata"]["uid"] != replaced_uid]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions", []))]
        cluster = db.cnpg_items(node, namespace, "clusters")[0]
        if ready and cluster["status"].get("phase") == "Cluster in healthy state":
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (cluster["status"].get("phase"), [p["status"].get("phase") for p in pods])
        time.sleep(2)


def test_the_database_pod_killed_mid_task_comes_back_with_every_row(node, deployed, airflow):
    _, up, _ = deployed
    namespace = up.outputs["namespace"].value
    run_id = _start_long_run(airflow)
    before = db.row_counts(node, namespace)
    (postgres,) = db.pods(node, namespace, f"{kube.CNPG_POD_ROLE_LABEL}=instance")
    # Killed, not shut down: a graceful delete lets PostgreSQL's smart shutdown serve PgBouncer's open
    # connections for minutes, and Airflow would never have to reconnect.
    db.kubectl(node, "delete", "pod", "-n", namespace, postgres["metadata"]["name"], "--grace-period=0", "--force")

    back = _database_back(node, namespace, postgres["metadata"]["uid"])
    assert airflow.run_to_end(LONG_DAG, run_id, timeout=300) == "success"
    after = db.row_counts(node, namespace)
    print(f"\ndatabase pod killed: a new one was ready {back:.0f}s later; rows before {before}, after {after}")
    assert all(after[table] >= count for table, count in before.items()), (before, after)
    assert _nothing_left_running(airflow) == []


def _task_pods(node, namespace: str, dag_id: str, run_id: str) -> list[dict]:
    """The run's task pods (the executor's labels sanitise the run id; its annotation keeps it whole)."""
    return [p for p in db.pods(node, namespace, f"dag_id={dag_id}")
            if p["metadata"].get("annotations", {}).get("run_id") == run_id]


def _log_keys(s3_url: str, bucket: str, run_id: str) -> list[str]:
    return [key for key in object_keys(aws_client(s3_url), bucket) if run_id in key]


def test_the_store_down_while_a_task_finishes_loses_neither_its_state_nor_its_log(node, deployed, airflow, s3_server):
    _, up, _ = deployed
    namespace, bucket = up.outputs["namespace"].value, up.outputs["log_bucket"].value
    run_id = _start_long_run(airflow)
    started = time.monotonic()
    while "tick 35" not in airflow.log(LONG_DAG, run_id, LONG_TASK):  # read from the running pod, not S3
        assert time.monotonic() - started < 120, "the long task did not reach tick 35"
        time.sleep(1)
    s3_server.down()
    try:
        # The state goes to the Execution API, which does not need the store.
        assert airflow.run_to_end(LONG_DAG, run_id, timeout=120) == "success"
        down_since = time.monotonic()
        # The pod is still there, holding the log it could not upload yet.
        task_pods = _task_pods(node, namespace, LONG_DAG, run_id)
        assert [p["status"]["phase"] for p in task_pods] == ["Running"], [p["status"]["phase"] for p in task_pods]
        waiting_pod = task_pods[0]["metadata"]["name"]
        time.sleep(max(0.0, 15 - (time.monotonic() - down_since)))  # an outage of 15 s after the task ended
    finally:
        s3_server.up()
    back = time.monotonic()
    deadline = back + 180
    while not (keys := _log_keys(s3_server.url, bucket, run_id)):
        if time.monotonic() > deadline:
            said = node.kubectl("logs", "-n", namespace, waiting_pod, "--tail=30")
            pytest.fail(f"the log never reached the bucket; pod {waiting_pod} said:\n{said.stdout}{said.stderr}")
        time.sleep(2)
    landed = time.monotonic() - back
    log = airflow.uploaded_log(LONG_DAG, run_id, LONG_TASK, "tick 44")
    print(f"\nS3 down {back - down_since:.0f}s after the task ended: the log landed {landed:.0f}s after it came back: {keys}")
    assert "tick 0" in log and "tick 44" in log
    assert _nothing_left_running(airflow) == []


def _quota(node, namespace: str) -> dict:
    (quota,) = items(node.api, f"/api/v1/namespaces/{namespace}/resourcequotas")
    return quota


def test_a_task_pod_the_quota_refuses_waits_and_runs_once_room_frees_up(node, deployed, airflow):
    _, up, _ = deployed
    namespace = up.outputs["namespace"].value
    airflow.wait_for_dag("node_smoke")
    # No task pod of an earlier test may still hold a share of the quota (one waiting to upload its log, say),
    # or its end would make room for the pod this test expects refused.
    deadline = time.monotonic() + 240
    while db.pods(node, namespace, "kubernetes_executor=True"):
        assert time.monotonic() < deadline, "task pods of earlier tests are still there"
        time.sleep(2)
    time.sleep(5)  # the quota controller's view of what is used follows the pods' deletion
    quota = _quota(node, namespace)
    name, hard = quota["metadata"]["name"], quota["spec"]["hard"]
    # Full: what runs now is all the CPU the namespace may request.
    full = {**hard, "requests.cpu": quota["status"]["used"]["requests.cpu"]}
    db.kubectl(node, "patch", "resourcequota", "-n", namespace, name, "--type=merge", "-p", json.dumps({"spec": {"hard": full}}))
    (scheduler,) = db.pods(node, namespace, "app.kubernetes.io/component=scheduler")
    try:
        run_id = airflow.trigger("node_smoke")
        triggered = time.monotonic()
        deadline = triggered + 120

        def refusals() -> int:  # said since the trigger
            since = f"--since={int(time.monotonic() - triggered) + 2}s"
            return db.kubectl(node, "logs", "-n", namespace, scheduler["metadata"]["name"], "-c", "scheduler",
                            since).count("exceeded quota")

        while (refused := refusals()) < 3:
            assert time.monotonic() < deadline, "the scheduler never said the quota refused the pod"
            time.sleep(2)
        state = airflow.task_instance("node_smoke", run_id, "hello").get("state")
        assert state == "queued", state  # waiting, neither failed nor given up
        assert _task_pods(node, namespace, "node_smoke", run_id) == []
        refused_at = time.monotonic()
    finally:
        db.kubectl(node, "patch", "resourcequota", "-n", namespace, name, "--type=merge", "-p", json.dumps({"spec": {"hard": hard}}))
    assert airflow.run_to_end("node_smoke", run_id, timeout=180) == "success"
    print(f"\nquota full: {refused} refusals in the scheduler's log; success {time.monotonic() - refused_at:.0f}s after room freed")
    assert airflow.task_instance("node_smoke", run_id, "hello")["try_number"] == 1
    assert _quota(node, namespace)["spec"]["hard"] == hard
