"""A PostgreSQL major upgrade on the node, for real (issue 20 §3): a stack of its own (not the shared `deployed`
one) runs PostgreSQL 15 (the `postgres-previous` stand-in image, images/standins.py), Airflow runs a DAG on it,
and `postgres.version` alone is changed to 17. CloudNativePG 1.29 upgrades in place when the Cluster's image
changes major: it stops the instance and runs a Job, `<cluster>-<n>-major-upgrade`, whose init container copies
the old binaries out of the old image and whose main container runs pg_upgrade in the new one, on the same volume.

- The preview updates the Cluster's image and replaces or deletes nothing.
- `up`: the major-upgrade Job ran (old image in its init container, new one in its main container) and
  succeeded; the Cluster and its volumes are the same objects; the server reports 17; every table of Airflow's
  database has at least the rows it had before, the marker Variable is there and readable through the API;
  Airflow serves the earlier run and runs the DAG again to success.
- Going back to 15 is refused (CloudNativePG's webhook), and the database stays on 17.

Figures (durations, row counts) are printed. The stack is destroyed at the end.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import quote

import pytest
import requests
from pulumi import automation as auto

import engine
from components import images
from envs.template import dev_template
from images import standins
from testbed.node import database as db
from testbed.node.diagnose import seen
from testbed.node.instance import Airflow, items, open_branch_stack, service_url, set_config
from testbed.toolchain import pulumi_bin_or_skip

pytestmark = pytest.mark.slow

pulumi_bin_or_skip()

OLD, NEW = standins.PREVIOUS_POSTGRES_MAJOR, standins.POSTGRES_MAJOR
BRANCH_POSTGRES = dev_template()["postgres"]  # what open_branch_stack sets
MARKER = "pgmajor-marker"
CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
DESTRUCTIVE = {"replace", "create-replacement", "delete-replaced", "delete", "discard", "discard-replaced"}
HEALTHY = "Cluster in healthy state"
# Queues Airflow empties itself as it works through them: fewer rows later is Airflow's doing, not a loss.
QUEUES = {"callback_request", "dag_priority_parsing_request", "trigger"}
UPGRADE_TIMEOUT = 900


def _postgres(version: int) -> dict:
    return {"postgres": {**BRANCH_POSTGRES, "version": version}}


def _seen(node, namespace: str) -> str:
    return seen(node, namespace, "clusters,jobs,pods,events")


def _cluster(node, namespace: str) -> dict:
    (cluster,) = db.cnpg_items(node, namespace, "clusters")
    return cluster


def _uids(node, namespace: str) -> dict[str, str]:
    """The objects that hold the data: the Cluster and its volumes."""
    found = {f"cluster/{c['metadata']['name']}": c["metadata"]["uid"] for c in db.cnpg_items(node, namespace, "clusters")}
    for pvc in items(node.api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"):
        found[f"pvc/{pvc['metadata']['name']}"] = pvc["metadata"]["uid"]
    return found


def _server_version(node, namespace: str) -> int:
    return int(db.psql(node, namespace, "show server_version_num"))


def _job_events(node, namespace: str, job: str) -> list[tuple[str, str, str]]:
    """(reason, message, time) of the Job's events: they outlive the Job, which the operator deletes (in the
    foreground) as soon as it has succeeded."""
    selector = quote(f"involvedObject.kind=Job,involvedObject.name={job}", safe="")
    events = items(node.api, f"/api/v1/namespaces/{namespace}/events?fieldSelector={selector}")
    return [(e.get("reason", ""), e.get("message", ""), e.get("lastTimestamp") or e.get("eventTime") or "")
            for e in events]


def _all_row_counts(node, namespace: str) -> dict[str, int]:
    """Rows of every table of Airflow's database."""
    tables = tuple(db.psql(node, namespace, "select tablename from pg_tables where schemaname = 'public' "
                                            "order by tablename").split())
    return db.row_counts(node, namespace, tables)


class Watch(threading.Thread):
    """Polls, once a second, the namespace's major-upgrade Jobs (the operator deletes the Job once it has
    succeeded) and the Cluster's phase, keeping the last state of each Job and every phase change."""

    def __init__(self, node, namespace: str):
        super().__init__(daemon=True)
        self.node, self.namespace = node, namespace
        self.jobs: dict[str, dict] = {}
        self.phases: list[tuple[float, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for job in items(self.node.api, f"/apis/batch/v1/namespaces/{self.namespace}/jobs"):
                    if job["metadata"]["name"].endswith("-major-upgrade"):
                        self.jobs[job["metadata"]["name"]] = job
                phase = _cluster(self.node, self.namespace).get("status", {}).get("phase", "")
                if not self.phases or self.phases[-1][1] != phase:
                    self.phases.append((time.monotonic(), phase))
            except Exception:  # a poll that fails (API busy) is retried; the test judges what was seen
                pass
            self.done.wait(1)


class Instance:
    def __init__(self, node, stack: auto.Stack, up: auto.UpResult):
        self.node, self.stack = node, stack
        self.namespace = up.outputs["namespace"].value
        self.airflow = Airflow(service_url(node.api, self.namespace, "api-server"), up.outputs["admin_password"].value)
        self.first_run: str | None = None
        self.upgraded = False

    def login(self, timeout: float = 300) -> None:
        try:
            self.airflow.login_within(timeout)  # the api-server may restart while the database is away
        except AssertionError as error:
            pytest.fail(f"{error}\n{_seen(self.node, self.namespace)}")

    def served(self, path: str, timeout: float = 180) -> tuple[dict, list[str], float]:
        """The API's answer to GET `path` once it is a success, what it answered before, and how long that took:
        after the database was away, the api-server may fail requests until its connections are new."""
        started, answers = time.monotonic(), []
        while True:
            try:
                response = self.airflow.get(path)
                if response.ok:
                    return response.json(), answers, time.monotonic() - started
                answers.append(f"{response.status_code} {response.text[:160]}")
            except requests.RequestException as error:
                answers.append(f"{error.__class__.__name__}")
            if time.monotonic() - started > timeout:
                logs = self.node.kubectl("logs", "-n", self.namespace, f"deploy/{self.stack.name}-api-server",
                                         "--tail", "60").stdout
                pytest.fail(f"GET {path} not served in {timeout}s: {answers[-3:]}\napi-server log:\n{logs}")
            time.sleep(3)

    def smoke(self) -> tuple[str, float]:
        started = time.monotonic()
        self.airflow.wait_for_dag("node_smoke", timeout=300)
        run_id = self.airflow.trigger("node_smoke")
        state = self.airflow.run_to_end("node_smoke", run_id, timeout=420)
        assert state == "success", f"node_smoke {run_id}: {state}\n{_seen(self.node, self.namespace)}"
        return run_id, time.monotonic() - started


@pytest.fixture(scope="module")
def instance(node, s3_on_bridge, dag_repo, tmp_path_factory):
    """A branch environment of its own on PostgreSQL 15, with one node_smoke run to success and a marker
    Variable; destroyed at the end."""
    name = f"br-pgmajor-{secrets.token_hex(3)}"
    stack = open_branch_stack(name, node.kubeconfig(), s3_on_bridge, dag_repo, tmp_path_factory.mktemp("pgmajor"))
    set_config(stack, _postgres(OLD))
    try:
        started = time.monotonic()
        try:
            up = stack.up(color="never", on_output=print)
        except Exception:
            print(node.kubectl("get", "clusters,jobs,pods,events", "-A").stdout)
            raise
        it = Instance(node, stack, up)
        print(f"\nup of {name} on PostgreSQL {OLD}: {time.monotonic() - started:.0f}s, {up.summary.resource_changes}")
        assert _cluster(node, it.namespace)["spec"]["imageName"] == images.postgres(OLD)
        assert _server_version(node, it.namespace) // 10000 == OLD
        it.login()
        it.first_run, took = it.smoke()
        print(f"node_smoke on PostgreSQL {OLD}: success in {took:.0f}s")
        it.airflow.call("POST", "/variables", {"key": MARKER, "value": f"written on PostgreSQL {OLD}"})
        yield it
    finally:
        if stack.export_stack().deployment.get("resources"):
            engine.destroy(stack)


def test_the_preview_updates_the_cluster_image_and_replaces_nothing(instance):
    it = instance
    set_config(it.stack, _postgres(NEW))
    steps: dict[str, list] = {}

    def on_event(event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            steps.setdefault(event.resource_pre_event.metadata.urn, []).append(event.resource_pre_event.metadata)

    started = time.monotonic()
    result = engine.preview(it.stack, diff=True, on_event=on_event)
    ops = {urn: {str(getattr(s.op, "value", s.op)) for s in found} for urn, found in steps.items()}
    changed = {urn: op for urn, op in ops.items() if op != {"same"}}
    print(f"\npreview {OLD} -> {NEW} in {time.monotonic() - started:.0f}s: {result.change_summary}\n"
          + "\n".join(f"  {sorted(op)} {urn.rsplit('::', 1)[-1]}" for urn, op in sorted(changed.items())))
    assert not {urn: op for urn, op in ops.items() if op & DESTRUCTIVE}, changed
    (cluster_urn,) = [urn for urn, found in steps.items() if found[0].type == CLUSTER]
    assert ops[cluster_urn] == {"update"}, changed
    old, new = (next(getattr(s, which).inputs for s in steps[cluster_urn] if getattr(s, which) is not None
                     and getattr(s, which).inputs) for which in ("old", "new"))
    assert (old["spec"]["imageName"], new["spec"]["imageName"]) == (images.postgres(OLD), images.postgres(NEW))


def test_the_major_upgrade_keeps_every_row_and_airflow_runs_on(instance):
    it = instance
    node, namespace = it.node, it.namespace
    set_config(it.stack, _postgres(NEW))
    counts_before = _all_row_counts(node, namespace)
    uids_before = _uids(node, namespace)
    assert any(k.startswith("pvc/") for k in uids_before), uids_before

    watch = Watch(node, namespace)
    watch.start()
    began = time.monotonic()
    try:
        try:
            up = it.stack.up(color="never", on_output=print)
        except Exception:
            print(_seen(node, namespace))
            raise
        up_took = time.monotonic() - began
        # `up` returns once the Cluster's update is accepted (its Ready condition may still be the old one's):
        # the upgrade itself is the operator's, waited for here.
        deadline = began + UPGRADE_TIMEOUT
        while True:
            status = _cluster(node, namespace).get("status", {})
            if (status.get("phase") == HEALTHY and (status.get("pgDataImageInfo") or {}).get("majorVersion") == NEW
                    and watch.jobs):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not upgraded in {UPGRADE_TIMEOUT}s: {status}\n{_seen(node, namespace)}")
            time.sleep(2)
        healthy_after = time.monotonic() - began
    finally:
        watch.done.set()
        watch.join()
    phases = ", ".join(f"{t - began:+.0f}s {phase!r}" for t, phase in watch.phases)
    print(f"\nup {OLD} -> {NEW}: {up_took:.0f}s, {up.summary.resource_changes}; the Cluster healthy on {NEW} "
          f"{healthy_after:.0f}s after up began\n  phases: {phases}")

    # The operator's major-upgrade Job ran the old image's binaries copied out by its init container, pg_upgrade
    # in the new image, and succeeded (the Job itself is gone by now: its events say how it ended).
    (job,) = watch.jobs.values()
    name, spec = job["metadata"]["name"], job["spec"]["template"]["spec"]
    events = _job_events(node, namespace, name)
    print(f"  {name}: started {job.get('status', {}).get('startTime')}; its events: {events}")
    assert [c["image"] for c in spec.get("initContainers", []) if c["name"] == "prepare"] == [images.postgres(OLD)], spec
    assert images.postgres(NEW) in {c["image"] for c in spec["containers"]}, spec
    reasons = {reason for reason, _, _ in events}
    assert "Completed" in reasons and not reasons & {"BackoffLimitExceeded", "Failed"}, (events, _seen(node, namespace))

    # The same Cluster and volumes, now serving 17.
    uids_after = _uids(node, namespace)
    assert {k: v for k, v in uids_after.items() if k in uids_before} == uids_before, (uids_before, uids_after)
    version = _server_version(node, namespace)
    print(f"  server_version_num: {version}")
    assert version // 10000 == NEW
    it.upgraded = True

    # Every row is still there.
    counts_after = _all_row_counts(node, namespace)
    print("  rows before -> after, by table: " + ", ".join(
        f"{t} {n}->{counts_after.get(t)}" for t, n in sorted(counts_before.items()) if n or counts_after.get(t)))
    print(f"  total rows before {sum(counts_before.values())}, after {sum(counts_after.values())}")
    lost = {t: (n, counts_after.get(t)) for t, n in counts_before.items()
            if t not in QUEUES and (counts_after.get(t) or 0) < n}
    assert not lost, lost
    assert counts_before["dag_run"] >= 1 and counts_before["task_instance"] >= 1, counts_before

    # Airflow, which never changed: the marker and the earlier run through its API, and a new run.
    it.login()
    marker, failed, waited = it.served(f"/variables/{MARKER}")
    print(f"  the API served the marker {waited:.0f}s after the first try; before that it answered {failed}")
    assert marker["value"] == f"written on PostgreSQL {OLD}", marker
    earlier, _, _ = it.served(f"/dags/node_smoke/dagRuns/{it.first_run}")
    assert earlier["state"] == "success", earlier
    _, took = it.smoke()
    print(f"  node_smoke on PostgreSQL {NEW}: success in {took:.0f}s")


def test_going_back_a_major_is_refused_and_the_database_stays(instance):
    it = instance
    if not it.upgraded:
        pytest.fail(f"the upgrade to {NEW} did not complete: nothing to go back from")
    set_config(it.stack, _postgres(OLD))
    try:
        with pytest.raises(auto.CommandError) as refused:
            it.stack.up(color="never")
    finally:
        set_config(it.stack, _postgres(NEW))
    message = str(refused.value)
    print(f"\n{message[message.find('denied'):][:500]}")
    assert f"can't downgrade from major {NEW} to {OLD}" in message
    assert _cluster(it.node, it.namespace)["spec"]["imageName"] == images.postgres(NEW)
    assert _server_version(it.node, it.namespace) // 10000 == NEW
