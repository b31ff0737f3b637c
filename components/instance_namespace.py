"""InstanceNamespace: the namespace one Airflow instance lives in, created first because every other
component's objects go into it.

It enforces Pod Security `restricted`, so a pod that is not locked down is refused by the API server
instead of running; every pod this project creates is built to pass it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube

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


class InstanceNamespace(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(self, name: str, args: InstanceNamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("airflow-platform:index:InstanceNamespace", name, None, opts)
        self.namespace = None
        if args.create:
            team = {"airflow-platform/team": args.team} if args.team else {}
            self.namespace = k8s.core.v1.Namespace(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=args.name,
                    labels={**kube.labels(args.instance, "namespace"), **POD_SECURITY_LABELS, **team},
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.name = self.namespace.metadata.name
        else:
            self.name = pulumi.Output.from_input(args.name)
        self.register_outputs({"name": self.name})
