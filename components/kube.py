"""The Kubernetes facts every component shares, each in one place: names, labels, security contexts,
resources and the Airflow image's user.

Components build their objects from these helpers so that a Deployment, a Job and the task pod template
cannot drift apart (the official chart's templates famously do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

PROJECT = "airflow-platform"

# The official image runs as uid 50000 and requires gid 0 (its entrypoint refuses any other group).
AIRFLOW_UID = 50000
AIRFLOW_GID = 0
AIRFLOW_HOME = "/opt/airflow"

API_SERVER_PORT = 8080
SCHEDULER_HEALTH_PORT = 8974
POSTGRES_PORT = 5432
# git-sync's HTTP endpoint: `/` answers 200 once the repository has synced, the probes' target.
GIT_SYNC_HTTP_PORT = 8162
DNS_PORT = 53
# What CloudNativePG's operator reaches on an instance pod besides PostgreSQL: the instance manager's status.
CNPG_STATUS_PORT = 8000

# The labels CloudNativePG puts on the pods it makes (the instances, their jobs and the pooler's pods).
CNPG_CLUSTER_LABEL = "cnpg.io/cluster"
CNPG_POD_ROLE_LABEL = "cnpg.io/podRole"
CNPG_POOLER_LABEL = "cnpg.io/poolerName"
# The label every namespace carries with its own name (Kubernetes >= 1.22).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

MAX_NAME_LENGTH = 63
# A CronJob's name is capped lower because the controller appends an 11-character suffix to its Jobs.
MAX_CRONJOB_NAME_LENGTH = 52

# The instance's components that run pods: each names its Deployment or Job, its ServiceAccount (WorkerRBAC makes
# one each) and its pods' `app.kubernetes.io/component` label after itself.
SCHEDULER = "scheduler"
API_SERVER = "api-server"
DAG_PROCESSOR = "dag-processor"
TRIGGERER = "triggerer"
TASK = "task"
MIGRATE = "migrate"
KERBEROS = "kerberos"
STATSD_EXPORTER = "statsd-exporter"
# The clean-up CronJob's pods: they run as MIGRATE, the account that owns schema-level work.
DB_CLEANUP = "db-cleanup"
AIRFLOW_COMPONENTS = (SCHEDULER, API_SERVER, DAG_PROCESSOR, TRIGGERER, TASK, MIGRATE)

# Every role a component names an object after. Settings validation checks the instance name against the
# longest of these, so a name that is too long is rejected before anything is created.
ROLES = (
    API_SERVER,
    SCHEDULER,
    DAG_PROCESSOR,
    TRIGGERER,
    TASK,
    MIGRATE,
    KERBEROS,
    "keytab",
    "api-keytab",
    "api-plugins",
    "krb5-conf",
    "krb5-ccache",
    "config",
    "secrets",
    "jwt",
    "api-key",
    "closed",
    "connections",
    "pod-template",
    "webserver-config",
    "git-sync",
    "s3",
    "pg",
    "db-credentials",
    "pg-s3",
    "pg-restore",
    "pg-backups",
    "pg-daily",
    "pgbouncer",
    "quota",
    "limits",
    # NetworkPolicies (components.network_policies)
    "deny-ingress",
    "api-from-tasks",
    "api-from-ingress",
    "pool-from-airflow",
    "pg-from-pool",
    "pg-from-cluster",
    "pg-from-operator",
    "task-egress",
    "pg-metrics",
    "pool-metrics",
    STATSD_EXPORTER,
    "alerts",
)
CRONJOB_ROLES = ("cleanup",)
# CloudNativePG derives Services, Secrets and pods from the Cluster name (`<instance>-pg`); the longest
# suffix it adds is `-replication`.
CNPG_DERIVED_SUFFIXES = ("-replication", "-superuser", "-server", "-rw", "-ro", "-r", "-app", "-ca", "-1")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def resource_name(instance: str, role: str) -> str:
    """The Kubernetes name of the object that plays `role` in `instance`: `<instance>-<role>`."""
    return f"{instance}-{role}"


def migration_job_name(instance: str, airflow_version: str) -> str:
    # One Job per Airflow version: a Job's pod template is immutable, and an upgrade must migrate once.
    return resource_name(instance, "migrate-" + airflow_version.replace(".", "-").lower())


def all_derived_names(instance: str, airflow_version: str) -> list[tuple[str, int]]:
    """Every name this instance will create, with the limit that applies to it."""
    names = [(resource_name(instance, role), MAX_NAME_LENGTH) for role in ROLES]
    names += [(resource_name(instance, role), MAX_CRONJOB_NAME_LENGTH) for role in CRONJOB_ROLES]
    names += [(resource_name(instance, "pg") + suffix, MAX_NAME_LENGTH) for suffix in CNPG_DERIVED_SUFFIXES]
    names.append((migration_job_name(instance, airflow_version), MAX_NAME_LENGTH))
    return names


def name_length_problems(instance: str, airflow_version: str) -> list[str]:
    too_long = [(name, limit) for name, limit in all_derived_names(instance, airflow_version) if len(name) > limit]
    if not too_long:
        return []
    name, limit = max(too_long, key=lambda item: len(item[0]) - item[1])
    allowed = len(instance) - (len(name) - limit)
    return [
        f"derived name '{name}' would be {len(name)} characters (Kubernetes allows {limit}); "
        f"use an instance name of at most {allowed} characters"
    ]


def is_dns1123_label(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and bool(_DNS1123_LABEL.match(value))


def labels(instance: str, component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The recommended `app.kubernetes.io/*` labels for an object of `component` in `instance`."""
    return {
        **selector_labels(instance, component),
        "app.kubernetes.io/part-of": PROJECT,
        "app.kubernetes.io/managed-by": "pulumi",
        **(extra or {}),
    }


def selector_labels(instance: str, component: str) -> dict[str, str]:
    """The stable subset of `labels`: selectors are immutable, so nothing that may change goes in here."""
    return {
        "app.kubernetes.io/name": "airflow",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


def object_meta(
    instance: str,
    component: str,
    namespace: str,
    name: str,
    annotations: dict[str, str] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=namespace, labels=labels(instance, component), annotations=annotations
    )


def disruption_budget(
    name: str, metadata: k8s.meta.v1.ObjectMetaArgs, match_labels: dict[str, str], opts: pulumi.ResourceOptions
) -> k8s.policy.v1.PodDisruptionBudget:
    """At most one of the pods `match_labels` selects is evicted at a time: replicas that one node drain can take
    down together are one replica. Only for more than one replica, or the budget blocks every drain."""
    return k8s.policy.v1.PodDisruptionBudget(
        name,
        metadata=metadata,
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match_labels)
        ),
        opts=opts,
    )


def other_namespaces(namespace) -> k8s.meta.v1.LabelSelectorArgs:
    """Every namespace but the instance's own: where Prometheus may scrape from. Task pods, which run user code
    in the instance's namespace and may leave it through an ipBlock, must not read the exporters."""
    return k8s.meta.v1.LabelSelectorArgs(match_expressions=[
        k8s.meta.v1.LabelSelectorRequirementArgs(key=NAMESPACE_NAME_LABEL, operator="NotIn", values=[namespace])
    ])


def restricted_container_security_context(read_only_root_filesystem: bool = True) -> k8s.core.v1.SecurityContextArgs:
    """What Pod Security `restricted` demands of every container, plus a read-only root where it works."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        run_as_non_root=True,
        read_only_root_filesystem=read_only_root_filesystem,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_pod_security_context(
    run_as_user: int = AIRFLOW_UID, run_as_group: int = AIRFLOW_GID, fs_group: int = AIRFLOW_GID
) -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        fs_group=fs_group,
        run_as_non_root=True,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


@dataclass(frozen=True)
class _Quantities:
    cpu: str
    memory: str


@dataclass(frozen=True)
class Sized:
    """The shape of a settings `Resources`, for containers whose size is ours rather than the stack's."""

    requests: _Quantities
    limits: _Quantities


def sized(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Sized:
    return Sized(_Quantities(cpu, memory), _Quantities(cpu_limit, memory_limit))


GIT_SYNC_RESOURCES = sized("10m", "64Mi", "200m", "256Mi")
COPY_FILE_RESOURCES = sized("10m", "16Mi", "100m", "64Mi")
# The Barman Cloud plugin's sidecar in every PostgreSQL pod; unsized, the LimitRange's defaults would apply.
BARMAN_SIDECAR_RESOURCES = sized("50m", "128Mi", "500m", "512Mi")

# Ephemeral storage (request, limit): without a limit one pod filling its node's disk evicts its neighbours.
# An Airflow container writes /tmp (1Gi) and its logs (2Gi) into emptyDirs, which count against the pod.
AIRFLOW_EPHEMERAL_STORAGE = ("256Mi", "4Gi")
SMALL_EPHEMERAL_STORAGE = ("16Mi", "128Mi")
# git-sync checks the repository out into the `dags` emptyDir, capped at DAGS_VOLUME_LIMIT.
DAGS_VOLUME_LIMIT = "2Gi"
GIT_SYNC_EPHEMERAL_STORAGE = ("64Mi", "3Gi")


def resource_requirements(resources, ephemeral_storage=AIRFLOW_EPHEMERAL_STORAGE) -> k8s.core.v1.ResourceRequirementsArgs:
    """Requests and limits from a settings `Resources`, with ephemeral storage. Both are always set: a pod is
    scheduled on what it asks for, and a container over its memory limit is the one killed, not a neighbour."""
    request, limit = ephemeral_storage
    return k8s.core.v1.ResourceRequirementsArgs(
        requests={"cpu": resources.requests.cpu, "memory": resources.requests.memory, "ephemeral-storage": request},
        limits={"cpu": resources.limits.cpu, "memory": resources.limits.memory, "ephemeral-storage": limit},
    )


# Where every Airflow process reads `airflow.cfg` from: nowhere. Before it runs any subcommand but `version`, the
# `airflow` command of Airflow 3.3 writes a default airflow.cfg to AIRFLOW_CONFIG (default
# $AIRFLOW_HOME/airflow.cfg) unless that path exists (airflow/__main__.py calls
# configuration.write_default_airflow_configuration_if_needed). The official image ships no airflow.cfg and our root
# filesystem is read-only, so without this every Airflow container dies at start with `OSError: [Errno 30] Read-only
# file system: '/opt/airflow/airflow.cfg'`. Every setting of ours is an AIRFLOW__* variable and the file has nothing
# to add, so it is /dev/null: present in every container (the OCI runtime creates it), not a directory, empty when
# read. Airflow reads it as an empty file and writes nothing.
AIRFLOW_CONFIG_FILE = "/dev/null"


def airflow_env() -> list[k8s.core.v1.EnvVarArgs]:
    """The environment every container that runs Airflow code needs besides Airflow's settings (the instance's
    ConfigMap, or the Kerberos renewer's own variables): see AIRFLOW_CONFIG_FILE."""
    return [k8s.core.v1.EnvVarArgs(name="AIRFLOW_CONFIG", value=AIRFLOW_CONFIG_FILE)]


def scratch_volumes() -> tuple[list[k8s.core.v1.VolumeArgs], list[k8s.core.v1.VolumeMountArgs]]:
    """The writable paths an Airflow process needs under a read-only root filesystem: /tmp and its logs."""
    volumes = [
        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi")),
        k8s.core.v1.VolumeArgs(name="logs", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="2Gi")),
    ]
    mounts = [
        k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        k8s.core.v1.VolumeMountArgs(name="logs", mount_path=f"{AIRFLOW_HOME}/logs"),
    ]
    return volumes, mounts


def tolerations(placement) -> list[k8s.core.v1.TolerationArgs]:
    return [k8s.core.v1.TolerationArgs(**toleration.model_dump(exclude_none=True)) for toleration in placement.tolerations]


def to_manifest(value):
    """A typed `*Args` tree as the plain dict Kubernetes reads, for manifests that travel as data (the task
    pod template in a ConfigMap). Values must already be plain: an Output cannot be written into a file."""
    import pulumi._types as pulumi_types

    if pulumi_types.is_input_type(type(value)):
        return {key: to_manifest(item) for key, item in pulumi_types.input_type_to_dict(value).items()}
    if isinstance(value, dict):
        return {key: to_manifest(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [to_manifest(item) for item in value]
    return value
