"""Backups on the node: the instance is updated to `postgres.backups.enabled`, and the Barman Cloud plugin (built
here, run as the release manifest runs it) archives WAL and takes base backups into the stack's bucket on the
S3 server on the node's bridge.

- WAL segments and a base backup (the ScheduledBackup's immediate one) land under `<backup prefix>/<server>/`,
  and nothing of the database's lands anywhere else in the bucket.
- Only the backup credential reaches them: with the credential policies the stack prints
  (`components/s3_access.py`) attached to two users in moto's IAM and moto's enforcement on, the backup user lists
  and reads the archive and the log user is refused. moto accepts any key while enforcement is off, which is how
  the instance itself ran; AWS and Ceph RGW enforce the same documents.
- The shipped backup alerts read the plugin's metrics as the PostgreSQL pod exports them: with S3 down an
  on-demand Backup fails and AirflowDatabaseBackupFailing fires; with S3 back the next Backup completes and it
  resolves. AirflowDatabaseBackupTooOld is quiet on the fresh backup and fires once the same values are 26 hours
  old. promtool evaluates the shipped rules on the scraped values, shifted as a whole so that its clock (which
  starts at 0) stands at the scrape's time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import requests
import yaml
from botocore.exceptions import ClientError

from components.metrics_catalog import RuleContext, rule_groups
from components.postgres_cluster import CATALOG_REFRESH_SECONDS
from components.s3_access import identity_policies
from testbed.node import database as db
from testbed.node.backups import PREFIX, take_backup
from testbed.node.database import cnpg_items
from testbed.node.instance import aws_client, object_keys

pytestmark = pytest.mark.slow

METRICS_PORT = 9187


def _archive(node, up) -> tuple[str, str, str]:
    """The namespace, the bucket and the folder the cluster archives into (`<prefix>/<server name>/`)."""
    namespace = up.outputs["namespace"].value
    (cluster,) = cnpg_items(node, namespace, "clusters")
    return namespace, up.outputs["log_bucket"].value, f"{PREFIX}/{cluster['metadata']['name']}/"


def _archiving(node, namespace: str, timeout: float = 180) -> dict:
    """The Cluster's ContinuousArchiving condition once it is True (or the last seen, after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        (cluster,) = cnpg_items(node, namespace, "clusters")
        condition = next((c for c in cluster.get("status", {}).get("conditions", []) if c["type"] == "ContinuousArchiving"), {})
        if condition.get("status") == "True" or time.monotonic() > deadline:
            return condition
        time.sleep(2)


def test_wal_segments_and_a_base_backup_land_under_the_backup_prefix(node, backed_up, s3_on_bridge):
    up, first = backed_up
    namespace, bucket, folder = _archive(node, up)
    assert first["status"]["phase"] == "completed", first["status"]
    assert _archiving(node, namespace).get("status") == "True", _archiving(node, namespace, timeout=0)

    keys = object_keys(aws_client(s3_on_bridge), bucket)
    database = [k for k in keys if not k.startswith("logs/")]
    base = [k for k in database if k.startswith(f"{folder}base/")]
    wals = [k for k in database if k.startswith(f"{folder}wals/")]
    print(f"\n{len(base)} base backup objects, {len(wals)} WAL objects under s3://{bucket}/{folder}")
    assert base and wals, database
    assert any(k.endswith("/backup.info") for k in base) and any("/data.tar" in k for k in base), base
    assert f"{folder}base/{first['status']['backupId']}/backup.info" in base
    # Nothing of the database's outside its folder; the rest of the bucket is task logs.
    assert [k for k in database if not k.startswith(folder)] == []


@pytest.fixture
def iam_users(s3_on_bridge, backed_up):
    """A log user and a backup user in moto's IAM, each with the policy the stack prints for its credential."""
    up, _ = backed_up
    bucket = up.outputs["log_bucket"].value
    iam = aws_client(s3_on_bridge, "iam")
    keys = {}
    for job, policy in identity_policies(bucket, "logs", PREFIX).items():
        if job not in ("log", "backup"):
            continue
        user = f"node-{job}-{int(time.time())}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=job, PolicyDocument=json.dumps(policy))
        created = iam.create_access_key(UserName=user)["AccessKey"]
        keys[job] = aws_client(s3_on_bridge, key=created["AccessKeyId"], secret=created["SecretAccessKey"])
    return keys


def _allowed(call) -> bool:
    try:
        call()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "AccessDenied", error.response
        return False
    return True


def test_only_the_backup_credential_reaches_the_backups(node, backed_up, s3_on_bridge, iam_users):
    from moto.core.authorization import enable_iam_authentication

    up, first = backed_up
    _, bucket, folder = _archive(node, up)
    backup_info = f"{folder}base/{first['status']['backupId']}/backup.info"
    # A task log's place (the instance may have run no task yet).
    a_log = "logs/dag_id=iam_probe/attempt=1.log"
    aws_client(s3_on_bridge).put_object(Bucket=bucket, Key=a_log, Body=b"a task's log")
    log, backup = iam_users["log"], iam_users["backup"]
    with enable_iam_authentication():
        seen = {
            "backup user reads the backup": _allowed(lambda: backup.get_object(Bucket=bucket, Key=backup_info)),
            "backup user writes the archive": _allowed(
                lambda: backup.put_object(Bucket=bucket, Key=f"{folder}probe", Body=b"x")),
            "log user reads the backup": _allowed(lambda: log.get_object(Bucket=bucket, Key=backup_info)),
            "log user overwrites the backup": _allowed(
                lambda: log.put_object(Bucket=bucket, Key=backup_info, Body=b"x")),
            "log user deletes the backup": _allowed(lambda: log.delete_object(Bucket=bucket, Key=backup_info)),
            "log user reads a task log": _allowed(lambda: log.get_object(Bucket=bucket, Key=a_log)),
            "backup user reads a task log": _allowed(lambda: backup.get_object(Bucket=bucket, Key=a_log)),
        }
    for probe in (f"{folder}probe", a_log):
        aws_client(s3_on_bridge).delete_object(Bucket=bucket, Key=probe)
    print("\n" + "\n".join(f"{what}: {'allowed' if ok else 'AccessDenied'}" for what, ok in seen.items()))
    assert seen == {
        "backup user reads the backup": True, "backup user writes the archive": True,
        "log user reads the backup": False, "log user overwrites the backup": False,
        "log user deletes the backup": False, "log user reads a task log": True,
        "backup user reads a task log": False,
    }
    # The backup is intact.
    assert aws_client(s3_on_bridge).get_object(Bucket=bucket, Key=backup_info)["Body"].read() != b"x"


def _scrape(node, namespace: str) -> dict[str, float]:
    """The plugin's backup metrics as the PostgreSQL pod exports them (CloudNativePG's exporter on 9187)."""
    pod = db.primary(node, namespace)
    text = requests.get(f"http://{pod['status']['podIP']}:{METRICS_PORT}/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        if line.startswith("barman_cloud_cloudnative_pg_io_"):
            name, _, value = line.rpartition(" ")
            found[name.split("{")[0]] = float(value)
    return found


def _scrape_until(node, namespace: str, holds, timeout: float = 120) -> dict[str, float]:
    """Scrapes until `holds(metrics)`: the plugin records a backup's outcome on its ObjectStore, which the exporter
    reads, a little after the Backup ends. The last scrape after `timeout`."""
    deadline = time.monotonic() + timeout
    while not holds(found := _scrape(node, namespace)) and time.monotonic() < deadline:
        time.sleep(3)
    return found


LAST_OK = "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp"
LAST_FAILED = "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp"
BACKUP_ALERTS = ("AirflowDatabaseBackupFailing", "AirflowDatabaseBackupTooOld")


def _backup_rules(namespace: str, cluster: str) -> list[dict]:
    """The shipped rules of this instance (what its PrometheusRule holds), the backup alerts only."""
    groups = rule_groups(RuleContext(namespace=namespace, exporter_job="unused", cluster=cluster))
    return [{"name": "backups", "rules": [r for g in groups for r in g["rules"] if r.get("alert") in BACKUP_ALERTS]}]


def _firing(promtool: str, tmp_path, rules: list[dict], metrics: dict[str, float], labels: dict[str, str],
            scraped_at: float, hours_later: float = 0) -> set[str]:
    """The backup alerts firing at `hours_later` after the scrape, if the scraped values stayed as they were
    (as they do while no backup succeeds). promtool's clock starts at 0, so every timestamp is shifted by the
    same amount: the scrape stands at one hour on its clock."""
    shift = scraped_at - 3600
    minutes = int(60 + hours_later * 60)
    series = [{"series": f"{name}{{{', '.join(f'{k}={json.dumps(v)}' for k, v in labels.items())}}}",
               "values": f"{value - shift if value else 0:.0f}+0x{minutes}"} for name, value in metrics.items()]
    firing = set()
    for alert in BACKUP_ALERTS:
        rule = next(r for g in rules for r in g["rules"] if r["alert"] == alert)
        expected = [{"exp_labels": rule["labels"], "exp_annotations": {
            k: v.replace("{{ $labels.namespace }}", labels["namespace"]) for k, v in rule["annotations"].items()}}]
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rules}))
        (tmp_path / "test.yaml").write_text(yaml.safe_dump({
            "rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
                "interval": "1m", "input_series": series,
                "alert_rule_test": [{"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": expected}]}]}))
        done = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True)
        if done.returncode == 0:
            firing.add(alert)
    return firing


def test_backup_alerts_fire_when_backups_fail_and_resolve_when_fixed(node, backed_up, s3_server, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: scripts/test installs it (Debian package prometheus)"
    up, _ = backed_up
    namespace, _, folder = _archive(node, up)
    cluster = folder.split("/")[1]
    rules = _backup_rules(namespace, cluster)
    labels = {"namespace": namespace, "pod": db.primary(node, namespace)["metadata"]["name"]}

    # The first backup's refresh may be dropped as well (below): the catalogue refresh is then what brings it.
    healthy = _scrape_until(node, namespace, lambda m: m.get(LAST_OK, 0) > 0, timeout=CATALOG_REFRESH_SECONDS + 60)
    print(f"\nafter the first backup: {healthy}")
    assert healthy.get(LAST_OK, 0) > 0, healthy
    assert _firing(promtool, tmp_path, rules, healthy, labels, time.time()) == set()

    s3_server.down()
    try:
        failed = take_backup(node, namespace, cluster, "while-s3-is-down")
    finally:
        s3_server.up()
    assert failed["status"]["phase"] == "failed", failed["status"]
    broken = _scrape_until(node, namespace, lambda m: m.get(LAST_FAILED, 0) > m.get(LAST_OK, 0))
    print(f"after a failed backup: {broken}; the Backup said: {failed['status'].get('error')}")
    assert _firing(promtool, tmp_path, rules, broken, labels, time.time()) == {"AirflowDatabaseBackupFailing"}
    assert _firing(promtool, tmp_path, rules, broken, labels, time.time(), hours_later=27) == set(BACKUP_ALERTS)

    fixed = take_backup(node, namespace, cluster, "after-s3-is-back")
    assert fixed["status"]["phase"] == "completed", fixed["status"]
    # The plugin may drop its refresh after the backup (a conflict on the ObjectStore's status); its catalogue
    # refresh (components/postgres_cluster.py CATALOG_REFRESH_SECONDS) brings the metric up to date.
    healed = _scrape_until(node, namespace, lambda m: m.get(LAST_OK, 0) > m.get(LAST_FAILED, 0),
                           timeout=CATALOG_REFRESH_SECONDS + 60)
    print(f"after the next backup: {healed}")
    assert _firing(promtool, tmp_path, rules, healed, labels, time.time()) == set()
