"""The boto3 dynamic provider that creates, updates and deletes the LogBucket's S3 bucket.

How the dynamic provider runs (read this before changing the module):

* ``pulumi.dynamic.Resource`` pickles the provider *instance* with dill into the ``__provider`` input. A class
  defined outside ``__main__`` is pickled BY REFERENCE, so the pickle is just "components.log_bucket_provider
  BucketProvider" and the provider process (``python -m pulumi.dynamic``, started by the engine from the
  project directory with ``$PULUMI_RUNTIME_VIRTUALENV``, i.e. the project venv) re-imports this module. The
  runtime therefore needs: the project venv with ``boto3`` and ``pulumi`` installed, and the project root as
  the working directory so ``components.log_bucket_provider`` is importable.
* Because of that this module and components.log_bucket_props, which it imports, must import without side
  effects (no clients, no network, no reading of config at import time), and the provider instance carries
  no state at all: no credentials, no clients (a botocore client cannot be pickled), no captured globals (a
  non-deterministic pickle shows up as a spurious diff, pulumi/pulumi#9653). Everything a method needs
  arrives in ``props``; credentials are secret inputs, so Pulumi stores them encrypted.
* The engine cannot see changes of this code (pulumi/pulumi#6490): ``provider_version``, a hash of this
  module and components.log_bucket_props, is passed as an input so that a new provider version shows up as
  an in-place update in ``pulumi preview``.
* ``read`` is not functional for Python dynamic providers and is not implemented.
* ``create`` finds a bucket of its name already there when an earlier create reached the store but its answer
  never came back (the endpoint went down, or `up` was killed mid-way). It takes that bucket over only when
  nothing in it could be anyone else's: it is empty and carries no tags or exactly the tags it would be given
  (``adoption_refusal``). Any other existing bucket is refused, as before.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi.dynamic as dynamic

from components import log_bucket_props
from components.log_bucket_props import (
    LIFECYCLE_RULE_ID,
    REPLACE_KEYS,
    UPDATE_KEYS,
    input_problems,
    is_unknown,
    lifecycle_prefix,
    norm,
    outputs,
    settings_from,
)

# --- constants (module-level constants only; the provider instance never stores anything) -----------------

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


class LogBucketError(Exception):
    """A refusal or failure of the LogBucket provider, with a message meant for the person running Pulumi."""


def provider_version() -> str:
    """A hash of the provider's source: a change of the provider code becomes an input change (pulumi#6490)."""
    digest = hashlib.sha256()
    for source in (log_bucket_props.__file__, __file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


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
                    "Filter": {"Prefix": lifecycle_prefix(settings)},
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
    settings = settings_from(state)
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


def _already_exists_error(bucket: str, settings: dict[str, Any], why: str = "") -> LogBucketError:
    where = settings["endpoint_url"] or f"AWS region {settings['region']}"
    return LogBucketError(
        f"bucket '{bucket}' already exists at {where} and these credentials can reach it (BucketAlreadyOwnedByYou)"
        f"{f'; {why}' if why else ''}. "
        f"LogBucket does not take over an existing bucket by surprise: import it into this stack deliberately, "
        f"or choose another bucket name (s3.bucket). A bucket kept by retainOnDelete from an earlier stack is "
        f"such a bucket too."
    )


def _bucket_tags(s3: Any, bucket: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        return {tag["Key"]: tag["Value"] for tag in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
    except ClientError as exc:
        if _error_code(exc)[0] in ("NoSuchTagSet", "NoSuchTagSetError") or _is_not_implemented(exc):
            return {}
        raise


def adoption_refusal(s3: Any, settings: dict[str, Any]) -> str | None:
    """Why the existing bucket `settings` names may not be taken over as this resource's own, or None when it
    may: it is empty (objects, versions, delete markers) and carries no tags or exactly the ones we would set.
    That is what a create leaves whose answer was lost (the endpoint went down after the bucket was made, or
    `up` was killed mid-way); a bucket holding anything, or tagged for someone else, is not ours to take."""
    bucket = settings["bucket"]
    count, more, examples = _count_objects(s3, bucket, page_limit=1)
    if count:
        amount = f"at least {count}" if more else str(count)
        return f"it holds {amount} object(s), e.g. {', '.join(repr(k) for k in examples)}"
    tags = _bucket_tags(s3, bucket)
    if tags and tags != (settings["tags"] or {}):
        return f"it is tagged {tags}, not {settings['tags'] or {}}"
    return None


# Failures of the connection itself: the store did not answer, so what it did is unknown.
def _unreached(exc: Exception) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(exc, (BotoConnectionError, HTTPClientError))


@contextlib.contextmanager
def _endpoint_errors(settings: dict[str, Any], action: str) -> Iterator[None]:
    """A store that cannot be reached becomes one LogBucketError naming the endpoint and what was being done."""
    try:
        yield
    except Exception as exc:
        if not _unreached(exc):
            raise
        where = settings["endpoint_url"] or f"AWS S3 in {settings['region']}"
        raise LogBucketError(
            f"the S3 endpoint {where} could not be reached while {action} bucket '{settings['bucket']}' ({exc}). "
            f"Nothing else is changed for it; once the endpoint answers, run `up` again (a bucket this create made "
            f"before the connection failed is empty, and is taken over)."
        ) from exc


# --- the dynamic provider ---------------------------------------------------------------------------------------


class BucketProvider(dynamic.ResourceProvider):
    """CRUD of the log bucket with boto3. Stateless: it is pickled by reference and must hold no credentials."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = [dynamic.CheckFailure(prop, reason) for prop, reason in input_problems(news)]
        return dynamic.CheckResult(news, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [
            key
            for key in REPLACE_KEYS + UPDATE_KEYS
            if is_unknown(news.get(key)) or norm(key, olds.get(key)) != norm(key, news.get(key))
        ]
        replaces = [key for key in changed if key in REPLACE_KEYS]
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

        settings = settings_from(props)
        bucket = settings["bucket"]
        with _s3_client(settings) as s3, _endpoint_errors(settings, "creating"):
            # us-east-1 answers 200 to CreateBucket for a bucket we already own: ask first.
            if _bucket_state(s3, bucket) == "present":
                if refusal := adoption_refusal(s3, settings):
                    raise _already_exists_error(bucket, settings, refusal)
                # Made by an earlier create whose answer was lost: finish that create.
                return dynamic.CreateResult(id_=bucket, outs=outputs(settings, _apply_settings(s3, settings)))
            request: dict[str, Any] = {"Bucket": bucket}
            if settings["region"] != "us-east-1":
                request["CreateBucketConfiguration"] = {"LocationConstraint": settings["region"]}
            try:
                s3.create_bucket(**request)
            except ClientError as exc:
                code = _error_code(exc)[0]
                if code == "BucketAlreadyOwnedByYou":
                    # Made between our question and this request, or by a retry of it whose first answer was lost.
                    if refusal := adoption_refusal(s3, settings):
                        raise _already_exists_error(bucket, settings, refusal) from exc
                    return dynamic.CreateResult(id_=bucket, outs=outputs(settings, _apply_settings(s3, settings)))
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
        return dynamic.CreateResult(id_=bucket, outs=outputs(settings, unsupported))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        settings = settings_from(news, id_)
        bucket = settings["bucket"]
        with _s3_client(settings) as s3, _endpoint_errors(settings, "updating"):
            if _bucket_state(s3, bucket) == "absent":
                raise LogBucketError(
                    f"bucket '{bucket}' no longer exists (deleted outside Pulumi?). Remove it from the state "
                    f"(`pulumi state delete <urn>`) and run `pulumi up` again to recreate it."
                )
            unsupported = _apply_settings(s3, settings)
        return dynamic.UpdateResult(outs=outputs(settings, unsupported))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        settings = settings_from(props, id_)
        bucket = settings["bucket"] = settings["bucket"] or id_
        with _s3_client(settings) as s3, _endpoint_errors(settings, "deleting"):
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

