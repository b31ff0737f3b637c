"""What a real kube-apiserver says about the objects our stacks create: it stores every one of them as we
wrote it (strict field validation, CRD schemas it serves), Pod Security `restricted` admits every pod we
create without a warning, and the RBAC we grant is exactly what WorkerRBAC promises, asked of the server's
own authorizer with SubjectAccessReviews.

The objects come from the program run under mocks (testbed/manifests.py): what the kubernetes provider would
send. Deployments and Jobs make no pods here (no controller manager), so each pod spec is also created as a
Pod, server-side dry-run, which is what Pod Security judges at admission.
"""

from __future__ import annotations

import pytest

from testbed.manifests import STACKS, pod_specs, stack_manifests, stack_run, task_pod_template

pytestmark = pytest.mark.slow

# Namespaces first (everything else lives in one), then the accounts pods name.
ORDER = {"Namespace": 0, "ServiceAccount": 1}


@pytest.fixture(scope="session")
def applied(kube_api):
    """stack → [(manifest, the server's answer)], each stack created once for real."""
    results = {}

    def apply(stack: str):
        if stack not in results:
            documents = sorted(stack_manifests(stack), key=lambda d: ORDER.get(d["kind"], 2))
            results[stack] = [(d, kube_api.create(d)) for d in documents]
        return results[stack]

    return apply


def describe(document, response) -> str:
    return f"{document['kind']}/{document['metadata']['name']}: {response.status} {response.body.get('message', '')} {response.warnings}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_api_server_stores_every_object_without_a_warning(applied, stack):
    results = applied(stack)
    kinds = {document["kind"] for document, _ in results}
    assert {"Namespace", "Deployment", "Cluster", "Pooler", "RoleBinding"} <= kinds
    refused = [describe(d, r) for d, r in results if not r.ok or r.warnings]
    print(f"\n{stack}: {len(results)} objects applied")
    assert refused == []


def _namespace(stack: str) -> str:
    return stack_run(stack).exports["namespace"]


def _pod(stack: str, where: str, spec: dict) -> dict:
    name = where.lower().replace("/", "-")[:63].rstrip("-")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": _namespace(stack)}, "spec": spec}


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_we_create_passes_pod_security_restricted(kube_api, applied, stack):
    applied(stack)
    labels = kube_api.request("GET", f"/api/v1/namespaces/{_namespace(stack)}").body["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = [_pod(stack, where, spec) for document in stack_manifests(stack) for where, spec in pod_specs(document)]
    pods.append(task_pod_template(stack_run(stack)))
    assert len(pods) >= 5
    refused = []
    for pod in pods:
        response = kube_api.create(pod, dry_run=True)
        if not response.ok or response.warnings:
            refused.append(describe(pod, response))
    print(f"\n{stack}: {len(pods)} pod specs admitted by Pod Security restricted")
    assert refused == []


def test_the_namespace_really_refuses_a_pod_that_is_not_locked_down(kube_api, applied):
    applied("dev")
    (where, spec), *_ = [p for d in stack_manifests("dev") for p in pod_specs(d)]
    loose = {**spec, "securityContext": {}, "containers": [{**c, "securityContext": {}} for c in spec["containers"]]}
    response = kube_api.create(_pod("dev", where, loose), dry_run=True)
    assert response.status == 403 and "restricted" in response.body["message"]


# --- RBAC ----------------------------------------------------------------------------------------------------------

POD_LAUNCHER = {("create", "pods"), ("delete", "pods"), ("get", "pods"), ("list", "pods"), ("watch", "pods"),
                ("patch", "pods"), ("get", "pods/log"), ("list", "events")}
POD_LOG_READER = {("get", "pods"), ("list", "pods"), ("watch", "pods"), ("get", "pods/log")}
# What each account may do in its own namespace; every other account (task pods included), and every account
# anywhere else, may do nothing at all.
PROMISED = {"scheduler": POD_LAUNCHER, "api-server": POD_LOG_READER}

CORE = ""
ASKED = sorted(POD_LAUNCHER | POD_LOG_READER | {
    ("update", "pods"), ("create", "pods/exec"), ("create", "pods/attach"), ("create", "pods/portforward"),
    ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"),
    ("get", "configmaps"), ("create", "configmaps"), ("create", "serviceaccounts/token"), ("impersonate", "serviceaccounts"),
    ("create", "services"), ("create", "persistentvolumeclaims"), ("delete", "events"),
})
GROUPED = [  # (verb, resource, API group) outside the core group
    ("create", "deployments", "apps"), ("create", "jobs", "batch"), ("create", "cronjobs", "batch"),
    ("create", "roles", "rbac.authorization.k8s.io"), ("create", "rolebindings", "rbac.authorization.k8s.io"),
    ("escalate", "roles", "rbac.authorization.k8s.io"), ("bind", "roles", "rbac.authorization.k8s.io"),
    ("get", "clusters", "postgresql.cnpg.io"), ("create", "backups", "postgresql.cnpg.io"),
    ("create", "networkpolicies", "networking.k8s.io"),
]
CLUSTER_WIDE = [("list", "namespaces", ""), ("list", "nodes", ""), ("list", "pods", ""), ("list", "secrets", ""),
                ("create", "clusterrolebindings", "rbac.authorization.k8s.io")]


def _ask(kube_api, user: str, verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
    resource, _, sub = resource.partition("/")
    return kube_api.can(user, verb, resource, namespace, subresource=sub, group=group)


def _accounts(kube_api, namespace: str) -> tuple[str, ...]:
    found = kube_api.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts").body["items"]
    return tuple(sorted(a["metadata"]["name"] for a in found))


@pytest.mark.parametrize("stack", ["prod", "team-analytics", "kerberos"])
def test_rbac_is_exactly_what_worker_rbac_promises(kube_api, applied, stack):
    applied(stack)
    applied("team-search")  # a neighbour whose namespace nobody of ours may reach
    instance, namespace = stack_run(stack).exports["namespace"].removeprefix("airflow-"), _namespace(stack)
    accounts = _accounts(kube_api, namespace)
    components = {name.removeprefix(f"{instance}-") for name in accounts}
    assert {"scheduler", "api-server", "task", "dag-processor", "triggerer", "migrate"} <= components
    # `default` is made by the controller manager on a real cluster: it must get nothing either.
    subjects = [*accounts, "default"]
    elsewhere = ("default", "kube-system", _namespace("team-search"))
    wrong, asked = [], 0
    for account in subjects:
        user = f"system:serviceaccount:{namespace}:{account}"
        promised = PROMISED.get(account.removeprefix(f"{instance}-"), set())
        for verb, resource in ASKED:
            asked += 1
            if _ask(kube_api, user, verb, resource, namespace) != ((verb, resource) in promised):
                wrong.append(f"{account} {verb} {resource}: expected {'allowed' if (verb, resource) in promised else 'denied'}")
            for other in elsewhere:
                asked += 1
                if _ask(kube_api, user, verb, resource, other):
                    wrong.append(f"{account} may {verb} {resource} in {other}")
        for verb, resource, group in GROUPED:
            for where in (namespace, *elsewhere):
                asked += 1
                if _ask(kube_api, user, verb, resource, where, group):
                    wrong.append(f"{account} may {verb} {group}/{resource} in {where}")
        for verb, resource, group in CLUSTER_WIDE:
            asked += 1
            if _ask(kube_api, user, verb, resource, None, group):
                wrong.append(f"{account} may {verb} {resource} cluster-wide")
    print(f"\n{stack}: {asked} SubjectAccessReviews for {len(subjects)} service accounts")
    assert wrong == []
