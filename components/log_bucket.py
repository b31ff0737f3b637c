"""LogBucket: the S3 bucket that holds Airflow task logs.

The bucket is made with boto3 through a Pulumi *dynamic provider*, so the same code works against AWS and
against S3-compatible stores (Ceph RGW, MinIO) reached through an endpoint URL.

How the dynamic provider runs (read this before changing the module):

* ``pulumi.dynamic.Resource`` pickles the provider *instance* with dill into the ``__provider`` input. A class
  defined outside ``__main__`` is pickled BY REFERENCE, so the pickle is just "components.log_bucket
  BucketProvider" and the provider process (``python -m pulumi.dynamic``, started by the engine from the
  project directory with ``$PULUMI_RUNTIME_VIRTUALENV``, i.e. the project venv) re-imports this module. The
  runtime therefore needs: the project venv with ``boto3`` and ``pulumi`` installed, and the project root as
  the working directory so ``components.log_bucket`` is importable.
* Because of that the module must import without side effects (no clients, no network, no reading of
  config at import time), and the provider instance carries no state at all: no credentials, no clients
  (a botocore client cannot be pickled), no captured globals (a non-deterministic pickle shows up as a
  spurious diff, pulumi/pulumi#9653). Everything a method needs arrives in ``props``; credentials are secret
  inputs, so Pulumi stores them encrypted.
* The engine cannot see changes of this code (pulumi/pulumi#6490): ``provider_version``, a hash of this file,
  is passed as an input so that a new provider version shows up as an in-place update in ``pulumi preview``.
* ``read`` is not functional for Python dynamic providers and is not implemented.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

# --- constants (module-level constants only; the provider instance never stores anything) -----------------

LIFECYCLE_RULE_ID = "expire-airflow-task-logs"
DEFAULT_REGION = "us-east-1"

_REPLACE_KEYS = ("bucket", "region", "endpoint_url")
_UPDATE_KEYS = (
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
_SECRET_KEYS = ("access_key_id", "secret_access_key")

# Error codes / statuses with which stores say "this API is not implemented here" (MinIO, Ceph RGW, ...).
_NOT_IMPLEMENTED_CODES = frozenset(
    {"NotImplemented", "NotImplementedError", "XNotImplemented", "MethodNotAllowed", "UnsupportedOperation"}
)
_NOT_IMPLEMENTED_STATUSES = frozenset({501, 405})

# Operations that need a body checksum. botocore >= 1.36 sends CRC32 for them even with "when_required";
# older Ceph RGW / MinIO releases only accept Content-MD5, so for custom endpoints we add one as well.
_MD5_OPERATIONS = frozenset(
    {
        "DeleteObjects",
        "PutBucketLifecycleConfiguration",
        "PutBucketEncryption",
        "PutPublicAccessBlock",
        "PutBucketTagging",
        "PutBucketPolicy",
    }
)

_IPV4_LIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_EDGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3")


class LogBucketError(Exception):
    """A refusal or failure of the LogBucket provider, with a message meant for the person running Pulumi."""


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


def _provider_version() -> str:
    """A hash of this module's source: a change of the provider code becomes an input change (pulumi#6490)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


# --- property helpers (pure functions; safe to call from the provider process) --------------------------------


def _is_unknown(value: Any) -> bool:
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


def _norm(key: str, value: Any) -> Any:
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


def _settings(props: dict[str, Any], id_: str | None = None) -> dict[str, Any]:
    """All properties the provider uses, normalized. ``id_`` is the bucket name when props lack it."""
    settings = {key: _norm(key, props.get(key)) for key in _REPLACE_KEYS + _UPDATE_KEYS}
    if not settings["bucket"] and id_:
        settings["bucket"] = id_
    return settings


def _lifecycle_prefix(settings: dict[str, Any]) -> str:
    # "logs/" and not "logs": a rule on "logs" would also expire "logs-archive/..." or a backup prefix.
    return _norm_prefix(settings["log_prefix"] or "logs") + "/"


def _logs_url(settings: dict[str, Any]) -> str:
    return f"s3://{settings['bucket']}/{_norm_prefix(settings['log_prefix'] or 'logs')}"


def _outputs(settings: dict[str, Any], unsupported: list[str]) -> dict[str, Any]:
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
        "logs_url": _logs_url(settings),
        "lifecycle_rule_id": LIFECYCLE_RULE_ID,
        "lifecycle_prefix": _lifecycle_prefix(settings),
        "encryption": None if "encryption" in unsupported else "AES256",
        "public_access_block": "public_access_block" not in unsupported,
        "unsupported_features": sorted(unsupported),
    }
    for key in ("endpoint_url", "ca_bundle", "provider_version", "bucket_policy"):
        if settings[key] is not None:
            outs[key] = settings[key]
    for key in _SECRET_KEYS:
        if settings[key] is not None:
            outs[key] = _secret(settings[key])
    return outs


# --- boto3 plumbing (clients are made per call, inside the provider methods) ----------------------------------


def _add_content_md5(request: Any, operation_name: str | None = None, **_: Any) -> None:
    """before-sign hook: add Content-MD5 for stores that do not understand the newer x-amz-checksum-* headers."""
    if operation_name not in _MD5_OPERATIONS or "Content-MD5" in request.headers:
        return
    body = request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


@contextlib.contextmanager
def _s3_client(settings: dict[str, Any]) -> Iterator[Any]:
    """A boto3 S3 client for one provider call. A CA bundle given as PEM text lives in a temp file meanwhile."""
    import boto3
    from botocore.config import Config

    endpoint = settings["endpoint_url"]
    config = Config(
        region_name=settings["region"],
        signature_version="s3v4",
        # Ceph RGW and MinIO are addressed by path: no wildcard DNS or certificate needed for bucket hosts.
        s3={"addressing_style": "path"} if endpoint else {},
        # Ceph RGW rejects the default checksums botocore >= 1.36 adds to every request.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    ca_path: str | None = None
    try:
        verify: bool | str | None
        if not settings["verify_tls"]:
            verify = False
        elif settings["ca_bundle"]:
            fd, ca_path = tempfile.mkstemp(prefix="log-bucket-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(settings["ca_bundle"])
            verify = ca_path
        else:
            verify = None  # botocore's default (AWS_CA_BUNDLE or certifi)
        # Explicit keys if given; otherwise boto3's default chain (env, profile, IRSA, instance role).
        session = boto3.session.Session(
            aws_access_key_id=settings["access_key_id"],
            aws_secret_access_key=settings["secret_access_key"],
            region_name=settings["region"],
        )
        client = session.client("s3", endpoint_url=endpoint, config=config, verify=verify)
        if endpoint:
            client.meta.events.register("before-sign.s3", _add_content_md5)
        yield client
    finally:
        if ca_path:
            with contextlib.suppress(OSError):
                os.unlink(ca_path)


def _error_code(exc: Exception) -> tuple[str, int | None]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


def _is_not_implemented(exc: Exception) -> bool:
    code, status = _error_code(exc)
    return code in _NOT_IMPLEMENTED_CODES or status in _NOT_IMPLEMENTED_STATUSES


def _bucket_state(s3: Any, bucket: str) -> str:
    """'present' (we can reach it), 'absent', or 'elsewhere' (exists but not ours, or in another region)."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return "present"
    except ClientError as exc:
        code, status = _error_code(exc)
        if status == 404 or code in ("404", "NoSuchBucket", "NotFound"):
            return "absent"
        if status in (301, 403) or code in ("301", "403", "PermanentRedirect", "AccessDenied", "Forbidden"):
            return "elsewhere"
        raise


def _optional(feature: str, call: Any, unsupported: list[str]) -> None:
    """Apply a setting the store may not implement; record it as unsupported instead of failing."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        if not _is_not_implemented(exc):
            raise
        unsupported.append(feature)


def _apply_settings(s3: Any, settings: dict[str, Any]) -> list[str]:
    """Lifecycle, default encryption, public access block and tags. Idempotent; returns unsupported features."""
    from botocore.exceptions import ClientError

    bucket = settings["bucket"]
    days = settings["retention_days"]
    unsupported: list[str] = []
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": LIFECYCLE_RULE_ID,
                    "Filter": {"Prefix": _lifecycle_prefix(settings)},
                    "Status": "Enabled",
                    "Expiration": {"Days": days},
                    # Should someone turn versioning on, old versions of logs expire too.
                    "NoncurrentVersionExpiration": {"NoncurrentDays": days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    _optional(
        "encryption",
        lambda: s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        ),
        unsupported,
    )
    _optional(
        "public_access_block",
        lambda: s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        ),
        unsupported,
    )
    if settings["bucket_policy"]:
        # Holds the log and backup credentials to their prefixes (components.s3_access). Left alone when
        # unset: a policy the platform team put there is theirs.
        _optional("bucket_policy", lambda: s3.put_bucket_policy(Bucket=bucket, Policy=settings["bucket_policy"]), unsupported)
    if settings["tags"]:
        s3.put_bucket_tagging(
            Bucket=bucket,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in settings["tags"].items()]},
        )
    else:
        try:
            s3.delete_bucket_tagging(Bucket=bucket)
        except ClientError as exc:
            if _error_code(exc)[0] not in ("NoSuchTagSet", "NoSuchTagSetError") and not _is_not_implemented(exc):
                raise
    return unsupported


def _count_objects(s3: Any, bucket: str, page_limit: int = 10) -> tuple[int, bool, list[str]]:
    """(count, more_than_counted, a few example keys) over objects, object versions and delete markers."""
    from botocore.exceptions import ClientError

    count, examples = 0, list[str]()
    try:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for index, page in enumerate(pages):
            entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
            count += len(entries)
            examples += [e["Key"] for e in entries][: 3 - len(examples)]
            if index + 1 >= page_limit and page.get("IsTruncated"):
                return count, True, examples
        return count, False, examples
    except ClientError as exc:
        if not _is_not_implemented(exc):
            raise
    count, examples = 0, []
    for index, page in enumerate(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)):
        entries = page.get("Contents", [])
        count += len(entries)
        examples += [e["Key"] for e in entries][: 3 - len(examples)]
        if index + 1 >= page_limit and page.get("IsTruncated"):
            return count, True, examples
    return count, False, examples


def _refusal(s3: Any, bucket: str) -> str | None:
    count, more, examples = _count_objects(s3, bucket)
    if not count:
        return None
    amount = f"at least {count}" if more else str(count)
    return (
        f"refusing to delete bucket '{bucket}': it holds {amount} object(s) (objects, old versions "
        f"and delete markers; e.g. {', '.join(repr(k) for k in examples)}), and forceDestroy is "
        f"not set, so no task logs are lost by accident. To delete it anyway set forceDestroy "
        f"(s3.forceDestroy / LogBucketArgs.force_destroy=True), run `pulumi up` so the stack "
        f"records it, then delete again; or empty the bucket yourself. Note that forceDestroy "
        f"deletes everything in the bucket, database backups under other prefixes included."
    )


def delete_refusal(state: dict[str, Any]) -> str | None:
    """Why deleting the bucket whose recorded state (decrypted) is `state` would be refused, or None.
    Destroy deletes everything that depends on the bucket before the bucket: callers ask this first, so
    that a refused destroy has not already deleted the rest of the instance."""
    settings = _settings(state)
    if settings["force_destroy"]:
        return None
    with _s3_client(settings) as s3:
        if _bucket_state(s3, settings["bucket"]) == "absent":
            return None
        return _refusal(s3, settings["bucket"])


def _delete_batch(s3: Any, bucket: str, objects: list[dict[str, str]]) -> None:
    if not objects:
        return
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    errors = response.get("Errors") or []
    if errors:
        first = errors[0]
        raise LogBucketError(
            f"could not empty bucket '{bucket}': {len(errors)} object(s) were not deleted, e.g. "
            f"'{first.get('Key')}': {first.get('Code')} {first.get('Message')}"
        )


def _empty_bucket(s3: Any, bucket: str) -> None:
    """Delete every object, object version, delete marker and unfinished multipart upload."""
    from botocore.exceptions import ClientError

    for _ in range(5):  # a few passes, in case something is written while we delete
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
                objects = [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries if e.get("VersionId")]
                objects += [{"Key": e["Key"]} for e in entries if not e.get("VersionId")]
                for start in range(0, len(objects), 1000):
                    _delete_batch(s3, bucket, objects[start : start + 1000])
        except ClientError as exc:
            if not _is_not_implemented(exc):
                raise
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            _delete_batch(s3, bucket, [{"Key": e["Key"]} for e in page.get("Contents", [])])
        with contextlib.suppress(ClientError):
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for upload in page.get("Uploads", []):
                    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        if _count_objects(s3, bucket, page_limit=1)[0] == 0:
            return
    raise LogBucketError(f"bucket '{bucket}' still holds objects after emptying it five times; is something writing?")


def _already_exists_error(bucket: str, settings: dict[str, Any]) -> LogBucketError:
    where = settings["endpoint_url"] or f"AWS region {settings['region']}"
    return LogBucketError(
        f"bucket '{bucket}' already exists at {where} and these credentials can reach it (BucketAlreadyOwnedByYou). "
        f"LogBucket does not take over an existing bucket by surprise: import it into this stack deliberately, "
        f"or choose another bucket name (s3.bucket). A bucket kept by retainOnDelete from an earlier stack is "
        f"such a bucket too."
    )


# --- the dynamic provider ---------------------------------------------------------------------------------------


class BucketProvider(dynamic.ResourceProvider):
    """CRUD of the log bucket with boto3. Stateless: it is pickled by reference and must hold no credentials."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures: list[dynamic.CheckFailure] = []

        def fail(prop: str, reason: str) -> None:
            failures.append(dynamic.CheckFailure(prop, reason))

        def known(key: str) -> bool:
            return not _is_unknown(news.get(key))

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
                    if _is_unknown(value):
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
        return dynamic.CheckResult(news, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [
            key
            for key in _REPLACE_KEYS + _UPDATE_KEYS
            if _is_unknown(news.get(key)) or _norm(key, olds.get(key)) != _norm(key, news.get(key))
        ]
        replaces = [key for key in changed if key in _REPLACE_KEYS]
        delete_before_replace = None
        if replaces:
            # A rename creates the new bucket first; the old one is then deleted, which still refuses while it
            # holds logs (unless force_destroy). With the same name at another region or endpoint, creating
            # first cannot work where names are global (AWS) or the store is the same: delete first, and that
            # delete again refuses a bucket with objects, so nothing is lost.
            delete_before_replace = "bucket" not in replaces
        return dynamic.DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[],
            delete_before_replace=delete_before_replace,
        )

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        from botocore.exceptions import ClientError

        settings = _settings(props)
        bucket = settings["bucket"]
        with _s3_client(settings) as s3:
            # us-east-1 answers 200 to CreateBucket for a bucket we already own: ask first.
            if _bucket_state(s3, bucket) == "present":
                raise _already_exists_error(bucket, settings)
            request: dict[str, Any] = {"Bucket": bucket}
            if settings["region"] != "us-east-1":
                request["CreateBucketConfiguration"] = {"LocationConstraint": settings["region"]}
            try:
                s3.create_bucket(**request)
            except ClientError as exc:
                code = _error_code(exc)[0]
                if code == "BucketAlreadyOwnedByYou":
                    raise _already_exists_error(bucket, settings) from exc
                if code == "BucketAlreadyExists":
                    raise LogBucketError(
                        f"bucket name '{bucket}' is already taken by someone else; choose another name (s3.bucket)"
                    ) from exc
                raise
            try:
                unsupported = _apply_settings(s3, settings)
            except Exception:
                # Create must be all or nothing: remove the new (empty) bucket so a retry starts clean.
                with contextlib.suppress(Exception):
                    s3.delete_bucket(Bucket=bucket)
                raise
        return dynamic.CreateResult(id_=bucket, outs=_outputs(settings, unsupported))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        settings = _settings(news, id_)
        bucket = settings["bucket"]
        with _s3_client(settings) as s3:
            if _bucket_state(s3, bucket) == "absent":
                raise LogBucketError(
                    f"bucket '{bucket}' no longer exists (deleted outside Pulumi?). Remove it from the state "
                    f"(`pulumi state delete <urn>`) and run `pulumi up` again to recreate it."
                )
            unsupported = _apply_settings(s3, settings)
        return dynamic.UpdateResult(outs=_outputs(settings, unsupported))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        settings = _settings(props, id_)
        bucket = settings["bucket"] or id_
        with _s3_client(settings) as s3:
            if _bucket_state(s3, bucket) == "absent":
                return  # already gone: delete is idempotent
            if settings["force_destroy"]:
                _empty_bucket(s3, bucket)
            elif refusal := _refusal(s3, bucket):
                raise LogBucketError(refusal)
            try:
                s3.delete_bucket(Bucket=bucket)
            except ClientError as exc:
                code, status = _error_code(exc)
                if status == 404 or code == "NoSuchBucket":
                    return
                if code == "BucketNotEmpty":
                    raise LogBucketError(
                        f"refusing to delete bucket '{bucket}': the store says it is not empty (objects or "
                        f"unfinished multipart uploads); set forceDestroy to delete it with its contents"
                    ) from exc
                raise


# --- the resource and the component --------------------------------------------------------------------------


class S3Bucket(dynamic.Resource, name="S3Bucket"):
    """The bucket itself (type ``pulumi-python:dynamic:S3Bucket``)."""

    bucket: pulumi.Output[str]
    region: pulumi.Output[str]
    endpoint_url: pulumi.Output[str | None]
    log_prefix: pulumi.Output[str]
    retention_days: pulumi.Output[int]
    tags: pulumi.Output[dict[str, str]]
    force_destroy: pulumi.Output[bool]
    logs_url: pulumi.Output[str]
    lifecycle_rule_id: pulumi.Output[str]
    encryption: pulumi.Output[str | None]
    public_access_block: pulumi.Output[bool]
    unsupported_features: pulumi.Output[list[str]]
    access_key_id: pulumi.Output[str | None]
    secret_access_key: pulumi.Output[str | None]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        outputs_only = {
            "logs_url": None,
            "lifecycle_rule_id": None,
            "lifecycle_prefix": None,
            "encryption": None,
            "public_access_block": None,
            "unsupported_features": None,
        }
        super().__init__(BucketProvider(), name, {**outputs_only, **props}, opts)


@dataclass
class LogBucketArgs:
    bucket_name: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    log_prefix: str = "logs"
    retention_days: int = 30
    # The provisioning credential, used here (by `pulumi up`) and nowhere else. Unset: the default chain.
    access_key_id: pulumi.Input[str] | None = None
    secret_access_key: pulumi.Input[str] | None = None
    # The log credential, which goes into the connection Airflow and task pods use. Unset: the default chain
    # (IRSA / instance role) in the pods; never the provisioning credential.
    log_access_key_id: pulumi.Input[str] | None = None
    log_secret_access_key: pulumi.Input[str] | None = None
    # The users the bucket policy holds to the log and backup prefixes (components.s3_access).
    log_principal: str | None = None
    backup_principal: str | None = None
    backup_prefix: str = "postgres"
    ca_bundle: str | None = None
    verify_tls: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    force_destroy: bool = False
    connection_id: str = "s3_logs"


class LogBucket(pulumi.ComponentResource):
    """The task-log bucket and the Airflow connection (``remote_log_conn_id``) that reaches it."""

    CA_MOUNT_PATH = "/opt/airflow/s3-ca/ca.crt"
    """Where the control plane mounts ``ca_bundle``; the connection's ``verify`` points here when one is set."""

    bucket_name: pulumi.Output[str]
    logs_url: pulumi.Output[str]
    connection_id: str
    connection: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: LogBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("airflow-platform:index:LogBucket", name, None, opts)
        problems = [f"bucket_name '{args.bucket_name}': {p}" for p in bucket_name_errors(args.bucket_name)]
        if args.retention_days <= 0:
            problems.append(f"retention_days must be greater than 0 (got {args.retention_days})")
        if (args.access_key_id is None) != (args.secret_access_key is None):
            problems.append("set both access_key_id and secret_access_key, or neither")
        if problems:
            raise ValueError(f"LogBucket '{name}': " + "; ".join(problems))

        access_key_id = pulumi.Output.secret(args.access_key_id) if args.access_key_id is not None else None
        secret_access_key = (
            pulumi.Output.secret(args.secret_access_key) if args.secret_access_key is not None else None
        )
        self.region = args.region
        self.endpoint_url = args.endpoint_url
        self.ca_bundle = args.ca_bundle

        self.bucket = S3Bucket(
            name,
            {
                "bucket": args.bucket_name,
                "region": args.region,
                "endpoint_url": args.endpoint_url,
                "log_prefix": args.log_prefix,
                "retention_days": args.retention_days,
                "tags": dict(args.tags),
                "force_destroy": args.force_destroy,
                "ca_bundle": args.ca_bundle,
                "verify_tls": args.verify_tls,
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
                "provider_version": _provider_version(),
                "bucket_policy": _policy_text(args),
            },
            pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=list(_SECRET_KEYS),
                # The SDK passes `protect` from a component to its children but not `retain_on_delete`.
                retain_on_delete=bool(opts and opts.retain_on_delete),
            ),
        )

        # Known in the program, not taken from the bucket's outputs: outputs are unknown in a preview while the
        # bucket updates, and everything that reads them (the config, the pods) would look replaced. Whoever
        # must wait for the bucket depends on `self.bucket` instead.
        self.bucket_name = pulumi.Output.from_input(args.bucket_name)
        self.logs_url = pulumi.Output.from_input(_logs_url({"bucket": args.bucket_name, "log_prefix": args.log_prefix}))
        self.connection_id = args.connection_id

        if not args.verify_tls:
            verify: bool | str = False
        elif args.ca_bundle:
            verify = self.CA_MOUNT_PATH
        else:
            verify = True
        extra: dict[str, Any] = {"region_name": args.region, "verify": verify}
        if args.endpoint_url:
            extra["endpoint_url"] = args.endpoint_url

        def connection(values: dict[str, Any]) -> dict[str, Any]:
            conn: dict[str, Any] = {"conn_type": "aws"}
            if values.get("login") is not None:
                conn["login"] = values["login"]
                conn["password"] = values["password"]
            conn["extra"] = dict(extra)
            return conn

        self.connection = pulumi.Output.secret(
            pulumi.Output.all(login=args.log_access_key_id, password=args.log_secret_access_key).apply(connection)
        )

        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "logs_url": self.logs_url,
                "connection_id": self.connection_id,
                "connection": self.connection,
            }
        )


def _policy_text(args: LogBucketArgs) -> str | None:
    import json

    from components.s3_access import bucket_policy

    policy = bucket_policy(
        args.bucket_name, args.log_prefix, args.backup_prefix, args.log_principal, args.backup_principal
    )
    return None if policy is None else json.dumps(policy, sort_keys=True)
