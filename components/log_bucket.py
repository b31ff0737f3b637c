"""LogBucket: the S3 bucket that holds Airflow task logs.

The bucket is made with boto3 through a Pulumi *dynamic provider*, so the same code works against AWS and
against S3-compatible stores (Ceph RGW, MinIO) reached through an endpoint URL.

The provider itself, and how it runs, is components.log_bucket_provider; the rules for its properties are
components.log_bucket_props.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from components.component_base import kept_child, type_token
from components.log_bucket_props import SECRET_KEYS, bucket_name_errors, logs_url
from components.log_bucket_provider import BucketProvider, provider_version
from components.s3_access import bucket_policy

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
    # Where `pulumi up` reaches the store to provision the bucket; None: AWS.
    endpoint_url: str | None = None
    # Where pods reach it, written into the log connection (s3.podEndpointUrl); None: endpoint_url.
    pod_endpoint_url: str | None = None
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
    # Attempts of each S3 call through the log connection (s3.logUploadAttempts).
    attempts: int = 10
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
        super().__init__(type_token("LogBucket"), name, None, opts)
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
                "provider_version": provider_version(),
                "bucket_policy": _policy_text(args),
            },
            kept_child(self, opts, additional_secret_outputs=list(SECRET_KEYS)),
        )

        # Known in the program, not taken from the bucket's outputs: outputs are unknown in a preview while the
        # bucket updates, and everything that reads them (the config, the pods) would look replaced. Whoever
        # must wait for the bucket depends on `self.bucket` instead.
        self.bucket_name = pulumi.Output.from_input(args.bucket_name)
        self.logs_url = pulumi.Output.from_input(logs_url({"bucket": args.bucket_name, "log_prefix": args.log_prefix}))
        self.connection_id = args.connection_id

        if not args.verify_tls:
            verify: bool | str = False
        elif args.ca_bundle:
            verify = self.CA_MOUNT_PATH
        else:
            verify = True
        # A finished task's pod uploads its log once and is then deleted: while the store is down, the upload
        # must wait for it rather than give up after the provider's single retry.
        retries = {"retries": {"mode": "standard", "total_max_attempts": args.attempts}, "connect_timeout": 10}
        extra: dict[str, Any] = {"region_name": args.region, "verify": verify, "config_kwargs": retries}
        pod_endpoint_url = args.pod_endpoint_url if args.pod_endpoint_url is not None else args.endpoint_url
        if pod_endpoint_url:
            extra["endpoint_url"] = pod_endpoint_url

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
    policy = bucket_policy(
        args.bucket_name, args.log_prefix, args.backup_prefix, args.log_principal, args.backup_principal
    )
    return None if policy is None else json.dumps(policy, sort_keys=True)
