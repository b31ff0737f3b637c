"""InstanceNamespace: the namespace one Airflow instance lives in, created first because every other
component's objects go into it.

It enforces Pod Security `restricted`, so a pod that is not locked down is refused by the API server
instead of running; every pod this project creates is built to pass it. A ResourceQuota caps what the
instance may use in total, so one team's runaway DAGs cannot starve the other instances on the cluster, and a
LimitRange gives every container default requests and limits and a ceiling, so a task pod cannot drop its
limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.component_base import kept_child, type_token
from components.settings.namespace_sections import LimitRangeSettings

COMPONENT = "namespace"
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}


@dataclass
class InstanceNamespaceArgs:
    instance: str
    name: str
    # False: the namespace exists already (made by a platform team); we only place objects in it.
    create: bool = True
    team: str | None = None
    # The ResourceQuota's `hard` amounts (components.settings.capacity sizes them); None: no quota.
    quota: dict[str, str] | None = None
    limit_range: LimitRangeSettings | None = None


class InstanceNamespace(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(self, name: str, args: InstanceNamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("InstanceNamespace"), name, None, opts)
        self.namespace = None
        if args.create:
            team = {"airflow-platform/team": args.team} if args.team else {}
            self.namespace = k8s.core.v1.Namespace(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=args.name,
                    labels={**kube.labels(args.instance, COMPONENT), **POD_SECURITY_LABELS, **team},
                ),
                # Kept whenever the database in it is, or the namespace controller would delete the database with it.
                opts=kept_child(self, opts),
            )
            self.name = self.namespace.metadata.name
        else:
            self.name = pulumi.Output.from_input(args.name)
        self.quota = self._quota(args) if args.quota else None
        self.limit_range = self._limit_range(args) if args.limit_range and args.limit_range.enabled else None
        self.register_outputs({"name": self.name})

    def _meta(self, args: InstanceNamespaceArgs, role: str) -> k8s.meta.v1.ObjectMetaArgs:
        return kube.object_meta(args.instance, COMPONENT, self.name, kube.resource_name(args.instance, role))

    def _quota(self, args: InstanceNamespaceArgs) -> k8s.core.v1.ResourceQuota:
        return k8s.core.v1.ResourceQuota(
            f"{self._name}-quota",
            metadata=self._meta(args, "quota"),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=dict(args.quota)),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _limit_range(self, args: InstanceNamespaceArgs) -> k8s.core.v1.LimitRange:
        limits = args.limit_range
        return k8s.core.v1.LimitRange(
            f"{self._name}-limits",
            metadata=self._meta(args, "limits"),
            spec=k8s.core.v1.LimitRangeSpecArgs(
                limits=[
                    k8s.core.v1.LimitRangeItemArgs(
                        type="Container",
                        default_request=limits.default_request.model_dump(),
                        default=limits.default_limit.model_dump(),
                        max=limits.max.model_dump(),
                    )
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
