"""Restores on the node, from the backups the node's instance took (tests/node/test_backups.py's update):

- A branch environment cloned from that instance with `postgres.restore` (its bucket, prefix and archive named,
  as for backups kept outside the project's stack files) and a `targetTime` between two known writes: the
  restored database has every DAG run and task instance the source had at that time, the write before it and
  not the write after it, and Airflow starts on it and serves those runs. Destroying the branch afterwards
  leaves the source's archive as it was.
- A restore whose source stack keeps no backups is refused by `pulumi up` before anything is created, with
  the message the user sees.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

import pytest
from pulumi import automation as auto

from envs.template import dev_template
from testbed.node import database as db
from testbed.node.backups import BACKUP_KEY, BACKUP_SECRET, PREFIX
from testbed.node.instance import Airflow, aws_client, object_keys, open_branch_stack, service_url, set_config

pytestmark = pytest.mark.slow

BEFORE, AFTER = "restore-before-target", "restore-after-target"
BRANCH_POSTGRES = dev_template()["postgres"]  # what open_branch_stack sets
ARCHIVE_TIMEOUT = 120


@pytest.fixture(scope="module")
def target(node, backed_up, airflow):
    """Two Airflow Variables written through the source's API, a restore target time between them, and the
    source's history at that time; the second write's WAL is archived before the fixture returns."""
    up, _ = backed_up
    namespace = up.outputs["namespace"].value
    airflow.login()
    history = db.row_counts(node, namespace, ("dag_run", "task_instance"))
    airflow.call("POST", "/variables", {"key": BEFORE, "value": "written before the target time"})
    time.sleep(2)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(2)
    airflow.call("POST", "/variables", {"key": AFTER, "value": "written after the target time"})
    segment = db.psql(node, namespace, "select pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + ARCHIVE_TIMEOUT
    while db.psql(node, namespace, "select coalesce(last_archived_wal, '') from pg_stat_archiver") < segment:
        assert time.monotonic() < deadline, f"WAL segment {segment} not archived in {ARCHIVE_TIMEOUT}s"
        time.sleep(1)
    print(f"\nsource history at {at.isoformat()}: {history}; WAL up to {segment} archived")
    return at, history


@pytest.fixture(scope="module")
def restored(node, deployed, backed_up, target, s3_on_bridge, dag_repo, tmp_path_factory):
    """A branch environment restored from the source's backups to the target time; destroyed at the end."""
    import engine

    source, _, _ = deployed
    up, _ = backed_up
    at, _ = target
    name = f"br-restored-{secrets.token_hex(3)}"
    stack = open_branch_stack(name, node.kubeconfig(), s3_on_bridge, dag_repo, tmp_path_factory.mktemp("restored"))
    set_config(stack, {"postgres": {**BRANCH_POSTGRES, "restore": {
        "source": source.name, "bucket": up.outputs["log_bucket"].value, "prefix": PREFIX,
        "targetTime": at.isoformat()}}})
    # The clone reads the source's archive with its own backup credential.
    stack.set_config("airflow-platform:s3BackupAccessKeyId", auto.ConfigValue(BACKUP_KEY, secret=True))
    stack.set_config("airflow-platform:s3BackupSecretAccessKey", auto.ConfigValue(BACKUP_SECRET, secret=True))
    started = time.monotonic()
    try:
        result = stack.up(color="never", on_output=print)
    except Exception:
        print(node.kubectl("get", "clusters,jobs,pods,events", "-A").stdout)
        raise
    print(f"\nup of {name}, restored to {at.isoformat()}: {time.monotonic() - started:.0f}s, "
          f"{result.summary.resource_changes}")
    yield stack, result
    if stack.export_stack().deployment.get("resources"):
        engine.destroy(stack)


def test_a_branch_restored_to_a_point_in_time_has_the_history_before_it_and_not_after(node, restored, target):
    _, result = restored
    at, history = target
    namespace = result.outputs["namespace"].value
    assert db.row_counts(node, namespace, ("dag_run", "task_instance")) == history
    variables = db.psql(node, namespace, "select key from variable where key like 'restore-%' order by key")
    assert variables.split() == [BEFORE], f"restored to {at.isoformat()}: {variables.split()}"

    restored_airflow = Airflow(service_url(node.api, namespace, "api-server"), result.outputs["admin_password"].value)
    restored_airflow.login()
    runs = restored_airflow.get("/dags/~/dagRuns", params={"limit": 1}).json()
    assert runs["total_entries"] == history["dag_run"], runs
    # The clone has its own Fernet key: what the source encrypted with its key (Variables, Connections) is there
    # but unreadable in the branch, so a branch never holds prod's secrets in the clear.
    variable = restored_airflow.get(f"/variables/{BEFORE}")
    print(f"\nthe source's Variable in the clone: HTTP {variable.status_code} {variable.text[:200]}")
    assert variable.status_code != 200 or variable.json().get("value") in (None, ""), variable.text


def test_destroying_the_restored_branch_leaves_the_source_archive_as_it_was(node, backed_up, restored, s3_on_bridge):
    import engine

    up, _ = backed_up
    bucket = up.outputs["log_bucket"].value
    before = set(object_keys(aws_client(s3_on_bridge), bucket, f"{PREFIX}/"))
    stack, _ = restored
    engine.destroy(stack)
    after = set(object_keys(aws_client(s3_on_bridge), bucket, f"{PREFIX}/"))
    assert before <= after, sorted(before - after)


def test_a_restore_from_a_stack_without_backups_is_refused_before_anything_is_created(
        node, s3_on_bridge, dag_repo, tmp_path_factory):
    name = f"br-nobackups-{secrets.token_hex(3)}"
    stack = open_branch_stack(name, node.kubeconfig(), s3_on_bridge, dag_repo, tmp_path_factory.mktemp("refused"))
    # The dev stack's file says backups are off.
    set_config(stack, {"postgres": {**BRANCH_POSTGRES, "restore": {"source": "dev"}}})
    with pytest.raises(auto.CommandError) as refused:
        stack.up(color="never")
    message = str(refused.value)
    print(f"\n{message[message.find('postgres.restore'):][:400]}")
    assert "postgres.restore" in message and "stack 'dev' has postgres.backups.enabled false" in message
    resources = stack.export_stack().deployment.get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []
    namespaces = {n["metadata"]["name"] for n in node.api.request("GET", "/api/v1/namespaces").body["items"]}
    assert not any(name in n for n in namespaces), namespaces
    buckets = aws_client(s3_on_bridge).list_buckets()["Buckets"]
    assert not any(name in b["Name"] for b in buckets), buckets
