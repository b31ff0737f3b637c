"""Metrics: the instance's statsd_exporter, and what Prometheus needs to scrape it and alert on it.

Every Airflow process of the instance (task pods included) sends StatsD over UDP to the exporter's Service; the
exporter turns the tagged StatsD lines into labelled Prometheus series with the mapping in
`components/metrics_catalog.py`, which is also where the alert rules live. With `metrics.prometheusOperator` on,
a ServiceMonitor scrapes the exporter, PodMonitors scrape CloudNativePG's own exporters (database and PgBouncer,
which the pooler and backup alerts read), and a PrometheusRule carries the alerts.

One exporter replica on purpose: StatsD gauges are last-value-wins, so two replicas behind one Service would each
hold a different half of the truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import kube, metrics_catalog
from components.component_base import type_token
from components.settings import Settings
from components.settings.namespace_sections import MetricsSettings, PlacementSettings
from components.metrics_catalog import (
    EXPORTER_UID,
    METRICS_PORT,
    STATSD_MAPPING,
    STATSD_PORT,
    RuleContext,
    rule_groups,
)

COMPONENT = metrics_catalog.COMPONENT
MONITORING = "monitoring.coreos.com/v1"
MAPPING_DIR = "/etc/statsd-exporter"


@dataclass
class MetricsArgs:
    instance: str
    namespace: pulumi.Input[str]
    settings: MetricsSettings
    placement: PlacementSettings
    # What the alert rules are written against (namespace, pooler, backups, thresholds).
    rules: RuleContext
    team: str | None = None
    # CloudNativePG objects whose built-in exporters to scrape (None: an external database).
    cnpg_cluster: str | None = None
    cnpg_pooler: str | None = None
    # Off where the cluster's CNI enforces no NetworkPolicy (`network.enabled`), like every other policy.
    network_policy: bool = True

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        namespace: pulumi.Input[str],
        cnpg_cluster: str | None = None,
        cnpg_pooler: str | None = None,
    ) -> MetricsArgs:
        """The section Metrics reads, with the names PostgresCluster gave its Cluster and Pooler (None for an
        external database)."""
        cluster, pooler = cnpg_cluster, cnpg_pooler
        rules = RuleContext(
            namespace=settings.kubernetes_namespace,
            exporter_job=settings.name(COMPONENT),
            pooler=pooler,
            cluster=cluster if settings.postgres.backups.enabled else None,
            pooler_max_client_conn=settings.postgres.pooler_max_client_conn,
            quota=settings.quota.enabled,
            # Half the time Airflow waits before it requeues a stuck task, so on-call hears of it first.
            queued_minutes=max(5, min(15, settings.executor.task_queued_timeout_seconds // 120)),
            backup_max_age_hours=settings.metrics.backup_max_age_hours,
            runbook_url=settings.metrics.runbook_url,
        )
        return cls(
            instance=settings.instance,
            namespace=namespace,
            settings=settings.metrics,
            placement=settings.placement,
            rules=rules,
            team=settings.team,
            cnpg_cluster=cluster,
            cnpg_pooler=pooler,
            network_policy=settings.network.enabled,
        )


def exporter_host(instance: str, namespace: str) -> str:
    """Where Airflow sends StatsD: the exporter's Service."""
    return f"{kube.resource_name(instance, COMPONENT)}.{namespace}.svc"


def mapping_yaml() -> str:
    return yaml.safe_dump(STATSD_MAPPING, sort_keys=False)


class Metrics(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("Metrics"), name, None, opts)
        self._args = args
        self._name = name
        self.object_name = kube.resource_name(args.instance, COMPONENT)

        mapping = mapping_yaml()
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-statsd-mapping", metadata=self._meta(), data={"mapping.yaml": mapping}, opts=self._opts()
        )
        # Its own account with no token and no Role: a namespace's `default` account is no one's to borrow (and
        # without a controller manager it does not even exist).
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-statsd-exporter", metadata=self._meta(), automount_service_account_token=False, opts=self._opts()
        )
        self.deployment = self._deployment(hashlib.sha256(mapping.encode()).hexdigest())
        self.service = self._service()
        self.network_policy = self._network_policy() if args.network_policy else None

        self.service_monitor = self.pod_monitors = self.prometheus_rule = None
        if args.settings.prometheus_operator:
            self.service_monitor = self._service_monitor()
            self.pod_monitors = [
                self._pod_monitor(role, label, value)
                for role, label, value in (
                    ("pg", kube.CNPG_CLUSTER_LABEL, args.cnpg_cluster),
                    ("pgbouncer", kube.CNPG_POOLER_LABEL, args.cnpg_pooler),
                )
                if value is not None
            ]
            self.prometheus_rule = self._prometheus_rule()
        self.register_outputs({"service": self.service.metadata.name})

    def _opts(self, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **extra)

    def _meta(self, name: str | None = None, for_prometheus: bool = False) -> k8s.meta.v1.ObjectMetaArgs:
        args = self._args
        meta = kube.object_meta(args.instance, COMPONENT, args.namespace, name or self.object_name)
        if for_prometheus and args.settings.monitor_labels:
            # Monitors and rules carry the labels the cluster's Prometheus selects them by.
            meta = k8s.meta.v1.ObjectMetaArgs(
                name=meta.name, namespace=meta.namespace, labels={**meta.labels, **args.settings.monitor_labels}
            )
        return meta

    def _deployment(self, checksum: str) -> k8s.apps.v1.Deployment:
        args, settings = self._args, self._args.settings
        labels = kube.labels(args.instance, COMPONENT, {"airflow-platform/team": args.team} if args.team else None)
        http = k8s.core.v1.HTTPGetActionArgs(path="/-/healthy", port="metrics")
        container = k8s.core.v1.ContainerArgs(
            name=COMPONENT,
            image=settings.exporter_image,
            args=[
                f"--statsd.mapping-config={MAPPING_DIR}/mapping.yaml",
                f"--statsd.listen-udp=:{STATSD_PORT}",
                # Airflow sends UDP only; an open TCP listener would be one more thing to police.
                "--statsd.listen-tcp=",
                f"--web.listen-address=:{METRICS_PORT}",
            ],
            ports=[
                k8s.core.v1.ContainerPortArgs(name="statsd", container_port=STATSD_PORT, protocol="UDP"),
                k8s.core.v1.ContainerPortArgs(name="metrics", container_port=METRICS_PORT, protocol="TCP"),
            ],
            resources=kube.resource_requirements(settings.exporter_resources),
            security_context=kube.restricted_container_security_context(),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="mapping", mount_path=MAPPING_DIR, read_only=True)],
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/-/ready", port="metrics"), period_seconds=10
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(http_get=http, period_seconds=30, failure_threshold=3),
        )
        return k8s.apps.v1.Deployment(
            f"{self._name}-statsd-exporter",
            metadata=self._meta(),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector_labels(args.instance, COMPONENT)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    # The exporter reads its mapping at start: a changed mapping rolls the pod.
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={"checksum/config": checksum}),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=self.service_account.metadata.name,
                        automount_service_account_token=False,
                        security_context=kube.restricted_pod_security_context(
                            run_as_user=EXPORTER_UID, run_as_group=EXPORTER_UID, fs_group=EXPORTER_UID
                        ),
                        containers=[container],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="mapping",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=self.object_name),
                            )
                        ],
                        node_selector=dict(args.placement.node_selector) or None,
                        tolerations=kube.tolerations(args.placement) or None,
                    ),
                ),
            ),
            opts=self._opts(depends_on=[self.config_map]),
        )

    def _service(self) -> k8s.core.v1.Service:
        return k8s.core.v1.Service(
            f"{self._name}-statsd-exporter",
            metadata=self._meta(),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=kube.selector_labels(self._args.instance, COMPONENT),
                ports=[
                    k8s.core.v1.ServicePortArgs(name="statsd", port=STATSD_PORT, target_port="statsd", protocol="UDP"),
                    k8s.core.v1.ServicePortArgs(name="metrics", port=METRICS_PORT, target_port="metrics", protocol="TCP"),
                ],
            ),
            opts=self._opts(),
        )

    def _network_policy(self) -> k8s.networking.v1.NetworkPolicy:
        """StatsD only from this instance's pods; the metrics port from wherever Prometheus runs, which is
        any namespace but the instance's own."""
        instance = self._args.instance
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-statsd-exporter",
            metadata=self._meta(),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector_labels(instance, COMPONENT)),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={"app.kubernetes.io/instance": instance}
                                )
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=STATSD_PORT, protocol="UDP")],
                    ),
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                namespace_selector=kube.other_namespaces(self._args.namespace)
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=METRICS_PORT, protocol="TCP")],
                    ),
                ],
            ),
            opts=self._opts(),
        )

    def _service_monitor(self) -> k8s.apiextensions.CustomResource:
        args = self._args
        return k8s.apiextensions.CustomResource(
            f"{self._name}-statsd-exporter",
            api_version=MONITORING,
            kind="ServiceMonitor",
            metadata=self._meta(for_prometheus=True),
            spec={
                # The `job` label of the series is the Service's name: the rules select on it.
                "selector": {"matchLabels": kube.selector_labels(args.instance, COMPONENT)},
                "endpoints": [{"port": "metrics", "interval": args.settings.scrape_interval}],
            },
            opts=self._opts(),
        )

    def _pod_monitor(self, role: str, label: str, value: str) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-{role}-metrics",
            api_version=MONITORING,
            kind="PodMonitor",
            metadata=self._meta(kube.resource_name(self._args.instance, role), for_prometheus=True),
            spec={
                "selector": {"matchLabels": {label: value}},
                "podMetricsEndpoints": [{"port": "metrics", "interval": self._args.settings.scrape_interval}],
            },
            opts=self._opts(),
        )

    def _prometheus_rule(self) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-alerts",
            api_version=MONITORING,
            kind="PrometheusRule",
            metadata=self._meta(kube.resource_name(self._args.instance, "alerts"), for_prometheus=True),
            spec={"groups": rule_groups(self._args.rules)},
            opts=self._opts(),
        )
