"""What an instance needs from its namespace's ResourceQuota: the control plane's own pods, the pods a
rolling update adds for a while, and a stated number of concurrent task pods.

A quota sized by guesswork refuses pods at the worst moment: a task pod refused for "exceeded quota" waits
(the executor retries it, `AIRFLOW__KUBERNETES_EXECUTOR__TASK_PUBLISH_MAX_RETRIES`), but a rolling update
whose surge pod is refused stalls until someone notices. Unset quota amounts are computed here; explicit ones
are checked against what the control plane plus one task pod needs.

Every number comes from the settings and the per-container sizes in `components.kube`, the same ones the
components put on their containers; a test compares this sum with the pods the program renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components import kube
from components.settings.fields import SettingsFields
from components.settings.rules import cpu_cores, memory_bytes

MEASURES = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")


@dataclass(frozen=True)
class Need:
    """Cores, bytes and pods, for requests and limits."""

    requests_cpu: float = 0.0
    requests_memory: float = 0.0
    limits_cpu: float = 0.0
    limits_memory: float = 0.0
    pods: int = 0

    def __add__(self, other: Need) -> Need:
        return Need(*(a + b for a, b in zip(self._values(), other._values())))

    def __mul__(self, count: int) -> Need:
        return Need(*(value * count for value in self._values()))

    def _values(self) -> tuple:
        return (self.requests_cpu, self.requests_memory, self.limits_cpu, self.limits_memory, self.pods)

    def measure(self, name: str) -> float:
        return getattr(self, name.replace(".", "_"))


def _container(resources) -> Need:
    return Need(
        cpu_cores(resources.requests.cpu),
        memory_bytes(resources.requests.memory),
        cpu_cores(resources.limits.cpu),
        memory_bytes(resources.limits.memory),
    )


def pod(containers: list, init_containers: list = ()) -> Need:
    """A pod's effective need, as the scheduler and the quota count it: the larger of its containers' sum and
    its largest init container, per measure."""
    total = sum((_container(c) for c in containers), Need())
    for init in init_containers:
        one = _container(init)
        total = Need(*(max(a, b) for a, b in zip(total._values()[:4], one._values()[:4])), 0)
    return Need(*total._values()[:4], 1)


def task_pod(s: SettingsFields) -> Need:
    init = [kube.GIT_SYNC_RESOURCES] if s.git_sync.enabled else []
    return pod([s.task_pod.resources], init)


def control_plane(s: SettingsFields) -> Need:
    """Every pod of the instance except task pods, with one surge pod per Deployment (a rolling update) and
    the migration and clean-up jobs (an upgrade can meet the nightly clean-up)."""
    wait = s.triggerer.resources  # the wait-for-migrations init container
    git = [kube.GIT_SYNC_RESOURCES] if s.git_sync.enabled else []
    api_init = [wait] + ([] if s.auth.mode in ("oidc", "ldap") else [kube.COPY_FILE_RESOURCES])
    deployments = [
        (s.api_server.replicas, pod([s.api_server.resources], api_init)),
        (s.scheduler.replicas, pod([s.scheduler.resources], [wait])),
        (s.dag_processor.replicas, pod([s.dag_processor.resources, *git], [wait])),
        (s.triggerer.replicas, pod([s.triggerer.resources, *git], [wait])),
    ]
    if s.kerberos.enabled:
        deployments.append((1, pod([s.kerberos.renewer_resources])))
    if s.postgres.mode == "cnpg":
        deployments.append((s.postgres.pooler_instances, pod([s.postgres.pooler_resources])))
    if s.metrics.enabled:
        deployments.append((1, pod([s.metrics.exporter_resources])))
    total = sum((one * (replicas + 1) for replicas, one in deployments), Need())
    if s.postgres.mode == "cnpg":
        sidecar = [kube.BARMAN_SIDECAR_RESOURCES] if s.postgres.backups.enabled else []
        total += pod([s.postgres.resources, *sidecar]) * s.postgres.instances
    total += pod([s.scheduler.resources])  # the migration Job
    if s.db_cleanup.enabled:
        total += pod([s.triggerer.resources])
    return total


def _quantity(measure: str, value: float) -> str:
    if measure.endswith("cpu"):
        return f"{math.ceil(round(value * 1000, 6))}m"
    return f"{math.ceil(value / 2**20)}Mi"


def quota_hard(s: SettingsFields) -> dict[str, str]:
    """The ResourceQuota's `hard` amounts: the stack's own, or the control plane plus `concurrentTasks`."""
    q = s.quota
    need = control_plane(s) + task_pod(s) * q.concurrent_tasks
    given = {"requests.cpu": q.requests_cpu, "requests.memory": q.requests_memory,
             "limits.cpu": q.limits_cpu, "limits.memory": q.limits_memory}
    hard = {m: given[m] if given[m] is not None else _quantity(m, need.measure(m)) for m in MEASURES}
    hard["pods"] = str(q.pods if q.pods is not None else need.pods)
    hard["persistentvolumeclaims"] = str(q.persistent_volume_claims)
    return hard


def _amount(measure: str, text: str) -> float:
    return cpu_cores(text) if measure.endswith("cpu") else memory_bytes(text)


def task_pods_that_fit(s: SettingsFields) -> int:
    """How many task pods run at once beside the control plane before the quota refuses the next."""
    hard = quota_hard(s)
    base, task = control_plane(s), task_pod(s)
    fits = [int(hard["pods"]) - base.pods]
    for m in MEASURES:
        room = _amount(m, hard[m]) - base.measure(m)
        if task.measure(m) > 0:
            fits.append(math.floor(room / task.measure(m) + 1e-9))
        elif room < 0:  # a task pod that asks for none of it still needs the control plane to fit
            fits.append(0)
    return max(min(fits), 0)


def quota_problems(s: SettingsFields) -> list[str]:
    if task_pods_that_fit(s) >= 1:
        return []
    hard = quota_hard(s)
    need = control_plane(s) + task_pod(s)
    short = [f"{m} {hard[m]} < {_quantity(m, need.measure(m))}" for m in MEASURES if _amount(m, hard[m]) < need.measure(m)]
    if int(hard["pods"]) < need.pods:
        short.append(f"pods {hard['pods']} < {need.pods}")
    return [f"cannot hold the control plane (with a rolling update's surge pods) plus one task pod: {'; '.join(short)}"]


def capacity_table(stacks: dict[str, SettingsFields]) -> str:
    """The table of docs/capacity-and-cost.md: what each committed stack's control plane takes and how many tasks
    fit beside it."""
    rows = [
        "| stack | control plane requests (CPU / memory) | quota requests (CPU / memory) | task pod requests | concurrent task pods |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in stacks.items():
        base, task, hard = control_plane(s), task_pod(s), quota_hard(s)
        rows.append(
            f"| `{name}` | {_quantity('cpu', base.requests_cpu)} / {_quantity('memory', base.requests_memory)} "
            f"| {hard['requests.cpu']} / {hard['requests.memory']} "
            f"| {_quantity('cpu', task.requests_cpu)} / {_quantity('memory', task.requests_memory)} "
            f"| {task_pods_that_fit(s)} |"
        )
    return "\n".join(rows)

