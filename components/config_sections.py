"""The sections of the settings: one model per structured config key (`postgres`, `s3`, `kerberos`, ...),
each with the rules that concern it alone. Rules across sections are `Settings`' (components.config).

`components.config` is the model's entry point: the rest of the project imports what it uses of this module
from there.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components import images
from components.config_rules import (
    CpuQuantity,
    DnsLabel,
    DnsSubdomain,
    IngressHost,
    MemoryQuantity,
    PinnedImage,
    cpu_cores,
    memory_bytes,
)


class SettingsModel(BaseModel):
    """camelCase keys, as Pulumi config spells them; an unknown key is an error, not ignored; frozen, so
    what was validated is what every component reads."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Quantities(SettingsModel):
    cpu: CpuQuantity
    memory: MemoryQuantity


class Resources(SettingsModel):
    requests: Quantities
    limits: Quantities

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
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
    # Seed 002: pods launched one at a time starve a busy scheduler, and a burst of pods at midnight sits in
    # Pending far longer than Airflow's 10-minute default before nodes have room.
    pod_creation_batch_size: int = Field(16, ge=1, le=256)
    task_queued_timeout_seconds: int = Field(3600, ge=60)
    delete_worker_pods_on_failure: bool = False


class PostgresBackups(SettingsModel):
    enabled: bool = True
    retention_days: int = Field(30, ge=1)
    # CloudNativePG's cron format has a seconds field.
    schedule: str = "0 0 2 * * *"
    prefix: str = "postgres"
    server_name: str | None = Field(
        None, description="name this cluster archives under; default `<instance>-pg`. A restored instance needs a new one"
    )

    @field_validator("schedule")
    @classmethod
    def _six_fields(cls, value: str) -> str:
        if len(value.split()) != 6:
            raise ValueError(f"'{value}' must be a 6-field cron expression with seconds first, e.g. '0 0 2 * * *'")
        return value


class PostgresRestore(SettingsModel):
    """Bootstrap the CloudNativePG cluster from backups instead of an empty database. It acts only when the
    Cluster is created: rebuilding this instance after loss, or cloning another (prod) into a branch stack."""

    source: DnsLabel = Field(description="stack whose backups to restore: this one after loss, or another (prod)")
    target_time: AwareDatetime | None = Field(
        None, description="point in time to recover to, RFC 3339 with a zone; unset: the latest state archived"
    )
    server_name: str | None = Field(None, description="the source's archive name; default `<source>-pg`")
    bucket: str | None = Field(None, description="the source's bucket; default: read from Pulumi.<source>.yaml")
    prefix: str | None = Field(None, description="the source's backup prefix; default as for the bucket")

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
    storage_size: MemoryQuantity = "10Gi"
    storage_class: DnsSubdomain | None = None
    resources: Resources = Field(default_factory=lambda: resources("250m", "512Mi", "1", "1Gi"))
    image: PinnedImage | None = Field(None, description="an exact tag or digest; unset: ours for `version`")
    pooler_instances: int = Field(1, ge=1, le=10)
    pooler_resources: Resources = Field(default_factory=lambda: resources("100m", "128Mi", "500m", "256Mi"))
    pooler_max_client_conn: int = Field(1000, ge=10)
    pooler_default_pool_size: int = Field(25, ge=1)
    parameters: dict[str, str] = Field(default_factory=lambda: {"max_connections": "200"})
    backups: PostgresBackups = Field(default_factory=PostgresBackups)
    restore: PostgresRestore | None = None

    @property
    def image_name(self) -> str:
        return self.image or images.postgres(self.version)


class S3Settings(SettingsModel):
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (Ceph RGW, MinIO) `pulumi up` provisions the bucket through; unset for AWS"
    )
    pod_endpoint_url: str | None = Field(
        None,
        description="the S3 endpoint as pods reach it: the log connection, the database's backups and restores, task "
        "pods' egress; unset: endpointUrl. Set it when pods reach the store another way (a Service name, a host "
        "address on the cluster network); never a loopback address on a deployed stack",
    )
    region: str = "us-east-1"
    bucket: str | None = Field(None, description="defaults to `<namespace>-airflow-logs`")
    log_prefix: str = "logs"
    retention_days: int = Field(30, ge=1)
    ca_bundle: str | None = Field(None, description="PEM CA bundle of a private S3 endpoint")
    verify_tls: bool = True
    force_destroy: bool = Field(False, description="let `pulumi destroy` delete a bucket that still holds logs")
    log_principal: str | None = Field(
        None, description="ARN of the log credential's user (AWS, Ceph RGW): the bucket policy confines it to the log prefix"
    )
    backup_principal: str | None = Field(
        None, description="ARN of the backup credential's user: the bucket policy confines it to the backup prefix"
    )

    @field_validator("endpoint_url", "pod_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"'{value}' must be an http:// or https:// URL")
        return value

    @property
    def pod_endpoint(self) -> str | None:
        """The endpoint every pod is told: podEndpointUrl, else endpointUrl (None: AWS)."""
        return self.pod_endpoint_url if self.pod_endpoint_url is not None else self.endpoint_url

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        from components.log_bucket_props import bucket_name_errors

        if value is not None and (errors := bucket_name_errors(value)):
            raise ValueError("; ".join(errors))
        return value

    @field_validator("log_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"'{value}' must be a non-empty key prefix without leading or trailing '/'")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text containing '-----BEGIN CERTIFICATE-----'")
        return value


class KerberosSettings(SettingsModel):
    enabled: bool = False
    principal: str | None = Field(None, description="e.g. analytics/airflow-team.example.org@EXAMPLE.ORG")
    realm: str | None = None
    kdcs: list[str] = Field(default_factory=list)
    admin_server: str | None = None
    ticket_lifetime: str = "2d"
    renew_lifetime: str = "14d"
    reinit_frequency_seconds: int = Field(3600, ge=60)
    ccache_storage_class: DnsSubdomain | None = Field(None, description="a ReadWriteMany class, e.g. cephfs")
    ccache_size: MemoryQuantity = "10Mi"
    renewer_resources: Resources = Field(default_factory=lambda: resources("50m", "128Mi", "200m", "256Mi"))
    api_auth: bool = Field(
        False,
        description="accept Kerberos (SPNEGO) on the REST API beside people's login; needs kerberosApiKeytab "
        "and auth mode oidc or ldap",
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> KerberosSettings:
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
    repo: str | None = None
    ref: str = "main"
    period_seconds: int = Field(60, ge=5)
    sub_path: str = ""
    depth: int = Field(1, ge=1)
    username: str | None = Field(None, description="user for token authentication over HTTPS")
    known_hosts: str | None = Field(
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
    path: str = "/"
    class_name: DnsSubdomain | None = None
    tls_secret_name: DnsSubdomain | None = None
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _host_when_enabled(self) -> IngressSettings:
        if self.enabled and not self.host:
            raise ValueError("enabled ingress needs host")
        return self


AIRFLOW_ROLES = ("Admin", "Op", "User", "Viewer")


class AuthSettings(SettingsModel):
    mode: Literal["simple", "oidc", "ldap"] = "simple"
    oidc_metadata_url: str | None = None
    oidc_client_id: str | None = None
    oidc_provider_name: str = "oidc"
    oidc_scope: str = "openid email profile groups"
    ldap_uri: str | None = None
    ldap_bind_dn: str | None = None
    ldap_search_base: str | None = None
    ldap_uid_field: str = "uid"
    ldap_group_field: str = "memberOf"
    role_mapping: dict[str, list[str]] = Field(
        default_factory=dict, description="directory group → Airflow roles, e.g. {cn=ops,...: [Admin]}"
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


class Toleration(SettingsModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class PlacementSettings(SettingsModel):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class QuotaSettings(SettingsModel):
    """The namespace's ResourceQuota: one team cannot starve another. Unset amounts are sized by
    `components.capacity` from the control plane's own needs plus `concurrentTasks` task pods."""

    enabled: bool = True
    concurrent_tasks: int = Field(16, ge=1, le=2000, description="task pods the quota must hold beside the control plane")
    requests_cpu: CpuQuantity | None = None
    requests_memory: MemoryQuantity | None = None
    limits_cpu: CpuQuantity | None = None
    limits_memory: MemoryQuantity | None = None
    pods: int | None = Field(None, ge=1)
    persistent_volume_claims: int = Field(20, ge=1)


class NetworkSettings(SettingsModel):
    """NetworkPolicies: the namespace denies ingress by default and allows each path by name
    (`components.network_policies`); task pods may leave the namespace only for what is listed here."""

    enabled: bool = True
    ingress_controller_namespace: str = Field("ingress-nginx", description="namespace of the ingress controller")
    cnpg_operator_namespace: str = Field("cnpg-system", description="namespace of the CloudNativePG operator")
    dns_namespace: str = "kube-system"
    task_pod_egress_cidrs: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description="where task pods may connect outside the namespace (S3, sources, KDCs): CIDRs",
    )
    task_pod_egress_except: list[str] = Field(
        default_factory=lambda: ["169.254.0.0/16"],
        description="CIDRs carved out of taskPodEgressCidrs; the default keeps the cloud metadata service (node credentials) out",
    )

    @field_validator("task_pod_egress_cidrs", "task_pod_egress_except")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(f"'{cidr}' is not a CIDR like 10.0.0.0/8") from None
        return value


class LimitRangeSettings(SettingsModel):
    """Per-container defaults and ceilings, so a task pod cannot drop its limits or ask for a node."""

    enabled: bool = True
    default_request: Quantities = Field(default_factory=lambda: Quantities(cpu="250m", memory="512Mi"))
    default_limit: Quantities = Field(default_factory=lambda: Quantities(cpu="1", memory="1Gi"))
    max: Quantities = Field(default_factory=lambda: Quantities(cpu="4", memory="16Gi"))

    @model_validator(mode="after")
    def _ordered(self) -> LimitRangeSettings:
        for kind, measure in (("cpu", cpu_cores), ("memory", memory_bytes)):
            request = getattr(self.default_request, kind)
            limit = getattr(self.default_limit, kind)
            ceiling = getattr(self.max, kind)
            if not measure(request) <= measure(limit) <= measure(ceiling):
                raise ValueError(f"{kind}: need defaultRequest ({request}) <= defaultLimit ({limit}) <= max ({ceiling})")
        return self


class DbCleanupSettings(SettingsModel):
    """`airflow db clean` on a schedule, instead of a maintenance DAG."""

    enabled: bool = True
    schedule: str = "17 3 * * *"
    retention_days: int = Field(90, ge=1)
    tables: list[str] = Field(default_factory=list, description="empty: every table db clean knows")
    skip_archive: bool = True
    deadline_seconds: int = Field(3600, ge=60, description="a clean-up that runs longer is stopped (and retried next night)")

    @field_validator("schedule")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"'{value}' must be a 5-field cron expression, e.g. '17 3 * * *'")
        return value


class MetricsSettings(SettingsModel):
    """StatsD from every Airflow process to a statsd_exporter per instance (components/metrics.py)."""

    enabled: bool = True
    prometheus_operator: bool = Field(False, description="create a ServiceMonitor, PodMonitors and a PrometheusRule")
    monitor_labels: dict[str, str] = Field(
        default_factory=dict, description="labels a Prometheus selects monitors and rules by, e.g. {release: kube-prometheus-stack}"
    )
    scrape_interval: str = "30s"
    exporter_image: PinnedImage = images.STATSD_EXPORTER
    exporter_resources: Resources = Field(default_factory=lambda: resources("50m", "64Mi", "200m", "256Mi"))
    backup_max_age_hours: int = Field(26, ge=1, description="AirflowDatabaseBackupTooOld fires past this age")
    runbook_url: str | None = Field(None, description="page with the runbooks; alerts link to <url>#<alertname>")


class CostSettings(SettingsModel):
    """Prices of requested capacity, for the `monthly_cost` output and `python -m envs list`. The defaults are
    illustrative (about a public cloud's on-demand price of a reserved core and GiB): set your cluster's."""

    cpu_per_core_month: float = Field(30.0, ge=0, description="price of one requested core for a month")
    memory_per_gib_month: float = Field(4.0, ge=0, description="price of one requested GiB for a month")
    currency: str = "USD"
