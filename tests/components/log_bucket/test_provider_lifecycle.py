"""The LogBucket dynamic provider's `create`, `update` and `delete` against a real moto S3 server (no Pulumi engine).

The provider is called the way the engine calls it: with an endpoint URL and credentials in the props, and
with the outputs of one step handed back as the olds/props of the next. Every test uses its own bucket name,
so the tests share nothing but the server and their order does not matter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from pulumi.runtime import rpc

from components import log_bucket_provider
from components.log_bucket_provider import BucketProvider, LogBucketError
from tests.components.log_bucket.provider_calls import (ACCESS_KEY, PEM, SECRET_KEY, create, error_code,
    lifecycle_rule, make_props, outs_for)


# --- create ---------------------------------------------------------------------------------------------------


def test_create_applies_lifecycle_encryption_tags_and_public_access_block(
    provider: BucketProvider, endpoint: str, s3: Any
) -> None:
    props = make_props(endpoint, retention_days=14, log_prefix="task-logs")
    outs = create(provider, props)
    bucket = props["bucket"]

    s3.head_bucket(Bucket=bucket)
    rule = lifecycle_rule(s3, bucket)
    assert rule["ID"] == "expire-airflow-task-logs"
    assert rule["Status"] == "Enabled"
    assert rule["Filter"]["Prefix"] == "task-logs/"
    assert rule["Expiration"]["Days"] == 14
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1

    sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"team": "data", "app": "airflow"}
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(pab[k] for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))

    assert outs["bucket"] == bucket
    assert outs["endpoint_url"] == endpoint
    assert outs["logs_url"] == f"s3://{bucket}/task-logs"
    assert outs["retention_days"] == 14
    assert outs["encryption"] == "AES256"
    assert outs["public_access_block"] is True
    assert outs["unsupported_features"] == []
    # Credentials come back only as secrets.
    for key, value in (("access_key_id", ACCESS_KEY), ("secret_access_key", SECRET_KEY)):
        assert rpc.is_rpc_secret(outs[key]) and rpc.unwrap_rpc_secret(outs[key]) == value
        assert value not in repr({k: v for k, v in outs.items() if k not in ("access_key_id", "secret_access_key")})


def test_create_outside_us_east_1_sets_location_constraint(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint, region="eu-west-1")
    create(provider, props)
    assert s3.get_bucket_location(Bucket=props["bucket"])["LocationConstraint"] == "eu-west-1"


def test_create_refuses_a_bucket_that_already_exists(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint)
    s3.create_bucket(Bucket=props["bucket"])
    s3.put_object(Bucket=props["bucket"], Key="someone-elses/file", Body=b"x")
    with pytest.raises(LogBucketError, match="already exists") as excinfo:
        provider.create(props)
    assert "import" in str(excinfo.value) and "another" in str(excinfo.value)
    # Nothing was changed on the existing bucket.
    with pytest.raises(ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket=props["bucket"])


def test_create_records_features_the_store_does_not_implement(
    provider: BucketProvider, endpoint: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_client = log_bucket_provider._s3_client

    def not_implemented(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        parsed = {
            "Error": {"Code": "NotImplemented", "Message": "not here"},
            "ResponseMetadata": {"HTTPStatusCode": 501},
        }
        return AWSResponse("http://store", 501, {}, None), parsed

    def client_without_pab(settings: dict[str, Any]) -> Any:
        import contextlib

        @contextlib.contextmanager
        def managed() -> Iterator[Any]:
            with real_client(settings) as client:
                client.meta.events.register("before-call.s3.PutPublicAccessBlock", not_implemented)
                client.meta.events.register("before-call.s3.PutBucketEncryption", not_implemented)
                yield client

        return managed()

    monkeypatch.setattr(log_bucket_provider, "_s3_client", client_without_pab)
    props = make_props(endpoint)
    outs = create(provider, props)
    assert outs["unsupported_features"] == ["encryption", "public_access_block"]
    assert outs["public_access_block"] is False
    assert outs["encryption"] is None
    assert lifecycle_rule(s3, props["bucket"])["Expiration"]["Days"] == 30


def test_create_without_explicit_credentials_uses_the_default_chain(
    provider: BucketProvider, endpoint: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment")
    props = make_props(endpoint, access_key_id=None, secret_access_key=None)
    outs = create(provider, props)
    s3.head_bucket(Bucket=props["bucket"])
    assert "access_key_id" not in outs and "secret_access_key" not in outs


def test_ca_bundle_temp_file_is_removed(
    provider: BucketProvider, endpoint: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    outs = create(provider, make_props(endpoint, ca_bundle=PEM))
    assert outs["ca_bundle"] == PEM
    assert list(tmp_path.iterdir()) == []


# --- update ---------------------------------------------------------------------------------------------------


def test_update_changes_retention_prefix_and_tags(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint)
    outs = create(provider, props)
    bucket = props["bucket"]
    news = dict(props, retention_days=90, log_prefix="airflow/logs", tags={"team": "platform"})

    diff = provider.diff(bucket, outs, news)
    assert diff.changes is True and diff.replaces == []

    new_outs = provider.update(bucket, outs, news).outs
    rule = lifecycle_rule(s3, bucket)
    assert rule["Expiration"]["Days"] == 90
    assert rule["Filter"]["Prefix"] == "airflow/logs/"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"team": "platform"}
    # update returns every output (outputs vanish otherwise), and the next diff is clean.
    assert set(new_outs) == set(outs)
    assert new_outs["logs_url"] == f"s3://{bucket}/airflow/logs"
    assert new_outs["retention_days"] == 90
    assert provider.diff(bucket, new_outs, news).changes is False

    # Removing every tag removes the tag set; applying the same props again changes nothing.
    untagged = dict(news, tags={})
    first = provider.update(bucket, new_outs, untagged).outs
    with pytest.raises(ClientError) as excinfo:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(excinfo.value) == "NoSuchTagSet"
    second = provider.update(bucket, first, untagged).outs
    assert first == second
    assert lifecycle_rule(s3, bucket) == rule


# --- delete ---------------------------------------------------------------------------------------------------


def test_delete_refuses_a_bucket_with_logs(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint)
    outs = create(provider, props)
    bucket = props["bucket"]
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"logs/dag_id=x/run_id=r/task_id=t/attempt={i}.log", Body=b"log")

    with pytest.raises(LogBucketError) as excinfo:
        provider.delete(bucket, outs)
    message = str(excinfo.value)
    assert "holds 3 object(s)" in message
    assert "forceDestroy" in message

    s3.head_bucket(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 3


def test_delete_counts_versions_and_delete_markers(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint)
    outs = create(provider, props)
    bucket = props["bucket"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="logs/a.log", Body=b"1")
    s3.put_object(Bucket=bucket, Key="logs/a.log", Body=b"2")
    s3.delete_object(Bucket=bucket, Key="logs/a.log")  # no current object left, only versions + a marker

    with pytest.raises(LogBucketError, match=r"holds 3 object\(s\)"):
        provider.delete(bucket, outs)
    s3.head_bucket(Bucket=bucket)

    provider.delete(bucket, dict(outs, force_destroy=True))
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=bucket)


def test_delete_with_force_destroy_empties_and_deletes(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint, force_destroy=True)
    outs = create(provider, props)
    bucket = props["bucket"]
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"logs/{i}.log", Body=b"log")
    s3.put_object(Bucket=bucket, Key="backups/base.tar", Body=b"backup")
    s3.create_multipart_upload(Bucket=bucket, Key="logs/unfinished.log")

    provider.delete(bucket, outs)

    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket=bucket)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_of_an_empty_or_missing_bucket(provider: BucketProvider, endpoint: str, s3: Any) -> None:
    props = make_props(endpoint)
    provider.delete(props["bucket"], outs_for(props))  # never created: fine
    outs = create(provider, props)
    provider.delete(props["bucket"], outs)  # empty: deleted without force_destroy
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=props["bucket"])
    provider.delete(props["bucket"], outs)  # again: idempotent
