"""Calling the LogBucket dynamic provider the way the engine does, and reading back what it did: shared by the
provider's tests in this folder."""

from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import ClientError

from components import log_bucket_props
from components.log_bucket_provider import BucketProvider

ACCESS_KEY = "AKIATESTLOGBUCKET000"
SECRET_KEY = "s3cr3t-Ng6tqZ0vXk-never-in-a-pickle"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


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


def outs_for(props: dict[str, Any]) -> dict[str, Any]:
    """What create would have stored, without calling S3."""
    return log_bucket_props.outputs(log_bucket_props.settings_from(props), [])
