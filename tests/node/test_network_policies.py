"""The instance's NetworkPolicies, enforced by kube-router on the test node: every path the instance needs is
open, every other path tried is closed.

The instance itself is the first proof: it is deployed, its DAGs run and their logs are read (test_instance.py)
with enforcement on. Here each path is tried on its own, by address and port, from the pods that would use it:
a real task pod (a DAG run, so it carries the task labels and service account), the Airflow components and
PgBouncer (through `kubectl exec`), a pod in a stranger namespace, and against a pod in a namespace that holds
another instance's policies. Every target is first shown open from the node itself (kube-router lets the node
reach every pod, as kubelet's probes need), so a closed path is the policy's doing, not a missing listener.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from components import kube, metrics_catalog
from testbed.node.instance import items
from testbed.node.pods import PROBE_FUNCTION, restricted_pod
from tests.node.test_cluster import python_image

pytestmark = pytest.mark.slow

STRANGER = "stranger"
OTHER_INSTANCE = "other-instance"
LISTENER_PORT = 8080
OPEN = "open"


def _pod_ip(api, namespace: str, selector: str) -> str:
    pods = [p for p in items(api, f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
            if p["status"].get("phase") == "Running"]
    assert pods, f"no running pod in {namespace} matches {selector}"
    return pods[0]["status"]["podIP"]


def _open_from_node(address: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=3).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {address}:{port}"
            time.sleep(1)


def _results(output: str) -> dict[str, str]:
    line = next(line for line in output.splitlines() if line.startswith("PATHS "))
    return json.loads(line.removeprefix("PATHS "))


def _opened(results: dict[str, str]) -> set[str]:
    return {name for name, outcome in results.items() if outcome == OPEN}


@pytest.fixture(scope="module")
def targets(node, deployed, s3_on_bridge):
    """name -> (address, port) of every path tried, each shown listening from the node."""
    api, (_, up, _) = node.api, deployed
    namespace = up.outputs["namespace"].value
    component = "app.kubernetes.io%2Fcomponent%3D"
    postgres = _pod_ip(api, namespace, f"{kube.CNPG_POD_ROLE_LABEL.replace('/', '%2F')}%3Dinstance")
    found = {
        "api-server": (_pod_ip(api, namespace, component + "api-server"), kube.API_SERVER_PORT),
        "pgbouncer": (_pod_ip(api, namespace, kube.CNPG_POOLER_LABEL.replace("/", "%2F")), kube.POSTGRES_PORT),
        "postgres": (postgres, kube.POSTGRES_PORT),
        "postgres status": (postgres, kube.CNPG_STATUS_PORT),
        "metrics": (_pod_ip(api, namespace, component + metrics_catalog.COMPONENT), metrics_catalog.METRICS_PORT),
        "s3": (s3_on_bridge.split("//")[1].split(":")[0], int(s3_on_bridge.rsplit(":", 1)[1])),
        "other instance": (_other_instance_listener(node, namespace), LISTENER_PORT),
    }
    for address, port in found.values():
        _open_from_node(address, port)
    yield found
    for name in (STRANGER, OTHER_INSTANCE):
        api.request("DELETE", f"/api/v1/namespaces/{name}")


def _other_instance_listener(node, namespace: str) -> str:
    """A server in a namespace that holds a copy of this instance's deny-ingress policy, as a second instance's
    namespace would: what a task pod must not reach."""
    api = node.api
    api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER_INSTANCE}})
    policy = next(p for p in items(api, f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies")
                  if p["metadata"]["name"].endswith("-deny-ingress"))
    copied = api.ensure({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": policy["metadata"]["name"], "namespace": OTHER_INSTANCE},
                         "spec": policy["spec"]})
    assert copied.ok, copied.body
    server = ("import http.server\n"
              f"http.server.ThreadingHTTPServer(('', {LISTENER_PORT}), http.server.SimpleHTTPRequestHandler).serve_forever()")
    pod = restricted_pod("listener", python_image(node), server)
    created = api.ensure({**pod, "metadata": {**pod["metadata"], "namespace": OTHER_INSTANCE}})
    assert created.ok, created.body
    deadline = time.monotonic() + 60
    while not (ip := api.request("GET", f"/api/v1/namespaces/{OTHER_INSTANCE}/pods/listener").body
               .get("status", {}).get("podIP")):
        assert time.monotonic() < deadline, "the listener pod got no address"
        time.sleep(0.5)
    return ip


def _kubectl_exec(node, namespace: str, pod: str, container: str, *command: str) -> str:
    done = node.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *command, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_task_pod_reaches_the_execution_api_and_s3_and_nothing_else(deployed, airflow, targets):
    run_id = airflow.trigger("node_paths", {"targets": [[name, *where] for name, where in targets.items()]})
    assert airflow.run_to_end("node_paths", run_id) == "success"
    results = _results(airflow.uploaded_log("node_paths", run_id, "probe_from_a_task_pod", "PATHS "))
    print(f"\nfrom a task pod: {results}")
    # Metrics: StatsD is UDP, which a connection cannot show; the exporter's TCP port is for Prometheus.
    assert _opened(results) == {"api-server", "s3"}, results


def test_a_pod_of_another_namespace_reaches_only_the_metrics_port(node, targets):
    api = node.api
    api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": STRANGER}})
    pod = restricted_pod("stranger", python_image(node), "import time; time.sleep(3600)")
    assert api.ensure({**pod, "metadata": {**pod["metadata"], "namespace": STRANGER}}).ok
    tried = [[name, *targets[name]] for name in ("api-server", "pgbouncer", "postgres", "postgres status", "metrics")]
    # kube-router adds a new pod's address to the policies' sets within seconds of its start; until then
    # nothing admits it anywhere. Prometheus's scrape is retried the same way.
    deadline = time.monotonic() + 60
    while True:
        if api.request("GET", f"/api/v1/namespaces/{STRANGER}/pods/stranger").body["status"].get("phase") == "Running":
            results = _results(_kubectl_exec(node, STRANGER, "stranger", "main", "python3", "-c",
                                             PROBE_FUNCTION + f"\nprobe({tried!r})\n"))
            if "metrics" in _opened(results) or time.monotonic() > deadline:
                break
        assert time.monotonic() < deadline, "the stranger pod did not start"
        time.sleep(2)
    print(f"\nfrom a stranger pod: {results}")
    # Prometheus runs in a namespace of its own; the exporter's metrics port is the one door open to it.
    assert _opened(results) == {"metrics"}, results


def test_airflow_components_reach_pgbouncer_and_pgbouncer_reaches_postgres(node, deployed, targets):
    api, (_, up, _) = node.api, deployed
    namespace = up.outputs["namespace"].value
    tried = [[name, *targets[name]] for name in ("pgbouncer", "postgres", "api-server")]
    for component in ("scheduler", "dag-processor", "triggerer", "api-server"):
        pod = items(api, f"/api/v1/namespaces/{namespace}/pods?labelSelector=app.kubernetes.io%2Fcomponent%3D{component}")[0]
        output = _kubectl_exec(node, namespace, pod["metadata"]["name"], pod["spec"]["containers"][0]["name"],
                               "python3", "-c", PROBE_FUNCTION + f"\nprobe({tried!r})\n")
        results = _results(output)
        print(f"\nfrom the {component}: {results}")
        # Only PgBouncer: no component talks to PostgreSQL directly, and only task pods call the Execution API.
        assert _opened(results) == {"pgbouncer"} | ({"api-server"} if component == "api-server" else set()), results

    pooler = items(api, f"/api/v1/namespaces/{namespace}/pods?labelSelector={kube.CNPG_POOLER_LABEL.replace('/', '%2F')}")[0]
    address, port = targets["postgres"]
    # The PgBouncer image has no Python: bash's /dev/tcp opens the connection.
    opened = _kubectl_exec(node, namespace, pooler["metadata"]["name"], pooler["spec"]["containers"][0]["name"],
                           "timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port} && echo open")
    assert opened.strip() == OPEN
