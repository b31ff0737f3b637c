"""The LogBucket dynamic provider's pure methods, no bucket needed: the bucket name rules, `check` and `diff`
(as the engine calls them, with its encodings and unknowns)."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.output import Unknown

from components.log_bucket_props import bucket_name_errors
from components.log_bucket_provider import BucketProvider
from tests.components.log_bucket.provider_calls import ACCESS_KEY, PEM, SECRET_KEY, make_props, outs_for


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


# --- diff (pure: no bucket needed) ------------------------------------------------------------------------------


def test_diff_identical_props_has_no_changes(provider: BucketProvider) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], outs_for(props), props)
    assert diff.changes is False
    assert diff.replaces == []


def test_diff_ignores_engine_encodings(provider: BucketProvider) -> None:
    props = make_props("http://s3.local", ca_bundle=None, endpoint_url=None, tags={})
    olds = outs_for(props)
    # Missing vs None vs "", float vs int, a trailing slash on the endpoint, the plain stored secret.
    news = {k: v for k, v in props.items() if v is not None}
    news.update(retention_days=30.0, ca_bundle="", force_destroy=None)
    olds = {k: v for k, v in olds.items() if k != "tags"}
    olds["access_key_id"], olds["secret_access_key"] = ACCESS_KEY, SECRET_KEY
    assert provider.diff(props["bucket"], olds, news).changes is False

    with_endpoint = make_props("http://s3.local:9000")
    olds = outs_for(with_endpoint)
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
    diff = provider.diff(props["bucket"], outs_for(props), dict(props, **{key: value}))
    assert diff.changes is True
    assert diff.replaces == []


def test_diff_rename_replaces_creating_the_new_bucket_first(provider: BucketProvider) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], outs_for(props), dict(props, bucket="renamed-logs"))
    assert diff.changes is True
    assert diff.replaces == ["bucket"]
    assert diff.delete_before_replace is False


@pytest.mark.parametrize(("key", "value"), [("region", "eu-west-1"), ("endpoint_url", "https://rgw.example")])
def test_diff_same_name_elsewhere_replaces_deleting_first(provider: BucketProvider, key: str, value: str) -> None:
    props = make_props("http://s3.local")
    diff = provider.diff(props["bucket"], outs_for(props), dict(props, **{key: value}))
    assert diff.changes is True
    assert diff.replaces == [key]
    assert diff.delete_before_replace is True


def test_diff_unknown_values_during_preview(provider: BucketProvider) -> None:
    props = make_props("http://s3.local")
    olds = outs_for(props)
    diff = provider.diff(props["bucket"], olds, dict(props, secret_access_key=Unknown()))
    assert diff.changes is True and diff.replaces == []
    diff = provider.diff(props["bucket"], olds, dict(props, bucket=Unknown()))
    assert diff.replaces == ["bucket"]
