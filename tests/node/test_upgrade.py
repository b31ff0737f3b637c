"""An Airflow upgrade on the node, for real (issue 20 §3): a stack of its own (not the shared `deployed` one) runs
the Airflow before the current one (the `airflow-previous` stand-in image), and `airflowVersion` alone is changed
to the current version with a DAG run in flight.

- The preview shows what changes: the migration Job of the new version (a replacement of the old version's Job,
  whose name carries the version), the Airflow image tags, the schema record; nothing that holds data (the
  CloudNativePG Cluster, the bucket, the Secrets, the passwords, the namespace) is replaced or deleted.
- `up`: the new migration Job completed before any pod of the new image started (pods' creation and start
  times against the Job's completion time); every DAG run and task instance recorded before is still there;
  the database's volumes and Cluster are the same objects.
- The run in flight ends in a state a user can act on: a success, or a failure that a clear (the user's
  "retry") turns into a success on the new version. The test prints which, with each try's state and times
  against the migration's, and records it (`record_property`, in the JUnit XML).
- Going back is refused by `up` with the schema record's message, and nothing in the cluster changes.

The stack is destroyed at the end, so the node has room for what follows.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import datetime

import pytest
from pulumi import automation as auto

import engine
from components import kube
from components.settings import Settings
from images import standins
from testbed.node import database as db
from testbed.node.diagnose import seen
from testbed.node.instance import Airflow, items, open_branch_stack, service_url, set_config
from testbed.toolchain import pulumi_bin_or_skip

pytestmark = pytest.mark.slow

pulumi_bin_or_skip()


PREVIOUS = standins.PREVIOUS_AIRFLOW_VERSION  # the airflow-previous image's (images/airflow/requirements-3.2.txt)
CURRENT = Settings.model_fields["airflow_version"].default
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
LONG_DAG, LONG_TASK = "node_long", "tick"

# Resources whose replacement or deletion loses data or access to it: the database (its volumes are the
# Cluster's), the bucket, the Secrets and generated passwords, the namespace that holds them all, and the
# record of the schema's version.
DATA_TYPES = (
    "kubernetes:postgresql.cnpg.io/v1:Cluster",
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:core/v1:Secret",
    "kubernetes:core/v1:Namespace",
    "pulumi-python:dynamic:S3Bucket",
    "pulumi-python:dynamic:AirflowSchema",
    "random:index/randomPassword:RandomPassword",
)
DESTRUCTIVE = {"replace", "create-replacement", "delete-replaced", "delete", "discard", "discard-replaced",
               "create", "import", "import-replacement"}
# Any tag of the Airflow image, wherever a resource names it (containers, the task pod template's YAML).
IMAGE = re.compile(re.escape(Settings.model_fields["airflow_image"].default) + r":[A-Za-z0-9._-]+")


def _image(version: str) -> str:
    """The Airflow image the program renders for `version` under the stand-in settings (as images/specs.py
    reads the references)."""
    return Settings.model_validate(
        {"instance": "dev", "auth": {"mode": "simple"}, **standins.STACK_CONFIG, "airflowVersion": version}).image


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- the stack at the previous version --------------------------------------------------------------------------


class Upgrade:
    """The upgrade's stack and what the tests learn about it, in the order they learn it."""

    def __init__(self, node, stack: auto.Stack, up: auto.UpResult):
        self.node, self.stack = node, stack
        self.instance = stack.name
        self.namespace = up.outputs["namespace"].value
        self.airflow = Airflow(service_url(node.api, self.namespace, "api-server"), up.outputs["admin_password"].value)
        self.upgraded: dict | None = None  # set by the upgrade's test once its `up` has succeeded

    def login(self, timeout: float = 120) -> None:
        """A new token: an update restarts the api-server, which may take a moment to answer again."""
        try:
            self.airflow.login_within(timeout)
        except AssertionError as error:
            pytest.fail(f"{error}\n{seen(self.node, self.namespace)}")

    def run_to_end(self, dag_id: str, run_id: str, timeout: float) -> str:
        try:
            return self.airflow.run_to_end(dag_id, run_id, timeout=timeout)
        except AssertionError as stuck:
            pytest.fail(f"{stuck}\n{seen(self.node, self.namespace)}")

    def state_resources(self) -> list[dict]:
        return (self.stack.export_stack().deployment or {}).get("resources") or []


@pytest.fixture(scope="module")
def previous(node, s3_on_bridge, dag_repo, tmp_path_factory):
    """A branch environment of its own at the previous Airflow, with one DAG run to success on it; destroyed
    at the end."""
    name = f"br-upgrade-{secrets.token_hex(3)}"
    stack = open_branch_stack(name, node.kubeconfig(), s3_on_bridge, dag_repo, tmp_path_factory.mktemp("upgrade"))
    set_config(stack, {"airflowVersion": PREVIOUS})
    try:
        started = time.monotonic()
        try:
            up = stack.up(color="never", on_output=print)
        except Exception:
            print(seen(node, None))
            raise
        print(f"\nup of {name} at Airflow {PREVIOUS}: {time.monotonic() - started:.0f}s, {up.summary.resource_changes}")
        it = Upgrade(node, stack, up)
        images = {c["image"] for d in items(node.api, f"/apis/apps/v1/namespaces/{it.namespace}/deployments")
                  for c in d["spec"]["template"]["spec"]["containers"] if "airflow" in c["image"]}
        assert images == {_image(PREVIOUS)}, images
        it.login()
        it.airflow.wait_for_dag("node_smoke")
        smoke = it.airflow.trigger("node_smoke")
        assert it.run_to_end("node_smoke", smoke, timeout=300) == "success"
        yield it
    finally:
        if stack.export_stack().deployment.get("resources"):
            engine.destroy(stack)


# --- the preview ------------------------------------------------------------------------------------------------


def _preview_steps(stack: auto.Stack) -> tuple[auto.PreviewResult, dict[str, list]]:
    """The preview (with its diff) and, per resource URN, the steps the engine announced for it."""
    steps: dict[str, list] = {}

    def on_event(event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            metadata = event.resource_pre_event.metadata
            steps.setdefault(metadata.urn, []).append(metadata)

    result = engine.preview(stack, diff=True, on_event=on_event)
    return result, steps


def _ops(steps: list) -> set[str]:
    return {str(getattr(step.op, "value", step.op)) for step in steps}


def _inputs(steps: list, which: str) -> dict:
    for step in steps:
        state = getattr(step, which)
        if state is not None and state.inputs:
            return state.inputs
    return {}


def _images_named(value) -> set[str]:
    return set(IMAGE.findall(json.dumps(value, default=str)))


def test_the_preview_shows_a_new_migration_job_and_new_images_and_replaces_nothing_that_holds_data(previous):
    it = previous
    in_state = {r["urn"]: r["type"] for r in it.state_resources()}
    set_config(it.stack, {"airflowVersion": CURRENT})
    result, steps = _preview_steps(it.stack)
    table = "\n".join(f"  {sorted(_ops(s))} {urn.rsplit('::', 1)[-1]} ({s[0].type})" for urn, s in sorted(steps.items())
                      if _ops(s) != {"same"})
    print(f"\npreview {PREVIOUS} -> {CURRENT}: {result.change_summary}\n{table}")

    destructive = {urn: s for urn, s in steps.items() if _ops(s) & DESTRUCTIVE}
    # One replacement: the migration Job, whose name carries the version (an old Job is immutable and done).
    assert [s[0].type for s in destructive.values()] == ["kubernetes:batch/v1:Job"], table
    (job_steps,) = destructive.values()
    assert _ops(job_steps) <= {"replace", "create-replacement", "delete-replaced"}, table
    assert _inputs(job_steps, "old")["metadata"]["name"] == kube.migration_job_name(it.instance, PREVIOUS)
    assert _inputs(job_steps, "new")["metadata"]["name"] == kube.migration_job_name(it.instance, CURRENT)
    assert f"migrate-{CURRENT.replace('.', '-')}" in result.stdout

    # Nothing that holds data is touched at all, but the schema record, which is updated to the new version.
    data = {urn: kind for urn, kind in in_state.items() if kind in DATA_TYPES}
    assert {"kubernetes:postgresql.cnpg.io/v1:Cluster", "pulumi-python:dynamic:S3Bucket",
            "kubernetes:core/v1:Secret"} <= set(data.values()), data
    for urn, kind in data.items():
        ops = _ops(steps.get(urn, [])) or {"same"}
        wanted = {"update"} if kind == "pulumi-python:dynamic:AirflowSchema" else {"same"}
        assert ops == wanted, f"{urn}: {ops}\n{table}"

    # The image tags: every Airflow Deployment goes from the previous image to the new one, and no resource
    # names the previous image afterwards (the task pod template and the clean-up CronJob included).
    updated = {urn: s for urn, s in steps.items() if "update" in _ops(s)}
    deployments = {urn: s for urn, s in updated.items() if s[0].type == "kubernetes:apps/v1:Deployment"}
    components = set()
    for urn, s in deployments.items():
        old, new = _inputs(s, "old"), _inputs(s, "new")
        if _images_named(old) == {_image(PREVIOUS)}:
            assert _images_named(new) == {_image(CURRENT)}, urn
            components.add(new["metadata"]["labels"]["app.kubernetes.io/component"])
    assert components == set(AIRFLOW_COMPONENTS), (components, table)
    for urn, s in updated.items():
        assert _image(PREVIOUS) not in _images_named(_inputs(s, "new")), urn
    kinds = {s[0].type for s in updated.values() if not s[0].type.startswith("pulumi:providers:")}
    assert kinds <= {"kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:CronJob", "kubernetes:core/v1:ConfigMap",
                     "pulumi-python:dynamic:AirflowSchema"}, table


# --- the upgrade ------------------------------------------------------------------------------------------------


def _history(node, namespace: str) -> tuple[set[int], set[str]]:
    """The ids of every DAG run, and every task instance by its natural key (dag, run, task, map index): a
    task instance's own id changes with each try (Airflow 3 keeps the old try's under task_instance_history)."""
    runs = {int(line) for line in db.psql(node, namespace, "select id from dag_run").split()}
    keys = db.psql(node, namespace, "select dag_id || ' ' || run_id || ' ' || task_id || ' ' || map_index "
                                    "from task_instance").splitlines()
    return runs, {key for key in keys if key}


def _uids(node, namespace: str) -> dict[str, str]:
    """What holds the data, as objects in the cluster: the database's volumes and Cluster, and the Secrets."""
    found = {}
    for kind, path in (("pvc", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"),
                       ("cluster", f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/clusters"),
                       ("secret", f"/api/v1/namespaces/{namespace}/secrets")):
        for item in items(node.api, path):
            found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["uid"]
    return found


def _pod_images(pod: dict) -> set[str]:
    return {c["image"] for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])}


def _start_long_run(it: Upgrade) -> str:
    it.airflow.wait_for_dag(LONG_DAG)
    run_id = it.airflow.trigger(LONG_DAG)
    deadline = time.monotonic() + 240
    while (ti := it.airflow.task_instance(LONG_DAG, run_id, LONG_TASK)).get("state") != "running":
        if time.monotonic() > deadline:
            pytest.fail(f"{LONG_DAG}'s task never ran: {ti}\n{seen(it.node, it.namespace)}")
        time.sleep(1)
    return run_id


def _tries(it: Upgrade, run_id: str) -> list[dict]:
    found = it.airflow.get(f"/dags/{LONG_DAG}/dagRuns/{run_id}/taskInstances/{LONG_TASK}/tries")
    assert found.ok, f"tries: {found.status_code} {found.text}"
    return sorted(found.json()["task_instances"], key=lambda t: t["try_number"])


def _log_tail(it: Upgrade, run_id: str, try_number: int, lines: int = 15) -> str:
    try:
        return "\n".join(it.airflow.log(LONG_DAG, run_id, LONG_TASK, try_number).splitlines()[-lines:])
    except AssertionError as error:
        return f"(no log: {error})"


def _in_flight_outcome(it: Upgrade, run_id: str) -> dict:
    """How the run in flight ended: a success, or a failure that a clear (the user's retry) made a success."""
    state = it.run_to_end(LONG_DAG, run_id, timeout=900)
    first = _tries(it, run_id)
    outcome = {"run": state, "tries": [(t["try_number"], t["state"], t["start_date"], t["end_date"]) for t in first]}
    if state == "failed":
        outcome["failed try's log"] = _log_tail(it, run_id, first[-1]["try_number"])
        it.airflow.call("POST", f"/dags/{LONG_DAG}/clearTaskInstances", {
            "dry_run": False, "dag_run_id": run_id, "task_ids": [LONG_TASK], "only_failed": True,
            "reset_dag_runs": True})
        outcome["run after a clear"] = it.run_to_end(LONG_DAG, run_id, timeout=300)
        outcome["tries"] = [(t["try_number"], t["state"], t["start_date"], t["end_date"]) for t in _tries(it, run_id)]
    ti = it.airflow.task_instance(LONG_DAG, run_id, LONG_TASK)
    outcome["task instance"] = (ti.get("try_number"), ti.get("state"))
    if state == "success":
        outcome["kind"] = f"success on try {ti.get('try_number')}"
    else:
        outcome["kind"] = (f"failed on try {first[-1]['try_number']}, then {outcome['run after a clear']} on try "
                           f"{ti.get('try_number')} after a clear")
    return outcome


def test_the_upgrade_migrates_before_any_new_pod_keeps_the_history_and_the_run_in_flight_ends_usably(
        previous, record_property):
    it = previous
    node, namespace = it.node, it.namespace
    set_config(it.stack, {"airflowVersion": CURRENT})
    run_id = _start_long_run(it)
    runs_before, tis_before = _history(node, namespace)
    counts_before = db.row_counts(node, namespace)
    uids_before = _uids(node, namespace)

    began = time.time()
    try:
        up = it.stack.up(color="never", on_output=print)
    except Exception:
        print(seen(node, namespace))
        raise
    ended = time.time()
    print(f"\nup {PREVIOUS} -> {CURRENT}, {LONG_DAG} in flight: {ended - began:.0f}s, {up.summary.resource_changes}")
    it.upgraded = {"began": began, "ended": ended}

    # The new migration Job ran (and the old one is gone), and completed before any pod of the new image began.
    jobs = {j["metadata"]["name"]: j for j in items(node.api, f"/apis/batch/v1/namespaces/{namespace}/jobs")}
    new_job, old_job = kube.migration_job_name(it.instance, CURRENT), kube.migration_job_name(it.instance, PREVIOUS)
    assert new_job in jobs and old_job not in jobs, (sorted(jobs), seen(node, namespace))
    status = jobs[new_job]["status"]
    assert status.get("succeeded") == 1 and status.get("completionTime"), (status, seen(node, namespace))
    migrated = _time(status["completionTime"])
    pods = items(node.api, f"/api/v1/namespaces/{namespace}/pods")
    new_pods = [p for p in pods if _image(CURRENT) in _pod_images(p)
                and p["metadata"]["labels"].get("app.kubernetes.io/component") != kube.MIGRATE]
    timeline = [f"  migration Job {new_job}: started {status.get('startTime')}, completed {status['completionTime']}"]
    for pod in sorted(new_pods, key=lambda p: p["metadata"]["creationTimestamp"]):
        started = pod["status"].get("startTime") or pod["metadata"]["creationTimestamp"]
        timeline.append(f"  {pod['metadata']['name']}: created {pod['metadata']['creationTimestamp']}, started "
                        f"{started} ({(_time(started) - migrated).total_seconds():+.0f}s after the migration)")
    print("\n".join(timeline))
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in new_pods}
    assert set(AIRFLOW_COMPONENTS) <= components, (components, seen(node, namespace))
    for pod in new_pods:
        # Kubernetes keeps these times to the second: equal means within the same second, after the completion
        # Pulumi waited for before it changed any Deployment.
        assert _time(pod["metadata"]["creationTimestamp"]) >= migrated, "\n".join(timeline)
        if pod["status"].get("startTime"):
            assert _time(pod["status"]["startTime"]) >= migrated, "\n".join(timeline)

    # The run in flight: which way it ended, and why is in the tries' times against the migration's.
    it.login()
    outcome = _in_flight_outcome(it, run_id)
    outcome["migration"] = (status.get("startTime"), status["completionTime"])
    record_property("in_flight_outcome", json.dumps(outcome, default=str))
    print(f"\nthe run in flight during the upgrade: {outcome['kind']}\n{json.dumps(outcome, indent=2, default=str)}")
    try_number, ti_state = outcome["task instance"]
    assert ti_state == "success", outcome
    if outcome["run"] == "success":
        assert try_number == 1, outcome  # no retries are configured: a success is the first try's
    else:
        assert outcome["run after a clear"] == "success" and try_number >= 2, outcome

    # Every run and task instance from before is still there, and nothing that holds data was recreated.
    runs_after, tis_after = _history(node, namespace)
    counts_after = db.row_counts(node, namespace)
    print(f"rows before the upgrade {counts_before}, after {counts_after}")
    assert runs_before <= runs_after, sorted(runs_before - runs_after)
    assert tis_before <= tis_after, sorted(tis_before - tis_after)
    assert all(counts_after[table] >= count for table, count in counts_before.items()), (counts_before, counts_after)
    uids_after = _uids(node, namespace)
    assert {k: v for k, v in uids_after.items() if k in uids_before} == uids_before, (uids_before, uids_after)
    assert any(k.startswith("pvc/") for k in uids_before), uids_before


# --- going back -------------------------------------------------------------------------------------------------


def _workloads(node, namespace: str) -> dict[str, tuple]:
    """Each Deployment's images and generation, and the Jobs by name: what a refused update must not change."""
    found = {}
    for d in items(node.api, f"/apis/apps/v1/namespaces/{namespace}/deployments"):
        images = tuple(c["image"] for c in d["spec"]["template"]["spec"]["containers"])
        found[f"deployment/{d['metadata']['name']}"] = (images, d["metadata"]["generation"])
    for j in items(node.api, f"/apis/batch/v1/namespaces/{namespace}/jobs"):
        found[f"job/{j['metadata']['name']}"] = (j["metadata"]["uid"],)
    return found


def test_going_back_is_refused_and_nothing_changes(previous):
    it = previous
    (record,) = [r for r in it.state_resources() if r["type"] == "pulumi-python:dynamic:AirflowSchema"]
    recorded = (record.get("outputs") or {}).get("airflow_version")
    if it.upgraded is None or recorded != CURRENT:
        pytest.fail(f"the upgrade to {CURRENT} did not complete (schema record: {recorded}): nothing to go back from")
    before = _workloads(it.node, it.namespace)
    set_config(it.stack, {"airflowVersion": PREVIOUS})
    try:
        with pytest.raises(auto.CommandError) as refused:
            it.stack.up(color="never")
    finally:
        set_config(it.stack, {"airflowVersion": CURRENT})
    message = str(refused.value)
    print(f"\n{message[message.find('airflowVersion: '):][:600]}")
    assert f"airflowVersion: {PREVIOUS} is older than {CURRENT}" in message
    assert f"airflow db downgrade --to-version {PREVIOUS}" in message
    after = _workloads(it.node, it.namespace)
    assert after == before, (before, after)
    assert not any(name.endswith(kube.migration_job_name(it.instance, PREVIOUS)) for name in after)
