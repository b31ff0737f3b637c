"""The sections of the settings that describe the instance's parts: one model per structured config key
(`apiServer`, `postgres`, `s3`, `kerberos`, `gitSync`, `ingress`, `auth`, ...), each with the rules that concern
it alone, and the base every section shares. The namespace's sections (placement, quota, network, limit range,
clean-up, metrics, cost) are in namespace_sections.py; rules across sections are `Settings`' (model.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components import images
from components.settings.rules import cpu_cores, memory_bytes
from components.settings.service_rules import krb5_seconds
from components.settings.value_types import (
    Arn, BucketName, CpuQuantity, Cron6, DnsLabel, DnsSubdomain, GitRef, GitRepo, HostPort, HttpUrl, IngressHost,
    IngressPath, Krb5Duration, LdapAttribute, LdapUrl, MemoryQuantity, PinnedImage, PostgresParameter, Principal,
    ProviderName, QualifiedName, Realm, Region, RepoPath, S3Name, S3Prefix, StorageQuantity, text,
)

# Days kept (logs, backups, database rows): a century is beyond any retention rule, and more overflows the
# date arithmetic of what reads it (Barman's, the clean-up job's shell).
MAX_RETENTION_DAYS = 36500
# Kubernetes' tested limit of pods in one cluster: no namespace quota needs more.
MAX_PODS = 150_000


class SettingsModel(BaseModel):
    """camelCase keys, as Pulumi config spells them; an unknown key is an error, not ignored; frozen, so
    what was validated is what every component reads."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value, info: ValidationInfo):
        # pydantic reads true as 1 for a number; `replicas: true` is a mistake, not one replica.
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float, int | None, float | None):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value


class Quantities(SettingsModel):
    cpu: CpuQuantity
    memory: MemoryQuantity


class Resources(SettingsModel):
    requests: Quantities
    limits: Quantities

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        # The container runtime reads a limit of 0 as none at all (CRI: "not specified"); nobody means that.
        if cpu_cores(self.limits.cpu) <= 0 or memory_bytes(self.limits.memory) <= 0:
            raise ValueError(f"limits ({self.limits.cpu} CPU, {self.limits.memory}) must be more than 0")
        if cpu_cores(self.requests.cpu) > cpu_cores(self.limits.cpu):
            raise ValueError(f"requests.cpu {self.requests.cpu} is above limits.cpu {self.limits.cpu}")
        if memory_bytes(self.requests.memory) > memory_bytes(self.limits.memory):
            raise ValueError(f"requests.memory {self.requests.memory} is above limits.memory {self.limits.memory}")
        return self


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources(requests=Quantities(cpu=cpu, memory=memory), limits=Quantities(cpu=cpu_limit, memory=memory_limit))


class ComponentSettings(SettingsModel):
    replicas: int = Field(1, ge=1, le=10)
    resources: Resources


class ApiServerSettings(ComponentSettings):
    workers: int = Field(2, ge=1, le=16, description="uvicorn workers per api-server pod")


class TaskPodSettings(SettingsModel):
    resources: Resources = Field(default_factory=lambda: resources("500m", "1Gi", "2", "2Gi"))
    kubernetes_api_access: bool = Field(
        False,
        description="Mount a service-account token in task pods (needed by KubernetesPodOperator only)",
    )


class ExecutorSettings(SettingsModel):
    # Pods launched one at a time starve a busy scheduler, and a burst of pods at midnight sits in
    # Pending far longer than Airflow's 10-minute default before nodes have room.
    pod_creation_batch_size: int = Field(16, ge=1, le=256)
    # A task queued for more than a month is stuck, whatever the cluster.
    task_queued_timeout_seconds: int = Field(3600, ge=60, le=30 * 86400)
    delete_worker_pods_on_failure: bool = False


class PostgresBackups(SettingsModel):
    enabled: bool = True
    retention_days: int = Field(30, ge=1, le=MAX_RETENTION_DAYS)
    # CloudNativePG's cron format has a seconds field.
    schedule: Cron6 = "0 0 2 * * *"
    prefix: S3Prefix = "postgres"
    server_name: S3Name | None = Field(
        None, description="name this cluster archives under; default `<instance>-pg`. A restored instance needs a new one"
    )


class PostgresRestore(SettingsModel):
    """Bootstrap the CloudNativePG cluster from backups instead of an empty database. It acts only when the
    Cluster is created: rebuilding this instance after loss, or cloning another (prod) into a branch stack."""

    source: DnsLabel = Field(description="stack whose backups to restore: this one after loss, or another (prod)")
    target_time: AwareDatetime | None = Field(
        None, description="point in time to recover to, RFC 3339 with a zone; unset: the latest state archived"
    )
    server_name: S3Name | None = Field(None, description="the source's archive name; default `<source>-pg`")
    bucket: BucketName | None = Field(None, description="the source's bucket; default: read from Pulumi.<source>.yaml")
    prefix: S3Prefix | None = Field(None, description="the source's backup prefix; default as for the bucket")

    @field_validator("target_time", mode="before")
    @classmethod
    def _rfc3339_text(cls, value):
        # pydantic would read a number (or text of digits) as seconds since 1970; the setting is RFC 3339 text.
        if value is None or isinstance(value, datetime) or (isinstance(value, str) and re.match(r"[0-9]{4}-", value)):
            return value
        raise ValueError("must be an RFC 3339 time with a zone, e.g. '2025-05-01T10:00:00Z'")

    @field_validator("target_time")
    @classmethod
    def _not_in_the_future(cls, value):
        if value is not None and value > datetime.now(timezone.utc):
            raise ValueError(f"{value.isoformat()} is in the future: no backup can reach it")
        return value


class PostgresSettings(SettingsModel):
    mode: Literal["cnpg", "external"] = "cnpg"
    instances: int = Field(1, ge=1, le=9)
    version: int = Field(17, ge=14, le=18)
    storage_size: StorageQuantity = "10Gi"
    storage_class: DnsSubdomain | None = None
    resources: Resources = Field(default_factory=lambda: resources("250m", "512Mi", "1", "1Gi"))
    image: PinnedImage | None = Field(None, description="an exact tag or digest; unset: ours for `version`")
    pooler_instances: int = Field(1, ge=1, le=10)
    pooler_resources: Resources = Field(default_factory=lambda: resources("100m", "128Mi", "500m", "256Mi"))
    # PgBouncer takes a file descriptor per client: past a container's usual open-file limit it refuses them.
    pooler_max_client_conn: int = Field(1000, ge=10, le=1_048_576)
    # Server connections per database and user: PostgreSQL takes at most 262143 connections.
    pooler_default_pool_size: int = Field(25, ge=1, le=262_143)
    # Values are written into postgresql.conf by the operator, quoted: any one line of text is safe there.
    parameters: dict[PostgresParameter, text(4096, free=True, min_length=0)] = Field(
        default_factory=lambda: {"max_connections": "200"}, max_length=512
    )
    backups: PostgresBackups = Field(default_factory=PostgresBackups)
    restore: PostgresRestore | None = None

    @property
    def image_name(self) -> str:
        return self.image or images.postgres(self.version)


class S3Settings(SettingsModel):
    endpoint_url: HttpUrl | None = Field(
        None, description="S3-compatible endpoint (Ceph RGW, MinIO) `pulumi up` provisions the bucket through; unset for AWS"
    )
    pod_endpoint_url: HttpUrl | None = Field(
        None,
        description="the S3 endpoint as pods reach it: the log connection, the database's backups and restores, task "
        "pods' egress; unset: endpointUrl. Set it when pods reach the store another way (a Service name, a host "
        "address on the cluster network); never a loopback address on a deployed stack",
    )
    region: Region = "us-east-1"
    bucket: BucketName | None = Field(None, description="defaults to `<namespace>-airflow-logs`")
    log_prefix: S3Prefix = "logs"
    retention_days: int = Field(30, ge=1, le=MAX_RETENTION_DAYS)
    # A ConfigMap holds at most 1 MiB.
    ca_bundle: text(512 * 1024, free=True, lines=True) | None = Field(None, description="PEM CA bundle of a private S3 endpoint")
    verify_tls: bool = True
    # botocore's standard retries wait a random part of 50 ms x 2^n between attempts, at most 20 s: 10 attempts
    # last 13 s in the median and 26 s at most, which lost a log on the test node when the store was down for
    # 25 s; 20 attempts last at least 70 s in 99 uploads of 100 (113 s in the median, 226 s at most).
    log_upload_attempts: int = Field(
        20, ge=1, le=30,
        description="attempts each S3 call of the log connection makes before it fails (a task's log upload "
        "included): 20 ride out at least a minute of store outage, about two minutes typically",
    )
    force_destroy: bool = Field(False, description="let `pulumi destroy` delete a bucket that still holds logs")
    log_principal: Arn | None = Field(
        None, description="ARN of the log credential's user (AWS, Ceph RGW): the bucket policy confines it to the log prefix"
    )
    backup_principal: Arn | None = Field(
        None, description="ARN of the backup credential's user: the bucket policy confines it to the backup prefix"
    )

    @property
    def pod_endpoint(self) -> str | None:
        """The endpoint every pod is told: podEndpointUrl, else endpointUrl (None: AWS)."""
        return self.pod_endpoint_url if self.pod_endpoint_url is not None else self.endpoint_url

    @field_validator("ca_bundle")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text containing '-----BEGIN CERTIFICATE-----'")
        return value


class KerberosSettings(SettingsModel):
    enabled: bool = False
    principal: Principal | None = Field(None, description="e.g. analytics/airflow-team.example.org@EXAMPLE.ORG")
    realm: Realm | None = None
    kdcs: list[HostPort] = Field(default_factory=list, max_length=32)
    admin_server: HostPort | None = None
    ticket_lifetime: Krb5Duration = "2d"
    renew_lifetime: Krb5Duration = "14d"
    reinit_frequency_seconds: int = Field(3600, ge=60, le=2**31 - 1)
    ccache_storage_class: DnsSubdomain | None = Field(None, description="a ReadWriteMany class, e.g. cephfs")
    ccache_size: StorageQuantity = "10Mi"
    renewer_resources: Resources = Field(default_factory=lambda: resources("50m", "128Mi", "200m", "256Mi"))
    api_auth: bool = Field(
        False,
        description="accept Kerberos (SPNEGO) on the REST API beside people's login; needs kerberosApiKeytab "
        "and auth mode oidc or ldap",
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> KerberosSettings:
        if self.reinit_frequency_seconds >= krb5_seconds(self.ticket_lifetime):
            raise ValueError(
                f"reinitFrequencySeconds ({self.reinit_frequency_seconds}) must be shorter than ticketLifetime "
                f"({self.ticket_lifetime}): the ticket would expire before it is renewed"
            )
        if self.api_auth and not self.enabled:
            raise ValueError("apiAuth needs enabled Kerberos (realm and KDCs)")
        if self.enabled:
            missing = [name for name in ("principal", "realm") if not getattr(self, name)]
            if not self.kdcs:
                missing.append("kdcs")
            if missing:
                raise ValueError(f"enabled Kerberos needs {', '.join(missing)}")
        return self


class GitSyncSettings(SettingsModel):
    enabled: bool = False
    repo: GitRepo | None = None
    ref: GitRef = "main"
    # A day: DAGs fetched less often than that are not being synced.
    period_seconds: int = Field(60, ge=5, le=86400)
    sub_path: RepoPath = ""
    # git reads --depth as a 32-bit number.
    depth: int = Field(1, ge=1, le=2**31 - 1)
    # Handed to git-sync as one argument; a user name of a token may be an e-mail address.
    username: text(256, free=True) | None = Field(None, description="user for token authentication over HTTPS")
    known_hosts: text(256 * 1024, free=True, lines=True) | None = Field(
        None, description="ssh_known_hosts lines of the DAG repository's host; required with gitSyncSshKey"
    )
    image: PinnedImage = images.GIT_SYNC

    @model_validator(mode="after")
    def _repo_when_enabled(self) -> GitSyncSettings:
        if self.enabled and not self.repo:
            raise ValueError("enabled git-sync needs repo")
        return self


class IngressSettings(SettingsModel):
    enabled: bool = False
    host: IngressHost | None = None
    path: IngressPath = "/"
    class_name: DnsSubdomain | None = None
    tls_secret_name: DnsSubdomain | None = None
    # Values are the ingress controller's to read (nginx snippets span lines); the API server takes any text.
    annotations: dict[QualifiedName, text(64 * 1024, free=True, lines=True, min_length=0)] = Field(
        default_factory=dict, max_length=256
    )

    @field_validator("annotations")
    @classmethod
    def _annotation_size(cls, value: dict[str, str]) -> dict[str, str]:
        # The API server's limit on all annotations of one object together.
        if sum(len(k) + len(v) for k, v in value.items()) > 256 * 1024:
            raise ValueError("annotations add up to more than 256 KiB, which the API server refuses")
        return value

    @model_validator(mode="after")
    def _host_when_enabled(self) -> IngressSettings:
        if self.enabled and not self.host:
            raise ValueError("enabled ingress needs host")
        return self


AIRFLOW_ROLES = ("Admin", "Op", "User", "Viewer")


class AuthSettings(SettingsModel):
    # These values are written into webserver_config.py as Python literals (repr), so any one line of text
    # is safe there; what the identity provider accepts is its own to say.
    mode: Literal["simple", "oidc", "ldap"] = "simple"
    oidc_metadata_url: HttpUrl | None = None
    oidc_client_id: text(255, free=True) | None = None
    oidc_provider_name: ProviderName = "oidc"
    oidc_scope: text(1024, free=True) = "openid email profile groups"
    ldap_uri: LdapUrl | None = None
    ldap_bind_dn: text(1024, free=True) | None = None
    ldap_search_base: text(1024, free=True) | None = None
    ldap_uid_field: LdapAttribute = "uid"
    ldap_group_field: LdapAttribute = "memberOf"
    role_mapping: dict[text(1024, free=True), Annotated[list[str], Field(max_length=len(AIRFLOW_ROLES))]] = Field(
        default_factory=dict, max_length=4096, description="directory group → Airflow roles, e.g. {cn=ops,...: [Admin]}"
    )
    default_role: Literal["Viewer", "User", "Op", "Admin"] | None = Field(
        None, description="role of a signed-in user no group maps; unset means no access"
    )

    @field_validator("role_mapping")
    @classmethod
    def _known_roles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = sorted({role for roles in value.values() for role in roles if role not in AIRFLOW_ROLES})
        if bad:
            raise ValueError(f"unknown roles {bad}; allowed: {list(AIRFLOW_ROLES)}")
        return value

    @model_validator(mode="after")
    def _mode_complete(self) -> AuthSettings:
        needed = {
            "oidc": ("oidc_metadata_url", "oidc_client_id"),
            "ldap": ("ldap_uri", "ldap_search_base"),
            "simple": (),
        }[self.mode]
        missing = [to_camel(name) for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth mode '{self.mode}' needs {', '.join(missing)}")
        return self
