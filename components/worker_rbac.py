"""WorkerRBAC: a ServiceAccount per Airflow component, and namespace-scoped Roles with least privilege.

Only the scheduler runs the KubernetesExecutor, so only the scheduler may launch and delete pods. The
api-server reads pods and their logs to stream the log of a task that is still running. Task pods get no
Kubernetes API rights and no token at all unless the stack opts in for KubernetesPodOperator. (The
official chart binds its pod-launcher Role to the worker service account too; we do not.)

Every ServiceAccount has token automounting off; a pod that needs the API asks for its token itself, so a
new component is without API access until someone decides otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.component_base import type_token
from components.kube import AIRFLOW_COMPONENTS, API_SERVER, KERBEROS, SCHEDULER, TASK


def _rule(resources: list[str], verbs: list[str]) -> k8s.rbac.v1.PolicyRuleArgs:
    return k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=resources, verbs=verbs)


# What launching and watching task pods takes: the KubernetesExecutor, and KubernetesPodOperator in a task.
POD_LAUNCHER_RULES = [
    _rule(["pods"], ["create", "get", "list", "watch", "patch", "delete"]),
    _rule(["pods/log"], ["get"]),
    _rule(["events"], ["list"]),
]
POD_LOG_READER_RULES = [
    _rule(["pods"], ["get", "list", "watch"]),
    _rule(["pods/log"], ["get"]),
]


@dataclass
class WorkerRBACArgs:
    instance: str
    namespace: pulumi.Input[str]
    # Opt-in for KubernetesPodOperator: task pods then get a token and the pod-launcher rules.
    task_pod_api_access: bool = False
    kerberos_enabled: bool = False


class WorkerRBAC(pulumi.ComponentResource):
    service_account_names: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: WorkerRBACArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("WorkerRBAC"), name, None, opts)
        self._args = args
        components = AIRFLOW_COMPONENTS + ((KERBEROS,) if args.kerberos_enabled else ())
        self.service_accounts = {component: self._service_account(component) for component in components}
        self.service_account_names = {
            component: account.metadata.name for component, account in self.service_accounts.items()
        }
        self.roles = {SCHEDULER: self._bind(SCHEDULER, POD_LAUNCHER_RULES)}
        self.roles[API_SERVER] = self._bind(API_SERVER, POD_LOG_READER_RULES)
        if args.task_pod_api_access:
            self.roles[TASK] = self._bind(TASK, POD_LAUNCHER_RULES)
        self.register_outputs({"service_account_names": self.service_account_names})

    @property
    def token_components(self) -> frozenset[str]:
        """The components whose pods mount a service-account token: exactly those given API rights."""
        return frozenset(self.roles)

    def _service_account(self, component: str) -> k8s.core.v1.ServiceAccount:
        return k8s.core.v1.ServiceAccount(
            f"{self._name}-{component}",
            metadata=kube.object_meta(
                self._args.instance,
                component,
                self._args.namespace,
                kube.resource_name(self._args.instance, component),
            ),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _bind(self, component: str, rules: list[k8s.rbac.v1.PolicyRuleArgs]) -> k8s.rbac.v1.Role:
        name = kube.resource_name(self._args.instance, component)
        meta = kube.object_meta(self._args.instance, component, self._args.namespace, name)
        role = k8s.rbac.v1.Role(
            f"{self._name}-{component}", metadata=meta, rules=rules, opts=pulumi.ResourceOptions(parent=self)
        )
        k8s.rbac.v1.RoleBinding(
            f"{self._name}-{component}",
            metadata=meta,
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount",
                    name=self.service_accounts[component].metadata.name,
                    namespace=self._args.namespace,
                )
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role
