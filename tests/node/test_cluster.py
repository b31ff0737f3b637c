"""The test node itself: what our pods will rely on works, and pods reach the node's own servers only."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from testbed.node import host
from testbed.node.pods import restricted_pod, run_to_completion

pytestmark = pytest.mark.slow

NAMESPACE = "node-check"


@pytest.fixture(scope="module")
def checks(node):
    api = node.api
    api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    yield api
    api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def python_image(node) -> str:
    listed = json.loads((node.images / "images.json").read_text())["images"]
    return next(image["ref"] for image in listed if "apache/airflow" in image["ref"])


def test_the_node_is_ready_with_its_runtime(node):
    status = node.api.request("GET", "/api/v1/nodes").body["items"][0]["status"]
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    assert status["nodeInfo"]["kubeletVersion"] == "v1.35.4"
    print(f"\nnode timings (s from start): {node.timings}")


def test_a_restricted_pod_resolves_cluster_dns_and_reaches_the_api_through_its_service(node, checks):
    script = (
        "import socket, ssl, urllib.request\n"
        "print('dns', socket.gethostbyname('kubernetes.default.svc.cluster.local'))\n"
        "ctx = ssl.create_default_context(cafile='/var/run/secrets/kubernetes.io/serviceaccount/ca.crt')\n"
        "try:\n"
        "    urllib.request.urlopen('https://kubernetes.default.svc/version', context=ctx, timeout=10)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print('api', e.code)\n"
        "else:\n"
        "    print('api', 200)\n"
    )
    phase, log = run_to_completion(checks, NAMESPACE, restricted_pod("dns-and-api", python_image(node), script))
    assert phase == "Succeeded", log
    assert f"dns {host.API_SERVICE_IP}" in log
    # Over TLS with the cluster's CA: the API answered (anonymous gets 401/403; a TLS failure would raise).
    assert "api " in log


def test_pods_reach_a_server_on_the_bridge_and_nothing_outside(node, checks):
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.client_address[0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"bridge ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host.NODE_IP, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # 203.0.113.1 is a documentation address: with no default route in the pod, nothing is ever sent.
    script = (
        "import urllib.request, socket\n"
        f"print(urllib.request.urlopen('http://{host.NODE_IP}:{server.server_address[1]}/', timeout=10).read().decode())\n"
        "s = socket.socket(); s.settimeout(5)\n"
        "try:\n"
        "    s.connect(('203.0.113.1', 80)); print('outside reachable')\n"
        "except OSError as e:\n"
        "    print('outside', e.strerror)\n"
    )
    try:
        phase, log = run_to_completion(checks, NAMESPACE, restricted_pod("egress", python_image(node), script))
    finally:
        server.shutdown()
    assert phase == "Succeeded", log
    assert "bridge ok" in log and served and served[0].startswith("10.244.0.")
    assert "outside Network is unreachable" in log
