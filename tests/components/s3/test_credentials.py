"""The S3 credentials: one per job (provisioning, logs, backups), the bucket policy and the identity policies."""

import json

import pytest

from components.s3_access import bucket_policy, identity_policies
from testbed.runs import dev, refused, stack
from testbed.stacks import TEST_SECRETS


def test_the_provisioning_key_reaches_no_pod_and_each_pod_gets_only_its_jobs_key():
    run = stack("prod")
    in_kubernetes = repr([r.inputs for r in run.resources if r.type.startswith("kubernetes:")])
    assert TEST_SECRETS["s3AccessKeyId"] not in in_kubernetes and TEST_SECRETS["s3SecretAccessKey"] not in in_kubernetes
    connections = json.loads(run.one("Secret", "-connections").inputs["stringData"]["connections.json"])
    assert connections["s3_logs"]["login"] == TEST_SECRETS["s3LogAccessKeyId"]
    assert TEST_SECRETS["s3BackupAccessKeyId"] not in repr(connections)
    backup = run.one("Secret", "-pg-s3").inputs["stringData"]
    assert backup["ACCESS_KEY_ID"] == TEST_SECRETS["s3BackupAccessKeyId"]
    bucket = next(r for r in run.resources if r.kind == "S3Bucket")
    assert bucket.inputs["access_key_id"] == TEST_SECRETS["s3AccessKeyId"]


def test_without_a_log_key_pods_use_the_ambient_chain_never_the_provisioning_key():
    run = dev()
    connections = json.loads(run.one("Secret", "-connections").inputs["stringData"]["connections.json"])
    assert "login" not in connections["s3_logs"] and "password" not in connections["s3_logs"]


@pytest.mark.parametrize(
    "secrets, key",
    [
        ({"s3LogAccessKeyId": TEST_SECRETS["s3AccessKeyId"]}, "s3LogAccessKeyId: is the provisioning key"),
        ({"s3BackupAccessKeyId": TEST_SECRETS["s3AccessKeyId"]}, "s3BackupAccessKeyId: is the provisioning key"),
        ({"s3LogAccessKeyId": TEST_SECRETS["s3BackupAccessKeyId"]}, "s3LogAccessKeyId: is also the backup key"),
        ({"airflowConnections": json.dumps({"x": {"conn_type": "aws", "login": TEST_SECRETS["s3BackupAccessKeyId"]}})},
         "airflowConnections: [secret] a connection logs in with the backup key"),
    ],
)
def test_a_stack_whose_pods_would_hold_the_provisioning_or_backup_key_is_refused(secrets, key):
    assert key in refused({}, secrets, name="prod")


def test_the_bucket_policy_holds_the_log_and_backup_users_to_their_prefixes():
    log, backup = "arn:aws:iam::1:user/logs", "arn:aws:iam::1:user/backups"
    policy = bucket_policy("b", "logs", "postgres", log, backup)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Deny" for s in policy["Statement"])
    assert by_sid["LogCredentialOnlyItsPrefix"]["NotResource"] == "arn:aws:s3:::b/logs/*"
    assert by_sid["LogCredentialOnlyItsPrefix"]["Principal"] == {"AWS": [log]}
    assert by_sid["BackupCredentialOnlyItsPrefix"]["NotResource"] == "arn:aws:s3:::b/postgres/*"
    # The log user can neither delete objects nor touch the bucket's settings or policy.
    allowed_to_log = by_sid["LogCredentialOnlyObjects"]["NotAction"]
    assert "s3:DeleteObject" not in allowed_to_log and not any("Bucket" in a and "Put" in a for a in allowed_to_log)
    assert "s3:DeleteObject" in by_sid["BackupCredentialOnlyObjects"]["NotAction"]  # Barman's retention
    assert bucket_policy("b", "logs", "postgres", None, None) is None


def test_the_stack_puts_the_bucket_policy_when_it_names_the_users():
    run = stack("prod", {"s3": {"logPrincipal": "arn:aws:iam::1:user/logs", "backupPrincipal": "arn:aws:iam::1:user/b"}})
    bucket = next(r for r in run.resources if r.kind == "S3Bucket")
    statements = json.loads(bucket.inputs["bucket_policy"])["Statement"]
    assert {s["Principal"]["AWS"][0] for s in statements} == {"arn:aws:iam::1:user/logs", "arn:aws:iam::1:user/b"}


def test_identity_policies_give_the_log_and_backup_users_only_their_prefix():
    policies = identity_policies("b", "logs", "postgres")
    assert {s["Resource"] for s in policies["log"]["Statement"]} == {"arn:aws:s3:::b/logs/*", "arn:aws:s3:::b"}
    assert {s["Resource"] for s in policies["backup"]["Statement"]} == {"arn:aws:s3:::b/postgres/*", "arn:aws:s3:::b"}
