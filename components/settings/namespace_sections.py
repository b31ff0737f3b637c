"""The sections of the settings that describe the instance's namespace and its upkeep: where pods run
(`placement`), the ResourceQuota (`quota`), NetworkPolicies (`network`), the LimitRange (`limitRange`), the
database clean-up (`dbCleanup`), metrics and alerts (`metrics`) and prices (`cost`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components import images
from components.settings.rules import cpu_cores, memory_bytes
from components.settings.sections import MAX_PODS, MAX_RETENTION_DAYS, Quantities, Resources, SettingsModel, resources
from components.settings.value_types import (
    Cidr, Cron5, Currency, DnsLabel, HttpUrl, LabelValue, PinnedImage, QualifiedName, QuotaCpuQuantity,
    QuotaMemoryQuantity, ScrapeInterval, TableName,
)


class Toleration(SettingsModel):
    key: QualifiedName | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _as_the_api_server_takes_it(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key must have operator Exists (it tolerates every taint)")
        return self


class PlacementSettings(SettingsModel):
    node_selector: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=64)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)


class QuotaSettings(SettingsModel):
    """The namespace's ResourceQuota: one team cannot starve another. Unset amounts are sized by
    `components.settings.capacity` from the control plane's own needs plus `concurrentTasks` task pods."""

    enabled: bool = True
    concurrent_tasks: int = Field(16, ge=1, le=2000, description="task pods the quota must hold beside the control plane")
    requests_cpu: QuotaCpuQuantity | None = None
    requests_memory: QuotaMemoryQuantity | None = None
    limits_cpu: QuotaCpuQuantity | None = None
    limits_memory: QuotaMemoryQuantity | None = None
    pods: int | None = Field(None, ge=1, le=MAX_PODS)
    persistent_volume_claims: int = Field(20, ge=1, le=MAX_PODS)


class NetworkSettings(SettingsModel):
    """NetworkPolicies: the namespace denies ingress by default and allows each path by name
    (`components.network_policies`); task pods may leave the namespace only for what is listed here."""

    enabled: bool = True
    ingress_controller_namespace: DnsLabel = Field("ingress-nginx", description="namespace of the ingress controller")
    cnpg_operator_namespace: DnsLabel = Field("cnpg-system", description="namespace of the CloudNativePG operator")
    dns_namespace: DnsLabel = "kube-system"
    task_pod_egress_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description="where task pods may connect outside the namespace (S3, sources, KDCs): CIDRs",
        max_length=256,
    )
    task_pod_egress_except: list[Cidr] = Field(
        default_factory=lambda: ["169.254.0.0/16"],
        description="CIDRs carved out of taskPodEgressCidrs; the default keeps the cloud metadata service (node credentials) out",
        max_length=256,
    )


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
            if measure(limit) <= 0:
                raise ValueError(f"{kind}: defaultLimit ({limit}) must be more than 0")
        return self


class DbCleanupSettings(SettingsModel):
    """`airflow db clean` on a schedule, instead of a maintenance DAG."""

    enabled: bool = True
    schedule: Cron5 = "17 3 * * *"
    retention_days: int = Field(90, ge=1, le=MAX_RETENTION_DAYS)
    tables: list[TableName] = Field(default_factory=list, description="empty: every table db clean knows", max_length=64)
    skip_archive: bool = True
    # A week: a nightly clean-up running longer than that is stuck.
    deadline_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="a clean-up that runs longer is stopped (and retried next night)"
    )


class MetricsSettings(SettingsModel):
    """StatsD from every Airflow process to a statsd_exporter per instance (components/metrics.py)."""

    enabled: bool = True
    prometheus_operator: bool = Field(False, description="create a ServiceMonitor, PodMonitors and a PrometheusRule")
    monitor_labels: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict, max_length=64,
        description="labels a Prometheus selects monitors and rules by, e.g. {release: kube-prometheus-stack}",
    )
    scrape_interval: ScrapeInterval = "30s"
    exporter_image: PinnedImage = images.STATSD_EXPORTER
    exporter_resources: Resources = Field(default_factory=lambda: resources("50m", "64Mi", "200m", "256Mi"))
    # A year: a backup older than that is long past every retention.
    backup_max_age_hours: int = Field(26, ge=1, le=8760, description="AirflowDatabaseBackupTooOld fires past this age")
    runbook_url: HttpUrl | None = Field(None, description="page with the runbooks; alerts link to <url>#<alertname>")


class CostSettings(SettingsModel):
    """Prices of requested capacity, for the `monthly_cost` output and `python -m envs list`. The defaults are
    illustrative (about a public cloud's on-demand price of a reserved core and GiB): set your cluster's."""

    # A finite price, in any currency (a billion covers the smallest units): the sums must stay numbers.
    cpu_per_core_month: float = Field(
        30.0, ge=0, le=1e9, allow_inf_nan=False, description="price of one requested core for a month"
    )
    memory_per_gib_month: float = Field(
        4.0, ge=0, le=1e9, allow_inf_nan=False, description="price of one requested GiB for a month"
    )
    currency: Currency = "USD"
