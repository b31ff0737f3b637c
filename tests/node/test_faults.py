"""Faults while the instance runs, each with a DAG run in flight: the run ends in success and nothing that was
committed is lost.

- The scheduler's pod is killed mid-task: the Deployment starts a new scheduler, which adopts the running task
  pod (the KubernetesExecutor's adoption of pods its predecessor launched); the run ends in success and no task
  instance is left running.
- The PostgreSQL instance's pod is killed mid-task: CloudNativePG brings it back on the same volume, Airflow
  reconnects through PgBouncer, the run ends in success, and every DAG run and task instance row counted before
  the fault is still there after it.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from components import kube
from tests.node.instance import items

pytestmark = pytest.mark.slow

LONG_DAG, LONG_TASK = "node_long", "tick"


def _kubectl(node, *args: str) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", str(node.kubeconfig()), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pods(node, namespace: str, selector: str) -> list[dict]:
    return items(node.api, f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector.replace('/', '%2F').replace('=', '%3D')}")


def _row_counts(node, namespace: str) -> dict[str, int]:
    """Rows of the tables a user's history lives in, read in the PostgreSQL pod itself (psql as postgres)."""
    pod = _pods(node, namespace, f"{kube.CNPG_POD_ROLE_LABEL}=instance")[0]["metadata"]["name"]
    tables = ("dag_run", "task_instance", "log")
    query = "select " + ", ".join(f"(select count(*) from {t})" for t in tables)
    out = _kubectl(node, "exec", "-n", namespace, pod, "-c", "postgres", "--", "psql", "-d", "airflow", "-tAc", query)
    return dict(zip(tables, (int(n) for n in out.strip().split("|"))))


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
    (scheduler,) = _pods(node, namespace, "app.kubernetes.io/component=scheduler")
    killed = time.monotonic()
    _kubectl(node, "delete", "pod", "-n", namespace, scheduler["metadata"]["name"], "--grace-period=0", "--force")

    assert airflow.run_to_end(LONG_DAG, run_id, timeout=300) == "success"
    print(f"\nscheduler killed: the run ended in success {time.monotonic() - killed:.0f}s later")
    assert airflow.task_instance(LONG_DAG, run_id, LONG_TASK)["try_number"] == 1  # adopted, not run again
    assert "tick 44" in airflow.uploaded_log(LONG_DAG, run_id, LONG_TASK, "tick 44")
    assert _nothing_left_running(airflow) == []


def _database_back(node, namespace: str, replaced_uid: str, timeout: float = 300) -> float:
    """Seconds until a new PostgreSQL instance pod (not `replaced_uid`) is ready and the Cluster is healthy."""
    started = time.monotonic()
    while True:
        pods = [p for p in _pods(node, namespace, f"{kube.CNPG_POD_ROLE_LABEL}=instance")
                if p["metadata"]["uid"] != replaced_uid]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions", []))]
        cluster = items(node.api, f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/clusters")[0]
        if ready and cluster["status"].get("phase") == "Cluster in healthy state":
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (cluster["status"].get("phase"), [p["status"].get("phase") for p in pods])
        time.sleep(2)


def test_the_database_pod_killed_mid_task_comes_back_with_every_row(node, deployed, airflow):
    _, up, _ = deployed
    namespace = up.outputs["namespace"].value
    run_id = _start_long_run(airflow)
    before = _row_counts(node, namespace)
    (postgres,) = _pods(node, namespace, f"{kube.CNPG_POD_ROLE_LABEL}=instance")
    # Killed, not shut down: a graceful delete lets PostgreSQL's smart shutdown serve PgBouncer's open
    # connections for minutes, and Airflow would never have to reconnect.
    _kubectl(node, "delete", "pod", "-n", namespace, postgres["metadata"]["name"], "--grace-period=0", "--force")

    back = _database_back(node, namespace, postgres["metadata"]["uid"])
    assert airflow.run_to_end(LONG_DAG, run_id, timeout=300) == "success"
    after = _row_counts(node, namespace)
    print(f"\ndatabase pod killed: a new one was ready {back:.0f}s later; rows before {before}, after {after}")
    assert all(after[table] >= count for table, count in before.items()), (before, after)
    assert _nothing_left_running(airflow) == []
