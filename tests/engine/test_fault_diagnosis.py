"""Faults while deploying, what our tools read and say without running the engine: the lock the engine names and
whether it is stale, a failed update said per service, each unfinished operation settled by what it was for, and
the bucket an interrupted create made taken over. The faults themselves, through the real engine:
test_deploy_faults.py; what the user does: docs/recovering-an-interrupted-update.md.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import boto3
import pytest

import recovery

ACCESS_KEY, SECRET_KEY = "faults-access-key", "faults-secret-key"


LOCKED = """error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.
  file:///tmp/p/state/.pulumi/locks/organization/airflow-platform/br-x/6e47.json?no_tmp_dir=true: created by root@ci-runner-7 (pid 27472) at 2026-12-03T20:26:52Z
"""


DIAGNOSTICS = """Updating (br-x):
 +  kubernetes:core/v1:LimitRange br-x-limits creating (0s) error: ...
Diagnostics:
  kubernetes:core/v1:LimitRange (br-x-limits):
    error: resource "urn:pulumi:br-x::airflow-platform::airflow-platform:index:InstanceNamespace$kubernetes:core/v1:LimitRange::br-x-limits" was not successfully created by the Kubernetes API server: Patch "https://127.0.0.1:33847/api/v1/namespaces/airflow-br-x/limitranges/br-x-limits?fieldManager=pulumi-kubernetes-9dfdd150&force=false": dial tcp 127.0.0.1:33847: connect: connection refused

  pulumi:pulumi:Stack (airflow-platform-br-x):
    error: update failed

  pulumi-python:dynamic:S3Bucket (br-x):
    error: Exception calling application: the S3 endpoint http://127.0.0.1:44655 could not be reached while creating bucket 'airflow-br-x-airflow-logs' (Could not connect to the endpoint URL: "http://127.0.0.1:44655/airflow-br-x-airflow-logs"). Nothing else is changed for it; once the endpoint answers, run `up` again.

Resources:
    2 errored
"""


def test_the_lock_the_engine_names_is_read_and_one_on_another_machine_is_not_removed_without_force():
    [lock] = recovery.locks_in(LOCKED)
    assert (lock.where, lock.user, lock.host, lock.pid) == (
        "file:///tmp/p/state/.pulumi/locks/organization/airflow-platform/br-x/6e47.json", "root", "ci-runner-7", 27472)
    assert lock.holder == "elsewhere"
    said = recovery.lock_refusal(LOCKED, "br-x", "br-x")
    assert lock.where in said and "ci-runner-7" in said and "pid 27472" in said
    assert "another CI job" in said and "`scripts/recover-stack br-x --force`" in said


def test_a_lock_of_this_machine_is_stale_exactly_when_its_pulumi_process_is_gone(tmp_path):
    import socket

    here = socket.gethostname()
    (tmp_path / "pulumi").symlink_to(shutil.which("sleep"))
    for argv, holder in (([str(tmp_path / "pulumi"), "30"], "running"), (["sleep", "30"], "gone")):
        process = subprocess.Popen(argv)
        wait_for(lambda: Path(f"/proc/{process.pid}/cmdline").read_bytes().startswith(argv[0].encode()), 10,
                 f"{argv[0]} to be exec'd")
        try:
            assert recovery.Lock("f", "u", here, process.pid, "t").holder == holder, argv  # a reused pid is not pulumi
            assert recovery.Lock("f", "u", "another-host", process.pid, "t").holder == "elsewhere"
        finally:
            process.kill()
            process.wait()
        assert recovery.Lock("f", "u", here, process.pid, "t").holder == "gone"


def test_a_failed_update_is_said_per_service_with_its_endpoint_and_resources():
    said = recovery.explain_failure(DIAGNOSTICS, "br-x")
    assert "2 resource(s)" in said
    assert "the Kubernetes API server https://127.0.0.1:33847 did not answer (connection refused): LimitRange br-x-limits" in said
    assert "the S3 endpoint http://127.0.0.1:44655 did not answer while creating bucket 'airflow-br-x-airflow-logs'" in said
    assert "update failed" not in said and "Exception calling application" not in said


def test_each_unfinished_operation_is_settled_by_what_it_was_for():
    config_map = "kubernetes:core/v1:ConfigMap"
    deployment = {
        "resources": [{"urn": "urn:a::replaced", "type": config_map, "custom": True}],
        "pending_operations": [
            {"type": "creating", "resource": {"urn": "urn:a::made", "type": config_map, "custom": True,
                                              "inputs": {"metadata": {"name": "made", "namespace": "ns"}}}},
            {"type": "creating", "resource": {"urn": "urn:a::replaced", "type": config_map, "custom": True,
                                              "inputs": {"metadata": {"name": "replaced", "namespace": "ns"}}}},
            {"type": "creating", "resource": {"urn": "urn:a::nameless", "type": config_map, "custom": True}},
            {"type": "creating", "resource": {"urn": "urn:a::pw", "type": "random:index/randomPassword:RandomPassword",
                                              "custom": True}},
            {"type": "updating", "resource": {"urn": "urn:a::replaced", "type": config_map, "custom": True}},
        ],
    }
    settled, done = recovery.settle(deployment)
    assert settled["pending_operations"] == []
    assert [(r["urn"], r.get("id")) for r in settled["resources"]] == [("urn:a::replaced", None), ("urn:a::made", "ns/made")]
    assert settled["resources"][1]["outputs"] == {"metadata": {"name": "made", "namespace": "ns"}}
    assert len(done) == 5 and "check the cluster for it" in done[2] and "random value" in done[3]


def test_the_bucket_an_interrupted_create_made_is_taken_over_and_any_other_is_refused(s3_endpoint):
    from components.log_bucket_provider import BucketProvider, LogBucketError

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    props = {"bucket": "faults-adopt", "region": "us-east-1", "endpoint_url": s3_endpoint, "log_prefix": "logs",
             "retention_days": 5, "tags": {"airflow-instance": "br-x"}, "force_destroy": False, "verify_tls": True,
             "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "provider_version": "v1"}
    s3.create_bucket(Bucket="faults-adopt")  # what a CreateBucket whose answer was lost leaves: empty, no tags
    created = BucketProvider().create(props)
    assert created.id == "faults-adopt" and created.outs["retention_days"] == 5
    assert s3.get_bucket_lifecycle_configuration(Bucket="faults-adopt")["Rules"][0]["Expiration"]["Days"] == 5
    assert BucketProvider().create(props).id == "faults-adopt", "tagged exactly as ours and empty: ours"

    s3.create_bucket(Bucket="faults-tagged")
    s3.put_bucket_tagging(Bucket="faults-tagged", Tagging={"TagSet": [{"Key": "airflow-instance", "Value": "br-y"}]})
    s3.create_bucket(Bucket="faults-full")
    s3.put_object(Bucket="faults-full", Key="someone-elses/file", Body=b"x")
    for bucket, why in (("faults-tagged", "it is tagged {'airflow-instance': 'br-y'}"), ("faults-full", "it holds 1 object")):
        with pytest.raises(LogBucketError, match="already exists") as refused:
            BucketProvider().create({**props, "bucket": bucket})
        assert why in str(refused.value)
        with pytest.raises(Exception):
            s3.get_bucket_lifecycle_configuration(Bucket=bucket)  # left as it was


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
