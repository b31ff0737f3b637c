"""NetworkPolicies: the instance namespace denies all ingress, and each allowed path is one named policy.

    <instance>-deny-ingress              nothing reaches any pod unless a policy below says so
    <instance>-api-from-tasks            task pods → api-server:8080 (the Execution API)
    <instance>-api-from-ingress          ingress controller's namespace → api-server:8080 (if ingress is on)
    <instance>-pool-from-airflow         Airflow components (not task pods) → PgBouncer:5432
    <instance>-pg-from-pool              PgBouncer → PostgreSQL:5432
    <instance>-pg-from-cluster           the cluster's own pods (replicas, join and backup jobs) → PostgreSQL:5432
    <instance>-pg-from-operator          CloudNativePG's operator → PostgreSQL:5432 and its status port 8000
    <instance>-task-egress               task pods → DNS, the api-server, the StatsD exporter (if metrics are on),
                                         the S3 endpoint pods are told (`s3.podEndpointUrl`, where a policy
                                         can name it), and `network.taskPodEgressCidrs`
    <instance>-pg-metrics                any other namespace (Prometheus) → CloudNativePG's exporters on
                                         PostgreSQL:9187 and PgBouncer:9127 (if the Prometheus operator is on)

Task pods run user code, so they are also the only pods whose egress is limited: by default they can reach
anything outside the cluster except the cloud metadata service (which hands out the node's credentials). They
always reach the S3 endpoint they upload their logs to, whatever `taskPodEgressCidrs` says, when a policy can
name it: an IP address, or a Service of the cluster (`<service>.<namespace>.svc[.<cluster domain>]`, whose
namespace the rule names, any port: a Service's port need not be its pods'). A host name outside the cluster
(AWS, an RGW behind DNS) can only be let through by `taskPodEgressCidrs`: NetworkPolicy knows no names.
Probes come from the kubelet on the node, which the common CNIs (Calico, Cilium) let through regardless.
The policies do nothing unless the cluster's CNI enforces NetworkPolicy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components import kube, metrics_catalog
from components.component_base import type_token
from components.kube import API_SERVER, DAG_PROCESSOR, DB_CLEANUP, MIGRATE, SCHEDULER, TASK, TRIGGERER
from components.settings.namespace_sections import NetworkSettings

# The components that talk to the database: the four long-running ones, the migration Job and the clean-up
# CronJob (whose pods carry the component label `db-cleanup`).
DATABASE_CLIENTS = (API_SERVER, SCHEDULER, DAG_PROCESSOR, TRIGGERER, MIGRATE, DB_CLEANUP)


@dataclass
class NetworkPoliciesArgs:
    instance: str
    namespace: pulumi.Input[str]
    settings: NetworkSettings
    ingress_enabled: bool
    # Unset in external database mode: there is no PgBouncer or PostgreSQL in the namespace.
    postgres_cluster: str | None = None
    pooler: str | None = None
    # The exporter's own policy (components/metrics.py) admits StatsD; task pods must also be let out to it.
    metrics_exporter: bool = False
    prometheus_scrapes_database: bool = False
    # The S3 endpoint pods are told (s3.podEndpointUrl); None: AWS, reached through taskPodEgressCidrs.
    s3_endpoint: str | None = None


def _port(number: int, protocol: str = "TCP") -> k8s.networking.v1.NetworkPolicyPortArgs:
    return k8s.networking.v1.NetworkPolicyPortArgs(port=number, protocol=protocol)


def _namespace(name: str) -> k8s.meta.v1.LabelSelectorArgs:
    return k8s.meta.v1.LabelSelectorArgs(match_labels={kube.NAMESPACE_NAME_LABEL: name})


class NetworkPolicies(pulumi.ComponentResource):
    names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("NetworkPolicies"), name, None, opts)
        self._args = args
        self.policies: dict[str, k8s.networking.v1.NetworkPolicy] = {}
        self._deny_ingress()
        self._api_server()
        self._database()
        self._task_egress()
        self.names = pulumi.Output.all(*(p.metadata.name for p in self.policies.values()))
        self.register_outputs({"names": self.names})

    # --- selectors -----------------------------------------------------------------------------------------

    def _component(self, *components: str) -> k8s.meta.v1.LabelSelectorArgs:
        selector = kube.selector_labels(self._args.instance, components[0])
        if len(components) == 1:
            return k8s.meta.v1.LabelSelectorArgs(match_labels=selector)
        selector.pop("app.kubernetes.io/component")
        return k8s.meta.v1.LabelSelectorArgs(
            match_labels=selector,
            match_expressions=[
                k8s.meta.v1.LabelSelectorRequirementArgs(
                    key="app.kubernetes.io/component", operator="In", values=list(components)
                )
            ],
        )

    def _cnpg(self, **labels: str) -> k8s.meta.v1.LabelSelectorArgs:
        return k8s.meta.v1.LabelSelectorArgs(match_labels=labels)

    def _policy(self, role: str, spec: k8s.networking.v1.NetworkPolicySpecArgs) -> None:
        args = self._args
        self.policies[role] = k8s.networking.v1.NetworkPolicy(
            f"{self._name}-{role}",
            metadata=kube.object_meta(args.instance, "network", args.namespace, kube.resource_name(args.instance, role)),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _allow(self, role: str, to: k8s.meta.v1.LabelSelectorArgs, sources: list, ports: list) -> None:
        self._policy(
            role,
            k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=to,
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=sources, ports=ports)],
            ),
        )

    # --- the paths -----------------------------------------------------------------------------------------

    def _deny_ingress(self) -> None:
        self._policy(
            "deny-ingress",
            k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Ingress"]),
        )

    def _api_server(self) -> None:
        api = self._component(API_SERVER)
        tasks = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=self._component(TASK))
        self._allow("api-from-tasks", api, [tasks], [_port(kube.API_SERVER_PORT)])
        if self._args.ingress_enabled:
            controller = k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=_namespace(self._args.settings.ingress_controller_namespace)
            )
            self._allow("api-from-ingress", api, [controller], [_port(kube.API_SERVER_PORT)])

    def _database(self) -> None:
        args = self._args
        if args.postgres_cluster is None or args.pooler is None:
            return
        pooler = self._cnpg(**{kube.CNPG_POOLER_LABEL: args.pooler})
        instances = self._cnpg(**{kube.CNPG_CLUSTER_LABEL: args.postgres_cluster, kube.CNPG_POD_ROLE_LABEL: "instance"})
        postgres = [_port(kube.POSTGRES_PORT)]
        clients = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=self._component(*DATABASE_CLIENTS))
        self._allow("pool-from-airflow", pooler, [clients], postgres)
        self._allow("pg-from-pool", instances, [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=pooler)], postgres)
        cluster = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=self._cnpg(**{kube.CNPG_CLUSTER_LABEL: args.postgres_cluster}))
        self._allow("pg-from-cluster", instances, [cluster], postgres)
        operator = k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=_namespace(args.settings.cnpg_operator_namespace))
        self._allow("pg-from-operator", instances, [operator], [*postgres, _port(kube.CNPG_STATUS_PORT)])
        if args.prometheus_scrapes_database:
            prometheus = k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=kube.other_namespaces(args.namespace))
            self._allow("pg-metrics", self._cnpg(**{kube.CNPG_CLUSTER_LABEL: args.postgres_cluster}), [prometheus],
                        [_port(metrics_catalog.POSTGRES_EXPORTER_PORT)])
            self._allow("pool-metrics", pooler, [prometheus], [_port(metrics_catalog.PGBOUNCER_EXPORTER_PORT)])

    def _task_egress(self) -> None:
        settings = self._args.settings
        dns = k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=_namespace(settings.dns_namespace))],
            ports=[_port(kube.DNS_PORT, "UDP"), _port(kube.DNS_PORT, "TCP")],
        )
        api = k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=self._component(API_SERVER))],
            ports=[_port(kube.API_SERVER_PORT)],
        )
        outside = [
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(
                    cidr=cidr,
                    except_=[c for c in settings.task_pod_egress_except if _within(c, cidr)] or None,
                )
            )
            for cidr in settings.task_pod_egress_cidrs
        ]
        rules = [dns, api] + ([k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=outside)] if outside else [])
        s3 = s3_egress(self._args.s3_endpoint)
        if s3 is not None:
            rules.append(s3)
        if self._args.metrics_exporter:
            # An ipBlock does not reliably cover pod addresses, so the in-namespace exporter gets its own rule.
            rules.append(k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                to=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=self._component(metrics_catalog.COMPONENT))],
                ports=[_port(metrics_catalog.STATSD_PORT, "UDP")],
            ))
        self._policy(
            "task-egress",
            k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=self._component(TASK), policy_types=["Egress"], egress=rules),
        )


def s3_egress(endpoint: str | None) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs | None:
    """The egress rule to the S3 endpoint task pods upload logs to, where a NetworkPolicy can name it."""
    if endpoint is None:
        return None
    url = urlsplit(endpoint)
    host = url.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        port = url.port or (443 if url.scheme == "https" else 80)
        block = k8s.networking.v1.IPBlockArgs(cidr=f"{address}/{address.max_prefixlen}")
        return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=block)], ports=[_port(port)]
        )
    labels = host.rstrip(".").split(".")
    if len(labels) >= 3 and labels[2] == "svc":  # <service>.<namespace>.svc[.<cluster domain>]
        return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=_namespace(labels[1]))]
        )
    return None


def _within(inner: str, outer: str) -> bool:
    import ipaddress

    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return a.version == b.version and a.subnet_of(b) and a != b
