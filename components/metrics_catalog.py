"""What we measure and what we alert on, in one place: the StatsD settings Airflow gets, the statsd_exporter
mapping, and every alert with its runbook line. The Metrics component renders the ConfigMap and the
PrometheusRule from here, the alert table of docs/metrics-and-alerts.md is generated from here (scripts/gen-docs;
a test fails when it is stale), and the promtool tests load the rules rendered from here.

Why StatsD and not OpenTelemetry: Airflow's StatsD path sends UDP datagrams, so a missing or restarting exporter
never slows or breaks a scheduler loop; with `statsd_influxdb_enabled` every tag Airflow attaches (dag_id,
task_id, pool_name, status, ...) arrives as an InfluxDB-style tag that statsd_exporter turns into a Prometheus
label, and `legacy_names_on = False` stops Airflow from also sending the old names that bake those values into
the metric name. The official image carries the `statsd` client. OpenTelemetry would need a collector Deployment
(a much larger program, with its own config and exporter pipeline) only to end up at the same Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from components import kube

EXPORTER_VERSION = "v0.31.0"  # toolchain/statsd_exporter/go.mod builds the same version for the tests
EXPORTER_IMAGE = f"quay.io/prometheus/statsd-exporter:{EXPORTER_VERSION}"
STATSD_PORT = 9125
METRICS_PORT = 9102
COMPONENT = kube.STATSD_EXPORTER
# CloudNativePG's own exporters, in the PostgreSQL instance pods and the PgBouncer pods.
POSTGRES_EXPORTER_PORT = 9187
PGBOUNCER_EXPORTER_PORT = 9127
STATSD_PREFIX = "airflow"
# The image runs as `nobody`.
EXPORTER_UID = 65534


def airflow_metrics_env(host: str) -> dict[str, str]:
    """The `[metrics]` settings every Airflow process reads (task pods included: they emit ti.start/finish)."""
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": host,
        "AIRFLOW__METRICS__STATSD_PORT": str(STATSD_PORT),
        "AIRFLOW__METRICS__STATSD_PREFIX": STATSD_PREFIX,
        # Tags as labels: `ti.queued,dag_id=x,task_id=y:1|g` instead of `ti.queued.<queue>.x.y:1|g`.
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        "AIRFLOW__METRICS__LEGACY_NAMES_ON": "False",
    }


# Airflow's timers are milliseconds; statsd_exporter observes them in seconds. From a 10 ms scheduler query to a
# task of several hours.
_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400]

STATSD_MAPPING: dict = {
    "defaults": {
        "observer_type": "histogram",
        "histogram_options": {"buckets": _BUCKETS},
        # Per-task series (ti_finish{dag_id,task_id}) of DAGs that are gone must not live forever; everything the
        # alerts read is sent at least every few minutes while its process is alive.
        "ttl": "1h",
    },
    # The only names that still carry a variable with tags on: `{job_name}_start` and friends.
    "mappings": [
        {
            "match": rf"^{STATSD_PREFIX}\.(\w+)_{event}$",
            "match_type": "regex",
            "name": f"{STATSD_PREFIX}_job_{event}",
            "labels": {"job_name": "$1"},
        }
        for event in ("start", "end", "heartbeat_failure")
    ],
}


# ---------------------------------------------------------------------------------------------------------
# Alerts


@dataclass(frozen=True)
class RuleContext:
    """The facts of one instance its rules are written against."""

    namespace: str
    exporter_job: str  # the `job` label Prometheus gives the exporter's targets (the Service name)
    pooler: str | None = None  # the PgBouncer Pooler, when the stack runs CloudNativePG
    cluster: str | None = None  # the CNPG Cluster, when it takes backups
    pooler_max_client_conn: int = 1000
    quota: bool = True
    queued_minutes: int = 15
    backup_max_age_hours: int = 26
    runbook_url: str | None = None

    @property
    def airflow(self) -> str:
        return f'namespace="{self.namespace}", job="{self.exporter_job}"'

    @property
    def ns(self) -> str:
        return f'namespace="{self.namespace}"'


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    # Who exports the series: our statsd_exporter ("airflow"), kube-state-metrics, CloudNativePG, Prometheus.
    source: str
    summary: str
    runbook: str
    expr: Callable[[RuleContext], str]
    for_: Callable[[RuleContext], str]
    # Series the expression reads and the labels it relies on (the real-Airflow test checks the airflow ones).
    series: dict[str, tuple[str, ...]] = field(default_factory=dict)
    applies: Callable[[RuleContext], bool] = lambda c: True


def _const(value: str) -> Callable[[RuleContext], str]:
    return lambda c: value


def _heartbeat(metric: str, c: RuleContext) -> str:
    # No increase for 5 minutes, or no series at all (the process never started, or the exporter lost it).
    return f"sum(rate({metric}{{{c.airflow}}}[5m])) == 0 or absent({metric}{{{c.airflow}}})"


ALERTS: tuple[Alert, ...] = (
    Alert(
        "AirflowSchedulerHeartbeatLost", "critical", "airflow",
        "No scheduler of {{ $labels.namespace }} has heartbeated for 5 minutes: nothing is being scheduled.",
        "`kubectl -n <ns> get pods -l app.kubernetes.io/component=scheduler`; read the scheduler's log and "
        "`/health` on port 8974; a crash loop at start is usually the database (see the pooler alerts) or a "
        "failed migration Job; if the pod runs but does not heartbeat, restart it (`kubectl rollout restart`).",
        lambda c: _heartbeat("airflow_scheduler_heartbeat", c), _const("2m"),
        series={"airflow_scheduler_heartbeat": ()},
    ),
    Alert(
        "AirflowDagProcessorDown", "warning", "airflow",
        "The dag-processor of {{ $labels.namespace }} has not heartbeated for 5 minutes: DAG changes are not "
        "being picked up.",
        "Check the dag-processor pod and its git-sync sidecar (`kubectl -n <ns> logs deploy/<instance>-dag-processor "
        "--all-containers`); a DAG file that hangs at import shows as a long `dag_processing` timeout in the log.",
        lambda c: _heartbeat("airflow_dag_processor_heartbeat", c), _const("5m"),
        series={"airflow_dag_processor_heartbeat": ()},
    ),
    Alert(
        "AirflowTriggererDown", "warning", "airflow",
        "The triggerer of {{ $labels.namespace }} has not heartbeated for 5 minutes: deferred tasks will not resume.",
        "Check the triggerer pod (`kubectl -n <ns> logs deploy/<instance>-triggerer`); a trigger that blocks the "
        "event loop shows as `triggerer.blocked_main_thread`; restart the Deployment once the cause is fixed.",
        lambda c: _heartbeat("airflow_triggerer_heartbeat", c), _const("5m"),
        series={"airflow_triggerer_heartbeat": ()},
    ),
    Alert(
        "AirflowTasksStuckInQueued", "warning", "airflow",
        "Task {{ $labels.dag_id }}.{{ $labels.task_id }} has had instances in queued for the whole window: their "
        "pods do not start.",
        "Queued means the scheduler launched a pod that has not started the task: look at the pending pods alerts, "
        "`kubectl -n <ns> get pods -l dag_id=<dag>` and their events (quota, image pull, no node fits). Airflow "
        "itself requeues and then fails them after `executor.taskQueuedTimeoutSeconds`.",
        lambda c: f"min by (dag_id, task_id, queue) (min_over_time(airflow_ti_queued{{{c.airflow}}}[{c.queued_minutes}m])) > 0",
        _const("0m"),
        series={"airflow_ti_queued": ("dag_id", "task_id", "queue")},
    ),
    Alert(
        "AirflowTaskPodCreationRefused", "warning", "airflow",
        "The Kubernetes API refuses task pods of {{ $labels.namespace }} (status {{ $labels.status }}).",
        "403 is almost always the namespace's ResourceQuota (`kubectl -n <ns> describe resourcequota`): raise "
        "`quota.*` or lower `taskPod.resources`; 422 is an invalid pod (check the pod template ConfigMap); "
        "`error` is the API server being unreachable.",
        lambda c: f'sum by (namespace, status) (increase(airflow_kubernetes_executor_pod_creation_status{{{c.airflow}, status!="200"}}[10m])) > 0',
        _const("5m"),
        series={"airflow_kubernetes_executor_pod_creation_status": ("status",)},
    ),
    Alert(
        "AirflowPodPendingTooLong", "warning", "kube-state-metrics",
        "Pod {{ $labels.pod }} has been Pending for 10 minutes.",
        "`kubectl -n <ns> describe pod <pod>`: FailedScheduling (no node fits the requests, or a node selector or "
        "toleration is missing) or a volume that does not bind; task pods pending this long will be failed by "
        "the scheduler's queued timeout.",
        lambda c: f'max by (namespace, pod) (kube_pod_status_phase{{{c.ns}, phase="Pending"}}) == 1',
        _const("10m"),
        series={"kube_pod_status_phase": ("pod", "phase")},
    ),
    Alert(
        "AirflowPodImagePullFailing", "warning", "kube-state-metrics",
        "Container {{ $labels.container }} of {{ $labels.pod }} cannot pull its image ({{ $labels.reason }}).",
        "`kubectl -n <ns> describe pod <pod>`: a wrong `airflowImage`/`airflowVersion` tag, a registry that is "
        "down or a missing pull secret; fix the stack config and `pulumi up`.",
        lambda c: f'max by (namespace, pod, container, reason) (kube_pod_container_status_waiting_reason{{{c.ns}, reason=~"ErrImagePull|ImagePullBackOff|InvalidImageName"}}) == 1',
        _const("5m"),
        series={"kube_pod_container_status_waiting_reason": ("pod", "container", "reason")},
    ),
    Alert(
        "AirflowNamespaceQuotaNearlyFull", "warning", "kube-state-metrics",
        "{{ $labels.resource }} of the ResourceQuota in {{ $labels.namespace }} is over 90% used.",
        "New task pods will be refused soon: raise the stack's `quota.*` or find the tasks that hold the "
        "resources (`kubectl -n <ns> describe resourcequota`, `kubectl top pods`).",
        lambda c: f'max by (namespace, resource) (kube_resourcequota{{{c.ns}, type="used"}} / ignoring(type) kube_resourcequota{{{c.ns}, type="hard"}}) > 0.9',
        _const("15m"),
        series={"kube_resourcequota": ("resource", "type")},
        applies=lambda c: c.quota,
    ),
    Alert(
        "AirflowDatabasePoolerNearLimit", "warning", "cloudnative-pg",
        "PgBouncer {{ $labels.pod }} holds over 80% of its max_client_conn client connections.",
        "Find who holds connections (`SHOW CLIENTS` on the pooler, or too many api-server workers/task pods); "
        "raise `postgres.poolerMaxClientConn` or `postgres.poolerInstances`.",
        lambda c: f'sum by (namespace, pod) (cnpg_pgbouncer_lists_used_clients{{{c.ns}, pod=~"{c.pooler}-.*"}}) > {int(c.pooler_max_client_conn * 0.8)}',
        _const("5m"),
        series={"cnpg_pgbouncer_lists_used_clients": ("pod",)},
        applies=lambda c: c.pooler is not None,
    ),
    Alert(
        "AirflowDatabaseClientsWaiting", "warning", "cloudnative-pg",
        "Clients wait for a server connection on PgBouncer {{ $labels.pod }}: the pool is exhausted.",
        "Every server connection of `postgres.poolerDefaultPoolSize` is busy: look for long transactions "
        "(`pg_stat_activity`), then raise the pool size within the database's `max_connections`.",
        lambda c: f'sum by (namespace, pod) (cnpg_pgbouncer_pools_cl_waiting{{{c.ns}, pod=~"{c.pooler}-.*"}}) > 0',
        _const("5m"),
        series={"cnpg_pgbouncer_pools_cl_waiting": ("pod",)},
        applies=lambda c: c.pooler is not None,
    ),
    Alert(
        "AirflowDatabaseBackupFailing", "critical", "cloudnative-pg",
        "The latest base backup of {{ $labels.namespace }}'s database failed.",
        "`kubectl -n <ns> get backups` and `describe` the failed one; usually the S3 credential, the bucket or "
        "its endpoint/CA (the Barman ObjectStore `<instance>-pg-backups`); take one by hand with `kubectl cnpg "
        "backup <instance>-pg --method plugin --plugin-name barman-cloud.cloudnative-pg.io` once fixed.",
        lambda c: (
            f'max by (namespace) (barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp{{{c.ns}, pod=~"{c.cluster}-[0-9]+"}}) '
            f'> max by (namespace) (barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{c.ns}, pod=~"{c.cluster}-[0-9]+"}})'
        ),
        _const("5m"),
        series={
            "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp": ("pod",),
            "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp": ("pod",),
        },
        applies=lambda c: c.cluster is not None,
    ),
    Alert(
        "AirflowDatabaseBackupTooOld", "critical", "cloudnative-pg",
        "The newest base backup of {{ $labels.namespace }}'s database is older than the allowed age.",
        "The ScheduledBackup did not run or its backups fail (see AirflowDatabaseBackupFailing): `kubectl -n <ns> "
        "get scheduledbackups,backups`; check the CNPG operator and the barman-cloud plugin are running.",
        lambda c: (
            f'time() - max by (namespace) (barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{c.ns}, pod=~"{c.cluster}-[0-9]+"}}) '
            f"> {c.backup_max_age_hours * 3600}"
        ),
        _const("15m"),
        series={"barman_cloud_cloudnative_pg_io_last_available_backup_timestamp": ("pod",)},
        applies=lambda c: c.cluster is not None,
    ),
    Alert(
        "AirflowDagImportErrors", "warning", "airflow",
        "{{ $value }} DAG file(s) of {{ $labels.namespace }} fail to import.",
        "The UI's import errors list names the files; tell the owning team. The DAGs in them are not scheduled "
        "until fixed.",
        lambda c: f"max by (namespace) (airflow_dag_processing_import_errors{{{c.airflow}}}) > 0",
        _const("15m"),
        series={"airflow_dag_processing_import_errors": ()},
    ),
    Alert(
        "AirflowMetricsExporterDown", "warning", "prometheus",
        "Prometheus cannot scrape the statsd exporter of {{ $labels.namespace }}: the Airflow alerts are blind.",
        "`kubectl -n <ns> get pods -l app.kubernetes.io/component=statsd-exporter`; check the ServiceMonitor "
        "matches the Prometheus's selectors (`metrics.monitorLabels`) and no NetworkPolicy blocks port 9102.",
        lambda c: f'absent(up{{{c.airflow}}} == 1)',
        _const("5m"),
        series={"up": ()},
    ),
)

# What an on-call person would want and cannot have, and why (also in docs/metrics-and-alerts.md).
NOT_VISIBLE = {
    "task log upload failing": (
        "Airflow 3.3 uploads a task's log from the task pod's supervisor after the task ends and emits no metric "
        "for it (`task_runner.py` and the S3 handler only log the error in the pod's output); a missing log shows "
        "in the UI as 'Could not read remote logs'. Watch the cluster's log pipeline for `Failed to upload` from "
        "task pods instead."
    ),
}


def rule_groups(context: RuleContext) -> list[dict]:
    """The `spec.groups` of the instance's PrometheusRule (also a promtool rule file's top level)."""
    rules = []
    for alert in ALERTS:
        if not alert.applies(context):
            continue
        # Not every expression keeps a namespace label (sum(), absent()); the rules are per instance anyway.
        summary = alert.summary.replace("{{ $labels.namespace }}", context.namespace)
        annotations = {"summary": summary, "runbook": alert.runbook}
        if context.runbook_url:
            annotations["runbook_url"] = f"{context.runbook_url}#{alert.name.lower()}"
        rule = {"alert": alert.name, "expr": alert.expr(context)}
        if alert.for_(context) != "0m":
            rule["for"] = alert.for_(context)
        rule["labels"] = {"severity": alert.severity, "namespace": context.namespace}
        rule["annotations"] = annotations
        rules.append(rule)
    return [{"name": f"airflow-platform/{context.namespace}", "rules": rules}]


def alerts_markdown() -> str:
    rows = ["| alert | severity | source | fires when | runbook |", "| --- | --- | --- | --- | --- |"]
    example = RuleContext(namespace="airflow-x", exporter_job="x-statsd-exporter", pooler="x-pgbouncer", cluster="x-pg")
    for alert in ALERTS:
        when = alert.summary.replace("{{ $labels.namespace }}", "the instance").replace("|", "/")
        for label in ("pod", "container", "reason", "status", "resource", "dag_id", "task_id"):
            when = when.replace("{{ $labels.%s }}" % label, f"<{label}>")
        when = when.replace("{{ $value }}", "N")
        during = alert.for_(example)
        during = f"for {during}" if during != "0m" else f"over {example.queued_minutes}m, by default"
        rows.append(
            f"| `{alert.name}` | {alert.severity} | {alert.source} | {when} ({during}) | "
            f"{alert.runbook.replace('|', '/')} |"
        )
    for what, why in NOT_VISIBLE.items():
        rows.append(f"| ({what}) | — | not visible | — | {why} |")
    return "\n".join(rows)

