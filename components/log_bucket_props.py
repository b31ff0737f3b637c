"""The properties of the log bucket's dynamic resource: S3's naming rules, the checks of the inputs, their
canonical form (so that a diff compares like with like), and the outputs as the provider records them.

The provider process imports this module (components.log_bucket_provider), so it holds pure functions only.
"""

from __future__ import annotations

import re
from typing import Any

# --- constants ---------------------------------------------------------------------------------------------------

LIFECYCLE_RULE_ID = "expire-airflow-task-logs"
DEFAULT_REGION = "us-east-1"

REPLACE_KEYS = ("bucket", "region", "endpoint_url")
UPDATE_KEYS = (
    "log_prefix",
    "retention_days",
    "tags",
    "force_destroy",
    "ca_bundle",
    "verify_tls",
    "access_key_id",
    "secret_access_key",
    "provider_version",
    "bucket_policy",
)
SECRET_KEYS = ("access_key_id", "secret_access_key")

_IPV4_LIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_EDGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3")


# --- naming rules ---------------------------------------------------------------------------------------------


def bucket_name_errors(name: str) -> list[str]:
    """Problems with ``name`` as an S3 (general purpose) bucket name; an empty list means it is valid."""
    if not isinstance(name, str):
        return [f"must be a string, not {type(name).__name__}"]
    errors: list[str] = []
    if not 3 <= len(name) <= 63:
        errors.append(f"must be 3 to 63 characters long (it has {len(name)})")
    bad = sorted({ch for ch in name if ch not in _ALLOWED_CHARS})
    if bad:
        shown = " ".join(repr(ch) for ch in bad)
        hint = " (uppercase letters are not allowed)" if any(ch.isupper() for ch in bad) else ""
        errors.append(f"may contain only lowercase letters, digits, dots and hyphens; found {shown}{hint}")
    if name and name[0] not in _EDGE_CHARS:
        errors.append("must start with a lowercase letter or a digit")
    if name and name[-1] not in _EDGE_CHARS:
        errors.append("must end with a lowercase letter or a digit")
    if ".." in name:
        errors.append("must not contain two adjacent dots ('..')")
    if _IPV4_LIKE.match(name):
        errors.append("must not be formatted like an IP address")
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            errors.append(f"must not start with the reserved prefix '{prefix}'")
    for suffix in _RESERVED_SUFFIXES:
        if name.endswith(suffix):
            errors.append(f"must not end with the reserved suffix '{suffix}'")
    return errors



# --- property helpers (pure functions; safe to call from the provider process) --------------------------------


def is_unknown(value: Any) -> bool:
    """True for a value that is not known yet during a preview (``pulumi.output.Unknown`` or the RPC sentinel)."""
    from pulumi.output import Unknown
    from pulumi.runtime.rpc import UNKNOWN

    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def _plain(value: Any) -> Any:
    """Strip the RPC secret wrapper, recursively (the engine normally strips it already: acceptSecrets=false)."""
    from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

    if is_rpc_secret(value):
        return _plain(unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _secret(value: Any) -> Any:
    """Wrap an output value so the engine stores it as a secret."""
    from pulumi.runtime.rpc import wrap_rpc_secret

    return wrap_rpc_secret(value)


def _opt_str(value: Any) -> str | None:
    """None, "" and a missing value all mean "not set"."""
    value = _plain(value)
    if value is None:
        return None
    value = str(value)
    return value or None


def _as_bool(value: Any, default: bool) -> bool:
    value = _plain(value)
    return default if value is None else bool(value)


def _as_int(value: Any) -> int | None:
    """Numbers come back from the engine as floats (protobuf Struct): 30.0 is 30."""
    value = _plain(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _norm_prefix(prefix: str) -> str:
    return prefix.strip("/")


def norm(key: str, value: Any) -> Any:
    """The canonical form of one property, so that missing, None and equivalent encodings compare equal."""
    value = _plain(value)
    if key in ("bucket", "region"):
        return _opt_str(value) or (DEFAULT_REGION if key == "region" else None)
    if key == "endpoint_url":
        url = _opt_str(value)
        return url.rstrip("/") if url else None
    if key == "log_prefix":
        prefix = _opt_str(value)
        return _norm_prefix(prefix) if prefix else None
    if key == "retention_days":
        return _as_int(value)
    if key == "tags":
        return {str(k): str(v) for k, v in sorted((value or {}).items())}
    if key == "force_destroy":
        return _as_bool(value, False)
    if key == "verify_tls":
        return _as_bool(value, True)
    return _opt_str(value)  # ca_bundle, access_key_id, secret_access_key, provider_version, bucket_policy


def settings_from(props: dict[str, Any], id_: str | None = None) -> dict[str, Any]:
    """All properties the provider uses, normalized. ``id_`` is the bucket name when props lack it."""
    settings = {key: norm(key, props.get(key)) for key in REPLACE_KEYS + UPDATE_KEYS}
    if not settings["bucket"] and id_:
        settings["bucket"] = id_
    return settings


def input_problems(news: dict[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every input the provider refuses; an input not known yet (preview) passes."""
    problems: list[tuple[str, str]] = []

    def fail(prop: str, reason: str) -> None:
        problems.append((prop, reason))

    def known(key: str) -> bool:
        return not is_unknown(news.get(key))

    if known("bucket"):
        bucket = _plain(news.get("bucket"))
        if not bucket:
            fail("bucket", "bucket: a bucket name is required")
        else:
            for problem in bucket_name_errors(bucket):
                fail("bucket", f"bucket '{bucket}': {problem}")
    if known("region") and news.get("region") is not None:
        region = _plain(news.get("region"))
        if not isinstance(region, str) or not region:
            fail("region", "region: must be a non-empty string such as 'us-east-1'")
    if known("endpoint_url") and _opt_str(news.get("endpoint_url")):
        url = _opt_str(news.get("endpoint_url")) or ""
        if not re.match(r"^https?://[^\s/]+", url):
            fail("endpoint_url", f"endpoint_url '{url}': must be an http:// or https:// URL")
    if known("retention_days"):
        raw = _plain(news.get("retention_days"))
        days = _as_int(raw)
        if days is None or days <= 0:
            fail("retention_days", f"retention_days: must be a whole number of days greater than 0 (got {raw!r})")
    if known("log_prefix"):
        prefix = _plain(news.get("log_prefix"))
        if not isinstance(prefix, str) or not prefix.strip("/"):
            fail("log_prefix", f"log_prefix: must be a non-empty key prefix such as 'logs' (got {prefix!r})")
        elif prefix.startswith("/"):
            fail("log_prefix", f"log_prefix '{prefix}': must not start with '/' (S3 keys have no leading slash)")
    if known("tags") and news.get("tags") is not None:
        tags = _plain(news.get("tags"))
        if not isinstance(tags, dict):
            fail("tags", "tags: must be a map of string keys to string values")
        else:
            if len(tags) > 50:
                fail("tags", f"tags: at most 50 tags are allowed on a bucket (got {len(tags)})")
            for key, value in tags.items():
                if is_unknown(value):
                    continue
                if not isinstance(key, str) or not 1 <= len(key) <= 128:
                    fail("tags", f"tags: key {key!r} must be 1 to 128 characters")
                elif key.startswith("aws:"):
                    fail("tags", f"tags: key '{key}' uses the reserved prefix 'aws:'")
                if not isinstance(value, str) or len(value) > 256:
                    fail("tags", f"tags: value of '{key}' must be a string of at most 256 characters")
    if known("ca_bundle") and _opt_str(news.get("ca_bundle")):
        if "-----BEGIN CERTIFICATE-----" not in (_opt_str(news.get("ca_bundle")) or ""):
            fail("ca_bundle", "ca_bundle: must be PEM text containing '-----BEGIN CERTIFICATE-----'")
    if known("access_key_id") and known("secret_access_key"):
        has_id = _opt_str(news.get("access_key_id")) is not None
        has_secret = _opt_str(news.get("secret_access_key")) is not None
        if has_id != has_secret:
            fail(
                "secret_access_key" if has_id else "access_key_id",
                "access_key_id / secret_access_key: set both, or neither (then boto3's default chain is used)",
            )
    return problems


def lifecycle_prefix(settings: dict[str, Any]) -> str:
    # "logs/" and not "logs": a rule on "logs" would also expire "logs-archive/..." or a backup prefix.
    return _norm_prefix(settings["log_prefix"] or "logs") + "/"


def logs_url(settings: dict[str, Any]) -> str:
    return f"s3://{settings['bucket']}/{_norm_prefix(settings['log_prefix'] or 'logs')}"


def outputs(settings: dict[str, Any], unsupported: list[str]) -> dict[str, Any]:
    """Outputs: the inputs as applied (so the next diff compares like with like), plus what was done.

    Credentials are kept in the outputs because ``delete`` only receives the stored outputs; they are wrapped
    as secrets here, and the engine also marks them secret because the inputs of the same name are secret.
    """
    outs: dict[str, Any] = {
        "bucket": settings["bucket"],
        "region": settings["region"],
        "log_prefix": settings["log_prefix"],
        "retention_days": settings["retention_days"],
        "tags": settings["tags"],
        "force_destroy": settings["force_destroy"],
        "verify_tls": settings["verify_tls"],
        "logs_url": logs_url(settings),
        "lifecycle_rule_id": LIFECYCLE_RULE_ID,
        "lifecycle_prefix": lifecycle_prefix(settings),
        "encryption": None if "encryption" in unsupported else "AES256",
        "public_access_block": "public_access_block" not in unsupported,
        "unsupported_features": sorted(unsupported),
    }
    for key in ("endpoint_url", "ca_bundle", "provider_version", "bucket_policy"):
        if settings[key] is not None:
            outs[key] = settings[key]
    for key in SECRET_KEYS:
        if settings[key] is not None:
            outs[key] = _secret(settings[key])
    return outs

