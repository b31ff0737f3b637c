"""The LogBucket dynamic provider, method by method, against a real moto S3 server (no Pulumi engine).

The provider is called the way the engine calls it: with an endpoint URL and credentials in the props, and
with the outputs of one step handed back as the olds/props of the next. Every test uses its own bucket name,
so the tests share nothing but the server and their order does not matter.
"""

from __future__ import annotations

import importlib.util
import pickle
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dill
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown
from pulumi.runtime import rpc

from components import log_bucket_props, log_bucket_provider
from components.log_bucket_props import bucket_name_errors
from components.log_bucket_provider import BucketProvider, LogBucketError
from testbed.harness import run_stack

ACCESS_KEY = "AKIATESTLOGBUCKET000"
SECRET_KEY = "s3cr3t-Ng6tqZ0vXk-never-in-a-pickle"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    """A plain boto3 client to read back what the provider did."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture
def provider() -> BucketProvider:
    return BucketProvider()


def make_props(endpoint: str, **overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "bucket": f"airflow-logs-{uuid.uuid4().hex[:12]}",
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "log_prefix": "logs",
        "retention_days": 30,
        "tags": {"team": "data", "app": "airflow"},
        "force_destroy": False,
        "ca_bundle": None,
        "verify_tls": True,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "provider_version": "v1",
    }
    props.update(overrides)
    return props


def create(provider: BucketProvider, props: dict[str, Any]) -> dict[str, Any]:
    result = provider.create(props)
    assert result.id == props["bucket"]
    return result.outs


def lifecycle_rule(s3: Any, bucket: str) -> dict[str, Any]:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert len(rules) == 1
    return rules[0]


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


# --- bucket_name_errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["abc", "airflow-logs", "my.bucket.name", "a" * 63, "0logs9", "logs-2024.archive", "192.168.5.a"]
)
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_errors(name) == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("", "3 to 63 characters"),
        ("Airflow-Logs", "uppercase"),
        ("logs_bucket", "'_'"),
        ("-logs", "must start with"),
        ("logs-", "must end with"),
        ("logs.", "must end with"),
        ("my..bucket", "'..'"),
        ("192.168.5.4", "IP address"),
        ("xn--logs", "'xn--'"),
        ("sthree-logs", "'sthree-'"),
        ("amzn-s3-demo-logs", "'amzn-s3-demo-'"),
        ("logs-s3alias", "'-s3alias'"),
        ("logs--ol-s3", "'--ol-s3'"),
        ("logs.mrap", "'.mrap'"),
        ("logs--x-s3", "'--x-s3'"),
    ],
)
def test_invalid_bucket_names(name: str, fragment: str) -> None:
    errors = bucket_name_errors(name)
    assert errors, name
    assert any(fragment in error for error in errors), errors
    assert all(isinstance(error, str) and error for error in errors)


def test_bucket_name_errors_lists_every_problem() -> None:
    errors = bucket_name_errors("-A..")
    assert len(errors) >= 4  # characters, start, end, '..'


# --- check ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Airflow-Logs", "ab", "10.0.0.1", "my..logs"])
def test_check_rejects_invalid_names(provider: BucketProvider, name: str) -> None:
    result = provider.check({}, make_props("http://s3.local", bucket=name))
    assert result.failures
    assert {f.property for f in result.failures} == {"bucket"}
    assert all(f.reason.startswith(f"bucket '{name}':") for f in result.failures)


def test_check_accepts_valid_props(provider: BucketProvider) -> None:
    news = make_props("http://s3.local")
    result = provider.check({}, news)
    assert result.failures == []
    assert result.inputs == news


@pytest.mark.parametrize(
    ("overrides", "prop"),
    [
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": -5}, "retention_days"),
        ({"retention_days": 1.5}, "retention_days"),
        ({"retention_days": None}, "retention_days"),
        ({"log_prefix": ""}, "log_prefix"),
        ({"log_prefix": "/logs"}, "log_prefix"),
        ({"log_prefix": "/"}, "log_prefix"),
        ({"endpoint_url": "s3.local:9000"}, "endpoint_url"),
        ({"tags": {"aws:owner": "x"}}, "tags"),
        ({"ca_bundle": "not a certificate"}, "ca_bundle"),
        ({"secret_access_key": None}, "secret_access_key"),
        ({"access_key_id": None}, "access_key_id"),
    ],
)
def test_check_rejects_bad_settings(provider: BucketProvider, overrides: dict[str, Any], prop: str) -> None:
    result = provider.check({}, make_props("http://s3.local", **overrides))
    assert [f.property for f in result.failures] == [prop]
    assert prop.split("_")[0] in result.failures[0].reason


def test_check_accepts_engine_encodings_and_unknowns(provider: BucketProvider) -> None:
    # The engine hands numbers over as floats, and leaves values unknown during a preview.
    news = make_props("http://s3.local", retention_days=30.0, bucket=Unknown(), access_key_id=Unknown())
    assert provider.check({}, news).failures == []


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


# --- diff (pure: no bucket needed) ------------------------------------------------------------------------------


def _outs_for(props: dict[str, Any]) -> dict[str, Any]:
    """What create would have stored, without calling S3."""
    return log_bucket_props.outputs(log_bucket_props.settings_from(props), [])


def test_diff_identical_props_has_no_changes(provider: BucketProvider) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], _outs_for(props), props)
    assert diff.changes is False
    assert diff.replaces == []


def test_diff_ignores_engine_encodings(provider: BucketProvider) -> None:
    props = make_props("http://s3.local", ca_bundle=None, endpoint_url=None, tags={})
    olds = _outs_for(props)
    # Missing vs None vs "", float vs int, a trailing slash on the endpoint, the plain stored secret.
    news = {k: v for k, v in props.items() if v is not None}
    news.update(retention_days=30.0, ca_bundle="", force_destroy=None)
    olds = {k: v for k, v in olds.items() if k != "tags"}
    olds["access_key_id"], olds["secret_access_key"] = ACCESS_KEY, SECRET_KEY
    assert provider.diff(props["bucket"], olds, news).changes is False

    with_endpoint = make_props("http://s3.local:9000")
    olds = _outs_for(with_endpoint)
    news = dict(with_endpoint, endpoint_url="http://s3.local:9000/")
    assert provider.diff(with_endpoint["bucket"], olds, news).changes is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retention_days", 7),
        ("log_prefix", "other"),
        ("tags", {"team": "other"}),
        ("force_destroy", True),
        ("verify_tls", False),
        ("ca_bundle", PEM),
        ("access_key_id", "AKIAROTATED000000000"),
        ("secret_access_key", "rotated"),
        ("provider_version", "v2"),
    ],
)
def test_diff_in_place_updates(provider: BucketProvider, key: str, value: Any) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], _outs_for(props), dict(props, **{key: value}))
    assert diff.changes is True
    assert diff.replaces == []


def test_diff_rename_replaces_creating_the_new_bucket_first(provider: BucketProvider) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], _outs_for(props), dict(props, bucket="renamed-logs"))
    assert diff.changes is True
    assert diff.replaces == ["bucket"]
    assert diff.delete_before_replace is False


@pytest.mark.parametrize(("key", "value"), [("region", "eu-west-1"), ("endpoint_url", "https://rgw.example")])
def test_diff_same_name_elsewhere_replaces_deleting_first(provider: BucketProvider, key: str, value: str) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], _outs_for(props), dict(props, **{key: value}))
    assert diff.changes is True
    assert diff.replaces == [key]
    assert diff.delete_before_replace is True


def test_diff_unknown_values_during_preview(provider: BucketProvider) -> None:
    props = make_props("http://s3.local")
    olds = _outs_for(props)
    diff = provider.diff(props["bucket"], olds, dict(props, secret_access_key=Unknown()))
    assert diff.changes is True and diff.replaces == []
    diff = provider.diff(props["bucket"], olds, dict(props, bucket=Unknown()))
    assert diff.replaces == ["bucket"]


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
    provider.delete(props["bucket"], _outs_for(props))  # never created: fine
    outs = create(provider, props)
    provider.delete(props["bucket"], outs)  # empty: deleted without force_destroy
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=props["bucket"])
    provider.delete(props["bucket"], outs)  # again: idempotent


# --- pickling and secrets ---------------------------------------------------------------------------------------


def test_provider_pickles_by_reference_and_holds_no_credentials(provider: BucketProvider, endpoint: str) -> None:
    props = make_props(endpoint, force_destroy=True)
    outs = create(provider, props)
    provider.delete(props["bucket"], outs)

    assert vars(provider) == {}
    for blob in (pickle.dumps(provider), dill.dumps(provider, recurse=True)):
        assert SECRET_KEY.encode() not in blob
        assert ACCESS_KEY.encode() not in blob
        assert b"components.log_bucket_provider" in blob  # by reference: the provider process imports the module
        assert isinstance(pickle.loads(blob), BucketProvider)

    # What Pulumi itself stores in `__provider`: deterministic, so it never shows up as a spurious diff.
    first, second = serialize_provider(provider), serialize_provider(BucketProvider())
    assert first == second
    assert len(first) < 1000
    assert isinstance(dill.loads(__import__("base64").b64decode(first)), BucketProvider)


def _provider_version_of(source: bytes, tmp_path: Path) -> str:
    """`provider_version()` as a copy of the provider module with `source` computes it."""
    path = tmp_path / "log_bucket_copy.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("log_bucket_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.provider_version()


def test_a_change_of_the_provider_code_shows_in_preview_as_an_in_place_update(
    provider: BucketProvider, tmp_path: Path
) -> None:
    shipped = log_bucket_provider.provider_version()
    source = Path(log_bucket_provider.__file__).read_bytes()
    # The same code gives the same version (no spurious diff on every preview); any edit gives another.
    assert _provider_version_of(source, tmp_path) == shipped
    edited = _provider_version_of(source + b"\n# a fix of the provider\n", tmp_path)
    assert edited != shipped
    # The program hands the version to the engine as an input, and the provider diffs on it.
    assert run_stack({}, stack="dev").one("S3Bucket").inputs["provider_version"] == shipped
    props = make_props("http://s3.local", provider_version=shipped)
    diff = provider.diff(props["bucket"], _outs_for(props), dict(props, provider_version=edited))
    assert (diff.changes, diff.replaces) == (True, [])
