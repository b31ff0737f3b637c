"""The stack's settings: one typed, validated model, and the only reader of `pulumi.Config`.

Every top-level field of `Settings` is one key of the `airflow-platform` config namespace, spelt in
camelCase (`postgres`, `s3AccessKeyId`, ...). Structured keys take YAML objects in `Pulumi.<stack>.yaml`.
Secret keys must be stored with `pulumi config set --secret`; the model keeps them as `SecretStr`, so no
error message, repr or log line can print them, and `secret_output` turns them into `Output` secrets.

All problems are gathered into ONE `ConfigError` that names every bad key, its value and what is allowed,
raised before any resource is registered.

`python -m components.config` regenerates the `config:` block of `Pulumi.yaml` and the README's table of
keys from this model, so the documentation cannot drift from the code; `python -m components.config check
[<stack>...]` checks stack files with this model, without the engine (components/stack_config.py).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components import images, kube

PROJECT = kube.PROJECT

# ---------------------------------------------------------------------------------------------------------
# Value types


_CPU = re.compile(r"^([0-9]+(\.[0-9]+)?)(m)?$")
_MEMORY = re.compile(r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_MEMORY_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def cpu_cores(quantity: str) -> float:
    match = _CPU.match(quantity)
    if not match:
        raise ValueError(f"'{quantity}' is not a CPU quantity; use cores like '1', '0.5' or millicores like '500m'")
    value = float(match.group(1))
    return value / 1000 if match.group(3) else value


def memory_bytes(quantity: str) -> float:
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(f"'{quantity}' is not a memory quantity; use e.g. '512Mi', '2Gi'")
    return float(match.group(1)) * _MEMORY_FACTORS[match.group(3)]


def _cpu(value: str) -> str:
    cpu_cores(value)
    return value


def _memory(value: str) -> str:
    memory_bytes(value)
    return value


def _dns1123_label(value: str) -> str:
    if not kube.is_dns1123_label(value):
        raise ValueError(
            f"'{value}' is not a DNS-1123 label: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


# The API server's own rules (k8s.io/apimachinery/pkg/util/validation) for what a setting becomes, checked when
# the config is read: a value the cluster would refuse must not stop `pulumi up` half-way through.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The image reference grammar of container runtimes (github.com/distribution/reference): a kubelet refuses
# anything else as InvalidImageName, after the API server has accepted the pod.
_IMAGE_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_IMAGE_REPOSITORY = re.compile(rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}$")
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}(?::[\w][\w.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?$"
)
_CSS_HEX = re.compile(r"^#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_CSS_FUNCTION = re.compile(r"^(rgb|rgba|hsl|hsla)\(\s*[0-9.]+%?\s*(,\s*[0-9.]+%?\s*){2,3}\)$")
_CSS_NAMED = frozenset("""
aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue blueviolet brown burlywood
cadetblue chartreuse chocolate coral cornflowerblue cornsilk crimson cyan darkblue darkcyan darkgoldenrod darkgray
darkgreen darkgrey darkkhaki darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink deepskyblue dimgray dimgrey dodgerblue
firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite gold goldenrod gray green greenyellow grey honeydew
hotpink indianred indigo ivory khaki lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen lightskyblue lightslategray
lightslategrey lightsteelblue lightyellow lime limegreen linen magenta maroon mediumaquamarine mediumblue
mediumorchid mediumpurple mediumseagreen mediumslateblue mediumspringgreen mediumturquoise mediumvioletred
midnightblue mintcream mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid
palegoldenrod palegreen paleturquoise palevioletred papayawhip peachpuff peru pink plum powderblue purple
rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown seagreen seashell sienna silver skyblue
slateblue slategray slategrey snow springgreen steelblue tan teal thistle tomato turquoise violet wheat white
whitesmoke yellow yellowgreen
""".split())


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"'{value}' is not a Kubernetes label value: use at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


def dns1123_subdomain_problem(value: str) -> str | None:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        return (
            f"'{value}' is not a DNS-1123 subdomain: use at most 253 lower-case letters, digits, '-' and '.', "
            "each dot-separated part starting and ending with a letter or digit"
        )
    return None


def _refusing(problem_of):
    """A pydantic validator from a function that says what is wrong with a value (None: nothing)."""

    def validate(value: str) -> str:
        if problem := problem_of(value):
            raise ValueError(problem)
        return value

    return validate


def _ingress_host(value: str) -> str:
    # The API server takes a DNS name, optionally with a leading '*.' wildcard, and never an IP address.
    if re.match(r"^[0-9.]+$|:", value):
        raise ValueError(f"'{value}' is an IP address; an ingress host must be a DNS name")
    if problem := dns1123_subdomain_problem(value.removeprefix("*.")):
        raise ValueError(problem.replace("DNS-1123 subdomain", "host name (a DNS-1123 subdomain, optionally '*.'-prefixed)"))
    return value


def image_reference_problem(value: str, repository_only: bool = False) -> str | None:
    pattern = _IMAGE_REPOSITORY if repository_only else _IMAGE_REFERENCE
    if len(value) > 255 or not pattern.match(value):
        what = "an image repository like 'registry.example.org/team/airflow'" if repository_only else (
            "an image reference like 'registry.k8s.io/git-sync/git-sync:v4.4.2'")
        return f"'{value}' is not {what} (lower-case path, no spaces)"
    return None


def _css_colour(value: str) -> str:
    if not (_CSS_HEX.match(value) or _CSS_FUNCTION.match(value) or value.lower() in _CSS_NAMED):
        raise ValueError(f"'{value}' is not a CSS colour: use e.g. '#d9534f', 'red' or 'rgb(217, 83, 79)'")
    return value


def _base64(value: SecretStr) -> SecretStr:
    try:
        decoded = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (e.g. `base64 -w0 airflow.keytab`)") from None
    if not decoded:
        raise ValueError("must not be empty")
    return value


CpuQuantity = Annotated[str, AfterValidator(_cpu)]
PinnedImage = Annotated[
    str, AfterValidator(_refusing(image_reference_problem)), AfterValidator(_refusing(images.pinned_image_problem))
]
MemoryQuantity = Annotated[str, AfterValidator(_memory)]
DnsLabel = Annotated[str, AfterValidator(_dns1123_label)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
DnsSubdomain = Annotated[str, AfterValidator(_refusing(dns1123_subdomain_problem))]
IngressHost = Annotated[str, AfterValidator(_ingress_host)]
ImageReference = Annotated[str, AfterValidator(_refusing(image_reference_problem))]
CssColour = Annotated[str, AfterValidator(_css_colour)]
Base64Secret = Annotated[SecretStr, AfterValidator(_base64)]


def _secret(description: str) -> Any:
    return Field(default=None, description=description, json_schema_extra={"secret": True})


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------------------
# Sections


class Quantities(_Model):
    cpu: CpuQuantity
    memory: MemoryQuantity


class Resources(_Model):
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


class ComponentSettings(_Model):
    replicas: int = Field(1, ge=1, le=10)
    resources: Resources


class ApiServerSettings(ComponentSettings):
    workers: int = Field(2, ge=1, le=16, description="uvicorn workers per api-server pod")


class TaskPodSettings(_Model):
    resources: Resources = Field(default_factory=lambda: resources("500m", "1Gi", "2", "2Gi"))
    kubernetes_api_access: bool = Field(
        False,
        description="Mount a service-account token in task pods (needed by KubernetesPodOperator only)",
    )


class ExecutorSettings(_Model):
    # Seed 002: pods launched one at a time starve a busy scheduler, and a burst of pods at midnight sits in
    # Pending far longer than Airflow's 10-minute default before nodes have room.
    pod_creation_batch_size: int = Field(16, ge=1, le=256)
    task_queued_timeout_seconds: int = Field(3600, ge=60)
    delete_worker_pods_on_failure: bool = False


class PostgresBackups(_Model):
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


class PostgresRestore(_Model):
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


class PostgresSettings(_Model):
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


class S3Settings(_Model):
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (Ceph RGW, MinIO); unset for AWS")
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

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"'{value}' must be an http:// or https:// URL")
        return value

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


class KerberosSettings(_Model):
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


class GitSyncSettings(_Model):
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


class IngressSettings(_Model):
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


class AuthSettings(_Model):
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


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class PlacementSettings(_Model):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class QuotaSettings(_Model):
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


class NetworkSettings(_Model):
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


class LimitRangeSettings(_Model):
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


class DbCleanupSettings(_Model):
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


class MetricsSettings(_Model):
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


class CostSettings(_Model):
    """Prices of requested capacity, for the `monthly_cost` output and `python -m envs list`. The defaults are
    illustrative (about a public cloud's on-demand price of a reserved core and GiB): set your cluster's."""

    cpu_per_core_month: float = Field(30.0, ge=0, description="price of one requested core for a month")
    memory_per_gib_month: float = Field(4.0, ge=0, description="price of one requested GiB for a month")
    currency: str = "USD"


# ---------------------------------------------------------------------------------------------------------
# The stack


class Settings(_Model):
    instance: DnsLabel = Field(description="instance name; defaults to the stack name")
    namespace: DnsLabel | None = Field(None, description="defaults to `airflow-<instance>`")
    create_namespace: bool = Field(True, description="create the namespace (false: it already exists)")
    team: LabelValue | None = Field(None, description="owning team, put on every pod as a cost-attribution label")
    kubernetes_render_dir: str | None = Field(
        None, description="render every object as YAML into this directory instead of applying it to a cluster"
    )
    kubernetes_context: str | None = Field(None, description="kubeconfig context to deploy to (default: current)")
    protect: bool | None = Field(
        None,
        description="protect and retain the database and the log bucket; unset: on every stack but dev, local "
        "and branch environments, and only those may turn it off",
    )

    airflow_image: str = Field("apache/airflow", description="image repository")
    airflow_version: str = Field("3.3.2", description="Airflow version (image tag prefix)")
    airflow_python_version: str = Field("3.12", description="Python of the image tag")
    image_pull_policy: Literal["IfNotPresent", "Always"] = "IfNotPresent"
    instance_title: str | None = Field(None, description="shown in the UI; defaults to the instance name")
    navbar_color: CssColour = Field("#fff", description="navbar colour of the FAB login pages, e.g. red for prod")

    api_server: ApiServerSettings = Field(
        default_factory=lambda: ApiServerSettings(resources=resources("250m", "1Gi", "1", "2Gi"))
    )
    scheduler: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(resources=resources("500m", "1Gi", "2", "2Gi"))
    )
    dag_processor: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(resources=resources("250m", "1Gi", "1", "2Gi"))
    )
    triggerer: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(resources=resources("100m", "512Mi", "500m", "1Gi"))
    )
    task_pod: TaskPodSettings = Field(default_factory=TaskPodSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    postgres_external_uri: SecretStr | None = _secret("database URI when postgres.mode is external")

    s3: S3Settings = Field(default_factory=S3Settings)
    s3_access_key_id: SecretStr | None = _secret(
        "S3 key that provisions the bucket, used by `pulumi up` only (unset: the ambient AWS credential chain)"
    )
    s3_secret_access_key: SecretStr | None = _secret("secret of s3AccessKeyId")
    s3_log_access_key_id: SecretStr | None = _secret(
        "S3 key that reads and writes the log prefix only; Airflow and task pods hold it (unset: ambient chain)"
    )
    s3_log_secret_access_key: SecretStr | None = _secret("secret of s3LogAccessKeyId")
    s3_backup_access_key_id: SecretStr | None = _secret(
        "S3 key that reads and writes the backup prefix only; PostgreSQL holds it (unset: ambient chain)"
    )
    s3_backup_secret_access_key: SecretStr | None = _secret("secret of s3BackupAccessKeyId")

    kerberos: KerberosSettings = Field(default_factory=KerberosSettings)
    kerberos_keytab: Base64Secret | None = _secret("the instance's keytab, base64")
    kerberos_api_keytab: Base64Secret | None = _secret(
        "the api-server's HTTP/<host> service keytab, base64 (kerberos.apiAuth)"
    )

    git_sync: GitSyncSettings = Field(default_factory=GitSyncSettings)
    git_sync_ssh_key: SecretStr | None = _secret("private SSH key for the DAG repository")
    git_sync_token: SecretStr | None = _secret("HTTPS token for the DAG repository")

    ingress: IngressSettings = Field(default_factory=IngressSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    auth_oidc_client_secret: SecretStr | None = _secret("OIDC client secret")
    auth_ldap_bind_password: SecretStr | None = _secret("LDAP bind password")

    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    limit_range: LimitRangeSettings = Field(default_factory=LimitRangeSettings)
    db_cleanup: DbCleanupSettings = Field(default_factory=DbCleanupSettings)
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="StatsD to a statsd_exporter; monitors and alerts (README: Metrics and alerts)"
    )
    cost: CostSettings = Field(default_factory=CostSettings)
    airflow_connections: SecretStr | None = _secret(
        "JSON object of extra Airflow connections (conn_id → connection), served by the secrets backend"
    )

    # The stack this config belongs to: protection and login rules depend on it, not on the instance name.
    _stack: str = PrivateAttr("")

    # --- derived facts -------------------------------------------------------------------------------------

    @property
    def stack(self) -> str:
        return self._stack or self.instance

    @property
    def disposable(self) -> bool:
        from policy.rules import is_disposable_stack

        return is_disposable_stack(self.stack)

    @property
    def protected(self) -> bool:
        return self.protect if self.protect is not None else not self.disposable

    @property
    def kubernetes_namespace(self) -> str:
        return self.namespace or f"airflow-{self.instance}"

    @property
    def image(self) -> str:
        return f"{self.airflow_image}:{self.airflow_version}-python{self.airflow_python_version}"

    @property
    def bucket_name(self) -> str:
        return self.s3.bucket or f"{self.kubernetes_namespace}-airflow-logs"

    def name(self, role: str) -> str:
        return kube.resource_name(self.instance, role)

    # --- cross-field rules ---------------------------------------------------------------------------------

    @field_validator("airflow_version")
    @classmethod
    def _airflow_3(cls, value: str) -> str:
        if not re.match(r"^3\.\d+\.\d+([a-z0-9.]*)$", value):
            raise ValueError(f"'{value}' is not an Airflow 3 version like '3.3.2'")
        return value

    @field_validator("airflow_python_version")
    @classmethod
    def _python_3(cls, value: str) -> str:
        # It ends the image tag: anything but a version would make an image reference no runtime can pull.
        if not re.match(r"^3\.\d+$", value):
            raise ValueError(f"'{value}' is not a Python version like '3.12'")
        return value

    @field_validator("airflow_image")
    @classmethod
    def _untagged(cls, value: str) -> str:
        if ":" in value.rsplit("/", 1)[-1] or "@" in value:
            raise ValueError(f"'{value}' must be a repository without a tag; the tag comes from airflowVersion")
        if problem := image_reference_problem(value, repository_only=True):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Settings:
        from components.log_bucket_props import bucket_name_errors
        from components.stack_rules import security_problems

        self._stack = (info.context or {}).get("stack") or ""
        problems: list[tuple[str, str]] = list(security_problems(self))
        for problem in kube.name_length_problems(self.instance, self.airflow_version):
            problems.append(("instance", problem))
        if self.s3.bucket is None:
            for problem in bucket_name_errors(self.bucket_name):
                problems.append(("s3.bucket", f"derived bucket name '{self.bucket_name}': {problem}; set s3.bucket"))
        if self.postgres.mode == "external" and self.postgres_external_uri is None:
            problems.append(("postgresExternalUri", "postgres.mode is external but no URI is set (use --secret)"))
        if self.postgres.mode == "external" and self.postgres_external_uri is not None:
            uri = self.postgres_external_uri.get_secret_value()
            if not re.match(r"^postgres(ql)?(\+[a-z0-9]+)?://", uri):
                problems.append(("postgresExternalUri", "[secret] must start with postgresql://"))
        if self.postgres.restore is not None:
            from components.restore_source import restore_problems

            problems += [("postgres.restore", problem) for problem in restore_problems(self)]
        if self.kerberos.enabled and self.kerberos_keytab is None:
            problems.append(("kerberosKeytab", "Kerberos is enabled but no keytab is set (use --secret)"))
        if self.kerberos.api_auth and self.kerberos_api_keytab is None:
            problems.append(("kerberosApiKeytab", "kerberos.apiAuth is on but no HTTP service keytab is set (use --secret)"))
        if self.kerberos.api_auth and self.auth.mode == "simple":
            problems.append(
                ("kerberos.apiAuth", "needs auth.mode oidc or ldap: Kerberos principals map onto FAB users, and "
                 "SimpleAuthManager has no user store")
            )
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            problems.append(("s3SecretAccessKey", "set both s3AccessKeyId and s3SecretAccessKey, or neither"))
        if self.git_sync_ssh_key is not None and self.git_sync_token is not None:
            problems.append(("gitSyncToken", "set gitSyncSshKey or gitSyncToken, not both"))
        if self.auth.mode == "oidc" and self.auth_oidc_client_secret is None:
            problems.append(("authOidcClientSecret", "auth mode oidc needs the client secret (use --secret)"))
        if self.auth.mode == "ldap" and self.auth.ldap_bind_dn and self.auth_ldap_bind_password is None:
            problems.append(("authLdapBindPassword", "auth.ldapBindDn is set but no bind password (use --secret)"))
        if self.limit_range.enabled:
            ceiling = self.limit_range.max
            for key, section in (
                ("taskPod", self.task_pod),
                ("apiServer", self.api_server),
                ("scheduler", self.scheduler),
                ("dagProcessor", self.dag_processor),
                ("triggerer", self.triggerer),
            ):
                limits = section.resources.limits
                if cpu_cores(limits.cpu) > cpu_cores(ceiling.cpu) or memory_bytes(limits.memory) > memory_bytes(ceiling.memory):
                    problems.append(
                        (f"{key}.resources", f"limits {limits.cpu} CPU / {limits.memory} exceed limitRange.max "
                         f"{ceiling.cpu} / {ceiling.memory}: the namespace would refuse these pods")
                    )
        if self.airflow_connections is not None:
            try:
                connections = json.loads(self.airflow_connections.get_secret_value())
                if not isinstance(connections, dict):
                    raise ValueError
            except ValueError:
                problems.append(("airflowConnections", "[secret] must be a JSON object of conn_id → connection"))
        if problems:
            raise _CrossFieldProblems(problems)
        return self


class _CrossFieldProblems(ValueError):
    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{key}: {text}" for key, text in problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------------------------
# Reading the stack's config


class ConfigError(pulumi.RunError):
    """Every problem with the stack's configuration, in one message a user can act on."""

    def __init__(self, problems: list[str], stack: str | None = None):
        from components.stack_config import fix_commands  # it reads the model defined below

        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        fixes = "\n".join(f"  {command}" for command in fix_commands(problems))
        super().__init__(
            f"invalid configuration for stack '{stack or pulumi.get_stack()}' ({len(problems)} problem(s)):\n{lines}\n"
            + (f"To fix (a value shown is the key's default):\n{fixes}\n" if fixes else "")
        )


def config_keys() -> dict[str, Any]:
    """Config key → model field, for every key the stack may set."""
    return {field.alias: field for field in Settings.model_fields.values()}


def secret_keys() -> set[str]:
    return {key for key, field in config_keys().items() if (field.json_schema_extra or {}).get("secret")}


def _describe(value: Any, secret: bool) -> str:
    if secret:
        return "[secret]"
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key_path(location: tuple, secret_fields: set[str]) -> tuple[str, bool]:
    parts = [str(part) for part in location if not str(part).startswith("function-")]
    top = parts[0] if parts else ""
    is_secret = top in secret_fields or top in secret_keys()
    alias = Settings.model_fields[top].alias if top in Settings.model_fields else top
    return ".".join([alias, *(to_camel(p) if not p.isdigit() else p for p in parts[1:])]), is_secret


def parse_settings(raw: dict[str, Any], stack: str | None = None) -> Settings:
    """Validate raw config values (key → value as decoded from the stack file) of `stack` (default: the
    instance name); raise one ConfigError."""
    secret_fields = {name for name, field in Settings.model_fields.items() if field.alias in secret_keys()}
    try:
        return Settings.model_validate(raw, context={"stack": stack})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, _CrossFieldProblems):
                problems += [f"{PROJECT}:{key}: {text}" for key, text in cause.problems]
                continue
            key, is_secret = _key_path(item["loc"], secret_fields)
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                parent = key.rsplit(".", 1)[0]
                message = "unknown key" + _suggestion(key.rsplit(".", 1)[-1], _allowed_under(parent))
                problems.append(f"{PROJECT}:{key}: {message}")
                continue
            if item["type"] == "missing":
                problems.append(f"{PROJECT}:{key}: is required")
                continue
            value = _describe(item.get("input"), is_secret)
            problems.append(f"{PROJECT}:{key} = {value}: {message}")
        raise ConfigError(problems) from None


def _allowed_under(path: str) -> list[str]:
    model: type[BaseModel] = Settings
    for part in path.split("."):
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias for field in model.model_fields.values()]


def _suggestion(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} allowed: {', '.join(allowed)}" if allowed else hint


def _decode(key: str, value: str) -> Any:
    """Pulumi hands structured config to the program as JSON text, and scalars as plain strings (which
    pydantic coerces: "true" → True, "3" → 3). Secret values stay text."""
    if key not in secret_keys() and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def config_text(value: Any) -> str:
    """A config value as the engine hands it to a program (the inverse of `_decode`): structured values as
    JSON text, booleans as true/false, everything else as a string."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_settings(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the stack's config. The only function in the project that touches pulumi.Config."""
    config = config or pulumi.Config(PROJECT)
    keys = config_keys()
    raw: dict[str, Any] = {"instance": pulumi.get_stack()}
    problems: list[str] = []
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if key in secret_keys() and not pulumi.runtime.is_config_secret(config.full_key(key)):
            from components.stack_config import plaintext_secret_problem

            problems.append(plaintext_secret_problem(key))
        raw[key] = _decode(key, value)
    for full_key in sorted(_all_config_keys()):
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT and key not in keys:
            problems.append(f"{full_key}: unknown key{_suggestion(key, sorted(keys))}")
    try:
        settings = parse_settings(raw, stack=pulumi.get_stack())
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems)
    return settings


def _all_config_keys() -> set[str]:
    return set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())


def secret_output(value: SecretStr | None) -> pulumi.Output[str] | None:
    """The Output secret for a secret setting: exactly what `Config.get_secret` returns for it."""
    return None if value is None else pulumi.Output.secret(value.get_secret_value())


# ---------------------------------------------------------------------------------------------------------
# Generated documentation: Pulumi.yaml's `config:` block and the README's table of keys


_SCALAR_TYPES = {str: "string", int: "integer", bool: "boolean", SecretStr: "string"}


def _scalar_type(annotation: Any) -> str | None:
    """The Pulumi project type of a field, or None for a structured (object) key, which Pulumi.yaml cannot
    declare: its schema allows only string, integer, boolean and array."""
    options = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
    for option in options:
        option = getattr(option, "__origin__", option)
        if option in _SCALAR_TYPES:
            return _SCALAR_TYPES[option]
        if option is Literal or str(option).startswith("typing.Literal"):
            return "string"
    return None


def project_config_declarations() -> dict[str, dict[str, Any]]:
    """The scalar keys that have a default. The engine treats a declared key without a default as required
    and refuses to run a stack that does not set it, so optional keys (and secrets, which never have a
    default) are left out; the README's table documents every key, and the model validates them all."""
    declarations: dict[str, dict[str, Any]] = {}
    for key, field in config_keys().items():
        kind = _scalar_type(field.annotation)
        if kind is None or key in secret_keys() or field.is_required() or field.default is None:
            continue
        declarations[key] = {"type": kind, "description": field.description or key, "default": field.default}
    return declarations


def config_reference_markdown() -> str:
    """A table of every key: its type, default and meaning, straight from the model."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, field in config_keys().items():
        kind = _scalar_type(field.annotation) or "object"
        if key in secret_keys():
            kind += " (secret)"
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(by_alias=True, mode="json")
        shown = "" if default is None else f"`{json.dumps(default)}`"
        rows.append(f"| `{key}` | {kind} | {shown} | {(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    if sys.argv[1:2] == ["check"]:
        from components.stack_config import check

        sys.exit(check(sys.argv[2:], root))
    project_file = root / "Pulumi.yaml"
    project = yaml.safe_load(project_file.read_text())
    project["config"] = {f"{PROJECT}:{k}": v for k, v in project_config_declarations().items()}
    project_file.write_text(yaml.safe_dump(project, sort_keys=False, width=110))
    readme = root / "README.md"
    begin, end = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
    text = readme.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{config_reference_markdown()}\n{end}{rest.split(end, 1)[1]}"
    from components.capacity import stacks_capacity_markdown

    begin, end = "<!-- capacity:begin -->", "<!-- capacity:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{stacks_capacity_markdown()}\n{end}{rest.split(end, 1)[1]}"
    readme.write_text(text)
    sys.stdout.write("Pulumi.yaml and README.md regenerated from components/config.py\n")
