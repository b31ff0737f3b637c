"""The Barman Cloud plugin of CloudNativePG on the test node, installed as its release manifest installs it: its
ObjectStore CRD, a ServiceAccount under the plugin's own ClusterRole, the operator part as a Deployment in
cnpg-system behind the Service the CloudNativePG operator discovers it by (label `cnpg.io/pluginName`,
annotations naming its port and its TLS Secrets), and the sidecar image it injects into every PostgreSQL pod.

The mutual TLS between the operator and the plugin is made here, as cert-manager's selfSigned issuer makes it
in the release manifest: a server certificate for the Service's name and a client certificate, each trusted as
itself. The binary, CRD and ClusterRole come from scripts/install-node-tools, the images from
scripts/build-node-images.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from components.postgres_cluster import BARMAN_PLUGIN as PLUGIN
from images.standins import BARMAN_CLOUD_PLUGIN_IMAGE, BARMAN_CLOUD_SIDECAR_IMAGE
from testbed.apiserver import KubeAPI, install_crds
from testbed.node import pki

NAMESPACE = "cnpg-system"
NAME = "barman-cloud"  # the Service, and so the name the operator dials and checks the server certificate for
PORT = 9090
SERVER_SECRET, CLIENT_SECRET = "barman-cloud-server-tls", "barman-cloud-client-tls"
READY_TIMEOUT = 120


def _tls_secret(name: str, cert: bytes, key: bytes) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def objects(rbac: dict) -> list[dict]:
    """Everything the plugin's release manifest creates, with fresh certificates."""
    server = pki.self_signed(NAME, [NAME, f"{NAME}.{NAMESPACE}", f"{NAME}.{NAMESPACE}.svc"],
                             ExtendedKeyUsageOID.SERVER_AUTH)
    client = pki.self_signed("barman-cloud-client", ["barman-cloud-client"], ExtendedKeyUsageOID.CLIENT_AUTH)
    labels = {"app": NAME}
    account = "plugin-barman-cloud"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": NAMESPACE}},
        rbac,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": account},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac["metadata"]["name"]},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]},
        _tls_secret(SERVER_SECRET, *server),
        _tls_secret(CLIENT_SECRET, *client),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {**labels, "cnpg.io/pluginName": PLUGIN},
                      "annotations": {"cnpg.io/pluginPort": str(PORT), "cnpg.io/pluginServerSecret": SERVER_SECRET,
                                      "cnpg.io/pluginClientSecret": CLIENT_SECRET}},
         "spec": {"selector": labels, "ports": [{"port": PORT, "targetPort": PORT, "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "strategy": {"type": "Recreate"}, "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "serviceAccountName": account,
                 "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{
                     "name": NAME, "image": BARMAN_CLOUD_PLUGIN_IMAGE, "imagePullPolicy": "Never",
                     "args": ["operator", "--server-cert=/server/tls.crt", "--server-key=/server/tls.key",
                              "--client-cert=/client/tls.crt", f"--server-address=:{PORT}", "--log-level=debug"],
                     "env": [{"name": "SIDECAR_IMAGE", "value": BARMAN_CLOUD_SIDECAR_IMAGE}],
                     "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                     "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                     "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                         "runAsUser": 10001, "runAsGroup": 10001,
                                         "capabilities": {"drop": ["ALL"]}},
                     # Small: the node has two cores, and the instance and a task pod must fit beside it.
                     "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                     "volumeMounts": [{"name": "server", "mountPath": "/server"},
                                      {"name": "client", "mountPath": "/client"}],
                 }],
                 "volumes": [{"name": "server", "secret": {"secretName": SERVER_SECRET}},
                             {"name": "client", "secret": {"secretName": CLIENT_SECRET}}],
             }}}},
    ]


def install(api: KubeAPI, tools: Path) -> float:
    """Installs the plugin and waits until the operator has registered it; returns the seconds that took."""
    started = time.monotonic()
    install_crds(api, [yaml.safe_load(p.read_text()) for p in sorted((tools / "barman-cloud-crds").glob("*.yaml"))])
    rbac = next(d for d in yaml.safe_load_all((tools / "barman-cloud-rbac.yaml").read_text()) if d)
    for document in objects(rbac):
        response = api.ensure(document)
        assert response.ok, response.body
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready(api):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {PLUGIN} plugin was not serving and registered with the CloudNativePG operator "
                               f"within {READY_TIMEOUT}s")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def ready(api: KubeAPI) -> bool:
    """The plugin's pod answers on its port, and the operator has taken its Service in (an event says so; the
    operator dials the plugin only when a Cluster needs it)."""
    deployment = api.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}").body
    if not deployment.get("status", {}).get("readyReplicas"):
        return False
    events = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events",
                         fieldSelector=f"involvedObject.name={NAME},reason=PluginRegistered").body.get("items", [])
    return bool(events)
