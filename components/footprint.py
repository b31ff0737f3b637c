"""What an instance reserves while it runs: CPU and memory requests and limits of every pod that runs all the
time, and what they cost a month.

Two readers, one rule. `footprint(settings)` derives it from the settings model (stack outputs, `python -m envs
list`, the benchmarks); `from_manifests(objects)` counts the objects the program rendered (the benchmarks and a
test cross-check the two, so a component that changes a container's size without this module fails the test).

Counted: the Airflow Deployments (with their git-sync sidecars), the Kerberos renewer, the CloudNativePG
instances, the Barman Cloud sidecar the plugin injects into each instance when backups are on, and the PgBouncer
pods. Not counted: Jobs and CronJobs (they finish), task pods (one per running task, sized by `taskPod`).

A container that declares nothing still reserves something: the namespace's LimitRange gives it the default
request and limit at admission. CloudNativePG's Pooler pods and the Barman Cloud sidecar were such containers
until their specs sized them (a quarter of dev's requests came from the defaults); `from_manifests` still
applies the rule, so a container that loses its size shows up in the cross-check.

`components.settings.capacity` answers a different question with the same sizes: what the ResourceQuota must hold
(surge pods of a rolling update, the migration and clean-up Jobs, concurrent task pods). This is the steady state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from components import kube
from components.settings import Settings
from components.settings.rules import cpu_cores, memory_bytes

GIB = 2**30
HOURS_PER_MONTH = 730  # what cloud price lists use

BARMAN_SIDECAR = "plugin-barman-cloud"


@dataclass(frozen=True)
class Size:
    """Cores and bytes; `None` as a limit means unbounded (no limit and no LimitRange default)."""

    cpu: float | None
    memory: float | None

    def __add__(self, other: Size) -> Size:
        add = lambda a, b: None if a is None or b is None else a + b  # noqa: E731
        return Size(add(self.cpu, other.cpu), add(self.memory, other.memory))

    def __mul__(self, times: int) -> Size:
        return Size(None if self.cpu is None else self.cpu * times, None if self.memory is None else self.memory * times)


@dataclass(frozen=True)
class Container:
    workload: str
    name: str
    requests: Size
    limits: Size
    defaulted: bool  # some value came from the LimitRange: the container declared it not


@dataclass(frozen=True)
class Pod:
    workload: str
    replicas: int
    containers: tuple[Container, ...]

    @property
    def requests(self) -> Size:
        return sum((c.requests for c in self.containers), Size(0.0, 0.0)) * self.replicas

    @property
    def limits(self) -> Size:
        return sum((c.limits for c in self.containers), Size(0.0, 0.0)) * self.replicas

    @property
    def declared_requests(self) -> Size:
        """Requests as written in the objects, before any LimitRange default."""
        return sum((c.requests for c in self.containers if not c.defaulted), Size(0.0, 0.0)) * self.replicas


@dataclass
class Footprint:
    pods: list[Pod] = field(default_factory=list)

    @property
    def requests(self) -> Size:
        return sum((p.requests for p in self.pods), Size(0.0, 0.0))

    @property
    def limits(self) -> Size:
        return sum((p.limits for p in self.pods), Size(0.0, 0.0))

    @property
    def declared_requests(self) -> Size:
        return sum((p.declared_requests for p in self.pods), Size(0.0, 0.0))

    @property
    def containers(self) -> int:
        return sum(len(p.containers) * p.replicas for p in self.pods)

    @property
    def defaulted_containers(self) -> int:
        return sum(sum(c.defaulted for c in p.containers) * p.replicas for p in self.pods)

    def by_workload(self) -> dict[str, Size]:
        totals: dict[str, Size] = {}
        for pod in self.pods:
            totals[pod.workload] = totals.get(pod.workload, Size(0.0, 0.0)) + pod.requests
        return totals


# ---------------------------------------------------------------------------------------------------------
# The LimitRange rule


@dataclass(frozen=True)
class Defaults:
    """A namespace LimitRange's `Container` item: what admission fills in. `None`: no LimitRange."""

    request: dict[str, str] | None = None
    limit: dict[str, str] | None = None


def container(workload: str, name: str, resources: dict | None, defaults: Defaults) -> Container:
    """A container as admitted: a missing limit takes the LimitRange default; a missing request takes the
    container's own limit if it has one, else the default request (the LimitRanger admission plugin's order)."""
    resources = resources or {}
    declared_requests, declared_limits = resources.get("requests") or {}, resources.get("limits") or {}
    defaulted = False
    values: dict[str, dict[str, float | None]] = {"requests": {}, "limits": {}}
    for kind, measure in (("cpu", cpu_cores), ("memory", memory_bytes)):
        limit = declared_limits.get(kind)
        if limit is None and defaults.limit and kind in defaults.limit:
            limit, defaulted = defaults.limit[kind], True
        request = declared_requests.get(kind)
        if request is None:
            if kind in declared_limits:
                request = declared_limits[kind]
            elif defaults.request and kind in defaults.request:
                request, defaulted = defaults.request[kind], True
        values["requests"][kind] = measure(str(request)) if request is not None else 0.0
        values["limits"][kind] = measure(str(limit)) if limit is not None else None
    return Container(workload, name, Size(**values["requests"]), Size(**values["limits"]), defaulted)


def _resources(sized) -> dict:
    """A settings `Resources` or a `kube.Sized` as a container's `resources`."""
    return {part: {"cpu": getattr(sized, part).cpu, "memory": getattr(sized, part).memory} for part in ("requests", "limits")}


# ---------------------------------------------------------------------------------------------------------
# From the settings


def footprint(settings: Settings) -> Footprint:
    """Every pod that runs all the time, from the settings alone (no engine, no cluster)."""
    lr = settings.limit_range
    defaults = Defaults(lr.default_request.model_dump(), lr.default_limit.model_dump()) if lr.enabled else Defaults()
    git = settings.git_sync.enabled

    def airflow(workload: str, section, sidecar: bool) -> Pod:
        containers = [container(workload, workload, _resources(section.resources), defaults)]
        if sidecar:
            containers.append(container(workload, "git-sync", _resources(kube.GIT_SYNC_RESOURCES), defaults))
        return Pod(workload, section.replicas, tuple(containers))

    pods = [
        airflow(kube.API_SERVER, settings.api_server, False),
        airflow(kube.SCHEDULER, settings.scheduler, False),
        airflow(kube.DAG_PROCESSOR, settings.dag_processor, git),
        airflow(kube.TRIGGERER, settings.triggerer, git),
    ]
    if settings.kerberos.enabled:
        renewer = container(kube.KERBEROS, kube.KERBEROS, _resources(settings.kerberos.renewer_resources), defaults)
        pods.append(Pod(kube.KERBEROS, 1, (renewer,)))
    pg = settings.postgres
    if pg.mode == "cnpg":
        instance = [container("postgres", "postgres", _resources(pg.resources), defaults)]
        if pg.backups.enabled:
            instance.append(container("postgres", BARMAN_SIDECAR, _resources(kube.BARMAN_SIDECAR_RESOURCES), defaults))
        pods.append(Pod("postgres", pg.instances, tuple(instance)))
        pooler = container("pgbouncer", "pgbouncer", _resources(pg.pooler_resources), defaults)
        pods.append(Pod("pgbouncer", pg.pooler_instances, (pooler,)))
    if settings.metrics.enabled:
        exporter = container(kube.STATSD_EXPORTER, kube.STATSD_EXPORTER, _resources(settings.metrics.exporter_resources), defaults)
        pods.append(Pod(kube.STATSD_EXPORTER, 1, (exporter,)))
    return Footprint(pods)


def monthly_cost(size: Size, settings: Settings) -> float:
    """Requested capacity priced per core-month and per GiB-month (`cost` setting)."""
    return round(size.cpu * settings.cost.cpu_per_core_month + size.memory / GIB * settings.cost.memory_per_gib_month, 2)


def stack_outputs(settings: Settings) -> dict[str, Any]:
    """`requested_cpu` (cores), `requested_memory` (GiB), `monthly_cost` (in `cost.currency`), everything counted."""
    requested = footprint(settings).requests
    return {
        "requested_cpu": round(requested.cpu, 3),
        "requested_memory": round(requested.memory / GIB, 3),
        "monthly_cost": monthly_cost(requested, settings),
        "cost_currency": settings.cost.currency,
    }


# ---------------------------------------------------------------------------------------------------------
# From rendered objects (YAML documents, or the inputs the mocks recorded)


def _count(value: Any, default: int = 1) -> int:
    return default if value is None else int(value)


def from_manifests(objects: Iterable[dict]) -> Footprint:
    objects = [o for o in objects if isinstance(o, dict) and o.get("kind")]
    defaults = Defaults()
    for obj in objects:
        if obj["kind"] == "LimitRange":
            for item in obj.get("spec", {}).get("limits", []):
                if item.get("type") == "Container":
                    defaults = Defaults(item.get("defaultRequest"), item.get("default"))
    pods: list[Pod] = []
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec") or {}
        component = (obj.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component")
        if kind in ("Deployment", "StatefulSet"):
            workload = component or obj["metadata"]["name"]
            template = spec["template"]["spec"]
            containers = tuple(container(workload, c["name"], c.get("resources"), defaults) for c in template["containers"])
            pods.append(Pod(workload, _count(spec.get("replicas")), containers))
        elif kind == "Cluster" and obj.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
            instance = [container("postgres", "postgres", spec.get("resources"), defaults)]
            if any(p.get("name") == "barman-cloud.cloudnative-pg.io" for p in spec.get("plugins") or []):
                store = next((o for o in objects if o["kind"] == "ObjectStore"), {})
                sidecar = (store.get("spec", {}).get("instanceSidecarConfiguration") or {}).get("resources")
                instance.append(container("postgres", BARMAN_SIDECAR, sidecar, defaults))
            pods.append(Pod("postgres", _count(spec.get("instances")), tuple(instance)))
        elif kind == "Pooler":
            declared = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
            own = next((c.get("resources") for c in declared if c.get("name") == "pgbouncer"), None)
            pods.append(Pod("pgbouncer", _count(spec.get("instances")), (container("pgbouncer", "pgbouncer", own, defaults),)))
    return Footprint(pods)


def describe(size: Size) -> str:
    return f"{size.cpu:.2f} vCPU / {size.memory / GIB:.2f} GiB"
