"""A real one-node Kubernetes cluster that runs our pods: the test node.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (scripts/install-kube-
apiserver builds them in one `go build`), kube-router's NetworkPolicy controller, containerd, runc and the CNI
plugins from Debian, CoreDNS as a pod in kube-system behind the kube-dns Service, a default StorageClass with
volumes the fixture provides, the CloudNativePG operator as a host process with its webhooks registered by
URL (scripts/install-node-tools), and its Barman Cloud plugin as a pod in cnpg-system (testbed/node/
barman_plugin.py). Images come from scripts/build-node-images under the exact references the program renders;
nothing is pulled.

Fixed addresses (testbed/node/host.py): the node is 10.244.0.1 on its own bridge, services are 10.96.0.0/24.
Only one node runs at a time on a machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

from testbed.apiserver import KubeAPI, _free_ports, install_crds
from images.standins import COREDNS_IMAGE
from testbed.node import barman_plugin, host, pki
from testbed.processes import stop as stop_process

NODE_NAME = "airflow-node"
API_PORT = 6443
WEBHOOK_PORT = 9443
CLUSTER_DOMAIN = "cluster.local"
CNPG_NAMESPACE = "cnpg-system"
# The storage class the volumes are offered under; the default one, as on a managed cluster.
STORAGE_CLASS = "node-local"
VOLUMES = 8
SHARED_STORAGE_CLASS = "node-shared"
SHARED_VOLUMES = 2
VOLUME_SIZE = "20Gi"
READY_TIMEOUT = 120
# CloudNativePG runs PostgreSQL as 26:26; a volume's root must be writable by it.
POSTGRES_UID = 26
AIRFLOW_UID = 50000


class Node:
    def __init__(self, kube_bin: Path, tools: Path, images: Path, work: Path | None = None):
        self.kube_bin, self.tools, self.images = kube_bin, tools, images
        self.work = work or Path(tempfile.mkdtemp(prefix="airflow-node-"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.before = host.HostState.capture()
        self.api: KubeAPI | None = None
        self.timings: dict[str, float] = {}
        self._started = time.monotonic()
        self.containerd_socket = self.work / "containerd.sock"
        self.runc_root = self.work / "runc"
        self.url = f"https://{host.NODE_IP}:{API_PORT}"

    # -- processes ------------------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None) -> None:
        log = (self.work / "logs" / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 25) -> str:
        out = []
        for log in sorted((self.work / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def _wait(self, what: str, ready, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    self.timings[what] = round(time.monotonic() - self._started, 1)
                    return
            except (requests.RequestException, OSError, subprocess.SubprocessError):
                pass
            dead = [name for name, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"test node: {what} not ready (exited: {dead or 'none'})\n{self.log_tail()}")
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return host.run("ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args, check=check)

    # -- start ----------------------------------------------------------------------------------------------
    def start(self) -> KubeAPI:
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        host.set_up_network()
        self.creds = pki.make(
            self.work / "pki", NODE_NAME, [host.NODE_IP, host.API_SERVICE_IP, "127.0.0.1"],
            ["kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{CLUSTER_DOMAIN}"],
        )
        self._start_containerd()
        importing = threading.Thread(target=self._import_images)
        importing.start()
        self._start_control_plane()
        importing.join()
        if self.import_error:
            raise RuntimeError(self.import_error)
        self._start_kubelet_and_proxy()
        self._start_firewall()
        self._start_dns()
        self._offer_volumes()
        self._start_operator()
        self.timings["Barman Cloud plugin registered (s after the operator)"] = barman_plugin.install(self.api, self.tools)
        self._wait("default service account", lambda: self.api.request(
            "GET", "/api/v1/namespaces/default/serviceaccounts/default").ok)
        return self.api

    def _start_containerd(self) -> None:
        w = self.work
        (w / "cni" / "net.d").mkdir(parents=True)
        (w / "cni" / "net.d" / "10-airflow-node.conflist").write_text(json.dumps(host.cni_config(w)))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (w / "containerd.toml").write_text(f"""version = 2
root = "{w}/containerd/root"
state = "{w}/containerd/state"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/containerd/opt"
[{cri}]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # The sandbox gets oom_score_adj -998 otherwise, which needs CAP_SYS_RESOURCE this machine does not grant.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{self.runc_root}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w}/cni/net.d"
""")
        self._start("containerd", ["containerd", "--config", str(w / "containerd.toml")])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0)

    def _import_images(self) -> None:
        self.import_error = None
        try:
            for archive in sorted(self.images.glob("*.tar")):
                done = self.ctr("images", "import", str(archive), check=False)
                if done.returncode != 0:
                    self.import_error = f"importing {archive.name} failed: {done.stderr}"
                    return
            self.timings["images imported"] = round(time.monotonic() - self._started, 1)
        except Exception as error:  # reported by start() on the main thread
            self.import_error = f"importing images failed: {error}"

    def _start_control_plane(self) -> None:
        w, c = self.work, self.creds
        client, peer = _free_ports(2)
        self._start("etcd", [
            str(self.kube_bin / "etcd"), "--data-dir", str(w / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--unsafe-no-fsync=true", "--log-level", "warn",
        ])
        self._start("kube-apiserver", [
            str(self.kube_bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{client}",
            f"--bind-address={host.NODE_IP}", f"--advertise-address={host.NODE_IP}", f"--secure-port={API_PORT}",
            f"--tls-cert-file={c.serving_cert}", f"--tls-private-key-file={c.serving_key}",
            f"--client-ca-file={c.ca}", f"--token-auth-file={c.token_file}",
            f"--kubelet-client-certificate={c.kubelet_client_cert}", f"--kubelet-client-key={c.kubelet_client_key}",
            "--kubelet-preferred-address-types=InternalIP", f"--service-cluster-ip-range={host.SERVICE_CIDR}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={c.service_account_key}",
            f"--service-account-signing-key-file={c.service_account_key}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction", "--v=1",
        ])
        self.api = KubeAPI(self.url, c.tokens["admin"], str(c.ca))
        self._wait("kube-apiserver", lambda: self.api.request("GET", "/readyz").ok)
        self.kubeconfigs = {
            client_name: KubeAPI(self.url, token, str(c.ca)).kubeconfig(w / f"{client_name}.kubeconfig")
            for client_name, token in c.tokens.items()
        }
        self._start("kube-controller-manager", [
            str(self.kube_bin / "kube-controller-manager"), f"--kubeconfig={self.kubeconfigs['controller-manager']}",
            "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={c.service_account_key}", f"--root-ca-file={c.ca}",
            f"--service-cluster-ip-range={host.SERVICE_CIDR}", "--v=1",
        ])
        self._start("kube-scheduler", [
            str(self.kube_bin / "kube-scheduler"), f"--kubeconfig={self.kubeconfigs['scheduler']}",
            "--leader-elect=false", "--secure-port=0", "--v=1",
        ])

    def _start_kubelet_and_proxy(self) -> None:
        w, c = self.work, self.creds
        # What pods with dnsPolicy Default get (CoreDNS's own pod among them: it forwards nothing, so no loop).
        (w / "resolv.conf").write_text(f"nameserver {host.DNS_SERVICE_IP}\n")
        (w / "kubelet.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            # This machine runs cgroup v1, which kubelet 1.35 refuses unless told otherwise.
            "failCgroupV1": False, "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": host.NODE_IP, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(c.ca)}},
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN, "clusterDNS": [host.DNS_SERVICE_IP], "resolvConf": str(w / "resolv.conf"),
            "podLogsDir": str(w / "pod-logs"), "volumePluginDir": str(w / "volume-plugins"),
            "failSwapOn": False, "protectKernelDefaults": False, "rotateCertificates": False,
            "serverTLSBootstrap": False, "maxPods": 60,
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "3%", "imagefs.available": "3%",
                             "nodefs.inodesFree": "3%"},
            "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
            "registerNode": True, "syncFrequency": "10s", "fileCheckFrequency": "10s",
        }))
        self._start("kubelet", [
            str(self.kube_bin / "kubelet"), f"--config={w / 'kubelet.yaml'}",
            f"--kubeconfig={self.kubeconfigs['kubelet']}", f"--root-dir={w / 'kubelet'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={host.NODE_IP}", "--v=1",
        ])
        (w / "kube-proxy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.kubeconfigs["kube-proxy"])},
            "hostnameOverride": NODE_NAME, "clusterCIDR": host.POD_CIDR, "bindAddress": "127.0.0.1",
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{host.NODE_IP}/32"],
            # Leave the host's conntrack sysctls alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }))
        self._start("kube-proxy", [str(self.kube_bin / "kube-proxy"), f"--config={w / 'kube-proxy.yaml'}", "--v=1"])
        self._wait("node Ready", self._node_ready)

    def _start_firewall(self) -> None:
        """kube-router's NetworkPolicy controller alone (no routing, no service proxy), beside the bridge CNI:
        it filters pod traffic with iptables and ipsets, as on a cluster whose CNI enforces policies. Traffic
        from the node itself (kubelet's probes, the host processes) reaches every pod, as kube-router allows."""
        self._bind("kube-router", "node-fixture-kube-router", [
            {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        ])
        (health,) = _free_ports(1)
        self._start("kube-router", [
            str(self.tools / "kube-router"), f"--kubeconfig={self.kubeconfigs['kube-router']}",
            f"--hostname-override={NODE_NAME}", "--run-firewall=true", "--run-router=false",
            "--run-service-proxy=false", "--enable-cni=false", "--enable-ipv6=false",
            f"--service-cluster-ip-range={host.SERVICE_CIDR}", f"--health-port={health}",
            # Pods come and go within seconds in the tests; the periodic full sync is only a safety net.
            "--iptables-sync-period=30s", "--v=1",
        ])
        self._wait("NetworkPolicy enforcement", lambda: (
            requests.get(f"http://127.0.0.1:{health}/healthz", timeout=2).ok
            and "KUBE-ROUTER-FORWARD" in host.run("iptables-save", "-t", "filter").stdout))

    def _node_ready(self) -> bool:
        node = self.api.request("GET", f"/api/v1/nodes/{NODE_NAME}")
        if not node.ok:
            return False
        conditions = node.body["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _bind(self, user: str, role: str, rules: list | None = None) -> None:
        if rules is not None:
            self.api.ensure({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                             "metadata": {"name": role}, "rules": rules})
        self.api.ensure({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        })

    def _start_dns(self) -> None:
        """CoreDNS as a Deployment in kube-system behind the kube-dns Service, as on any cluster: the instance's
        NetworkPolicies let task pods reach DNS by naming that namespace, which a host process is not in."""
        labels = {"k8s-app": "kube-dns"}
        rules = [
            {"apiGroups": [""], "resources": ["services", "endpoints", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ]
        # No `forward` plugin: names outside the cluster get SERVFAIL, and nothing leaves the machine.
        corefile = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""
        ns = "kube-system"
        for document in (
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "system:coredns"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
             "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": ns},
             "data": {"Corefile": corefile}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
             "spec": {"selector": labels, "clusterIP": host.DNS_SERVICE_IP, "ports": [
                 {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
             "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": "coredns", "dnsPolicy": "Default",
                     # Port 53 as the non-root user, without capabilities (the image carries no file caps).
                     "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "sysctls": [
                         {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]},
                     "containers": [{
                         "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "Never",
                         "args": ["-conf", "/etc/coredns/Corefile"],
                         "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP"}],
                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                         "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}},
                         # 10m, not upstream's 100m: the node has two cores, and the instance and a task pod
                         # must fit beside it.
                         "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "170Mi"}},
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                     }],
                     "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                 }}}},
        ):
            response = self.api.ensure(document)
            assert response.ok, response.body
        self._wait("cluster DNS", self._dns_ready)

    def _dns_ready(self) -> bool:
        slices = self.api.request(
            "GET", "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            labelSelector="kubernetes.io/service-name=kube-dns").body.get("items", [])
        return any(e.get("conditions", {}).get("ready") is True for s in slices for e in s.get("endpoints") or [])

    def _offer_volumes(self) -> None:
        """Two StorageClasses and pre-made volumes under each, as a provisioner would have made them: the
        default one's volumes are what the database's PersistentVolumeClaims bind to (owned by PostgreSQL's
        user), the shared one's are ReadWriteMany (a cephfs stands in) for the Kerberos ticket cache, which
        Airflow's user writes and its group reads."""
        for name, access, owner, mode, count, default in (
            (STORAGE_CLASS, "ReadWriteOnce", (POSTGRES_UID, POSTGRES_UID), 0o755, VOLUMES, True),
            (SHARED_STORAGE_CLASS, "ReadWriteMany", (AIRFLOW_UID, 0), 0o770, SHARED_VOLUMES, False),
        ):
            self.api.ensure({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": str(default).lower()}},
                "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
                "reclaimPolicy": "Retain",
            })
            for index in range(count):
                path = self.work / "volumes" / f"{name}-{index}"
                path.mkdir(parents=True)
                os.chown(path, *owner)
                path.chmod(mode)
                self.api.ensure({
                    "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{name}-{index}"},
                    "spec": {
                        "capacity": {"storage": VOLUME_SIZE}, "accessModes": [access],
                        "storageClassName": name, "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(path), "type": "Directory"},
                    },
                })

    def _start_operator(self) -> None:
        """CloudNativePG as a host process: its CRDs, its namespace, its webhooks registered by URL (it serves
        them on the bridge address with the API server's certificate, which names that address)."""
        crds = [yaml.safe_load(p.read_text()) for p in sorted((self.tools / "cnpg-crds").glob("*.yaml"))]
        install_crds(self.api, crds)
        self.api.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CNPG_NAMESPACE}})
        self._bind("cnpg-operator", "cluster-admin")
        certs = self.work / "cnpg-webhook-certs"
        certs.mkdir()
        shutil.copy(self.creds.serving_cert, certs / "apiserver.crt")
        shutil.copy(self.creds.serving_key, certs / "apiserver.key")
        # The operator globs ./operator/manager_<arch> to learn which architectures it can inject.
        (self.work / "cnpg" / "operator").mkdir(parents=True)
        (self.work / "cnpg" / "operator" / "manager_amd64").symlink_to(self.tools / "manager")
        (metrics_port,) = _free_ports(1)
        # The operator dials a plugin by its Service's bare name, as a pod in cnpg-system would: in a mount
        # namespace of its own, the host process sees a resolv.conf that asks the cluster DNS with that pod's
        # search path (nothing else on the host changes).
        resolv = self.work / "cnpg" / "resolv.conf"
        resolv.write_text(f"nameserver {host.DNS_SERVICE_IP}\nsearch {CNPG_NAMESPACE}.svc.{CLUSTER_DOMAIN} "
                          f"svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5\n")
        self._start("cnpg-operator", [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv),
            str(self.tools / "manager"), "controller", "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{metrics_port}", f"--webhook-port={WEBHOOK_PORT}",
        ], env={"OPERATOR_NAMESPACE": CNPG_NAMESPACE, "WEBHOOK_CERT_DIR": str(certs),
                "KUBECONFIG": str(self.kubeconfigs["cnpg-operator"])}, cwd=self.work / "cnpg")
        self._wait("CloudNativePG webhook", lambda: requests.get(
            f"https://{host.NODE_IP}:{WEBHOOK_PORT}/readyz", verify=str(self.creds.ca), timeout=2).status_code < 500)
        self._register_webhooks()

    def _register_webhooks(self) -> None:
        import base64

        ca = base64.b64encode(self.creds.ca.read_bytes()).decode()
        for document in yaml.safe_load_all((self.tools / "cnpg-webhooks.yaml").read_text()):
            if not document:
                continue
            for hook in document["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://{host.NODE_IP}:{WEBHOOK_PORT}{path}", "caBundle": ca}
            document["metadata"]["name"] = f"cnpg-{document['metadata']['name']}"
            response = self.api.ensure(document)
            assert response.ok, response.body

    # -- helpers for tests --------------------------------------------------------------------------------
    def kubeconfig(self) -> Path:
        return self.kubeconfigs["admin"]

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`kubectl ARGS` as the cluster's admin; the caller decides what a failure means."""
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig()), *args],
                              capture_output=True, text=True, timeout=timeout)

    # -- stop -----------------------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Everything back as it was; returns what could not be removed (empty when clean). Every step runs
        even if one before it fails or is interrupted (Ctrl-C during a teardown must not strand the node)."""
        interrupted = None
        steps = [
            self._evict_pods,
            self._stop_processes,
            lambda: host.kill_containers(self.runc_root, self.containerd_socket),
            lambda: host.kill_processes_mentioning(str(self.work)),
            lambda: host.unmount_under(self.work),
            lambda: host.remove_network(self.before),
            lambda: host.run(str(self.kube_bin / "kube-proxy"), "--cleanup", check=False),
            host.remove_chains,
            host.remove_ipsets,
            host.remove_cgroups,
            self.before.remove_shared_entries,
            lambda: shutil.rmtree(self.work, ignore_errors=True),
        ]
        for step in steps:
            try:
                step()
            except BaseException as error:  # noqa: BLE001 - finish the teardown, then re-raise
                interrupted = interrupted or error
        if isinstance(interrupted, KeyboardInterrupt):
            raise interrupted
        return self.leftovers() + ([f"teardown step failed: {interrupted!r}"] if interrupted else [])

    def _stop_processes(self) -> None:
        for name in reversed(list(self.processes)):
            stop_process(self.processes[name], grace=5)

    @classmethod
    def reclaim_stale(cls, kube_bin: Path, tools: Path, images: Path) -> list[str]:
        """Tear down a node an earlier run left behind (killed before its teardown): its bridge still exists.
        Returns what was found."""
        if host.run("ip", "link", "show", host.BRIDGE, check=False).returncode != 0:
            return []
        found = sorted({Path(p) for p in host.work_dirs_in_use("airflow-node-")})
        for work in found or [None]:
            stale = cls(kube_bin, tools, images, work=work or Path(tempfile.mkdtemp(prefix="airflow-node-")))
            stale.before.ip_forward, stale.before.netns = "0", set()
            stale.before.shared = {d: None for d in host.SHARED_DIRS}
            stale.stop()
        return [str(w) for w in found]

    def _evict_pods(self) -> None:
        """Pods deleted at once (no grace), so that kubelet tears down their networks and volumes itself."""
        kubelet = self.processes.get("kubelet")
        if self.api is None or kubelet is None or kubelet.poll() is not None:
            return
        pods = self.api.request("GET", "/api/v1/pods").body.get("items", [])
        for pod in pods:
            meta = pod["metadata"]
            self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                             {"gracePeriodSeconds": 0})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.ctr("containers", "list", "-q", check=False).stdout.strip():
                return
            time.sleep(0.5)

    def leftovers(self) -> list[str]:
        found = []
        if host.run("ip", "link", "show", host.BRIDGE, check=False).returncode == 0:
            found.append(f"interface {host.BRIDGE}")
        found += [f"network namespace {n}" for n in set(host.network_namespaces()) - self.before.netns]
        found += host.iptables_chains()
        found += [f"ipset {name}" for name in host.ipsets()]
        found += host.leftover_cgroups()
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4].startswith(str(self.work))]
        found += [f"mount {m}" for m in mounts]
        found += [f"process {name}" for name, p in self.processes.items() if p.poll() is None]
        if host.IP_FORWARD.read_text().strip() != self.before.ip_forward:
            found.append("net.ipv4.ip_forward changed")
        if self.work.exists():
            found.append(f"directory {self.work}")
        found += [f"file {entry}" for entry in self.before.new_shared_entries()]
        return found
