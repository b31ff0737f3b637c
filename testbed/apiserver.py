"""A real kube-apiserver (with etcd) on loopback, for tests that need the API server's own judgement:
validation (built-in types and CRD schemas), admission (Pod Security) and authorization (RBAC).

scripts/install-kube-apiserver builds the binaries once (cached); the server gets a generated admin token
(group system:masters) and a generated service-account signing key, and serves the CloudNativePG and Barman
Cloud plugin CRDs that scripts/fetch-crds provides. A kube-controller-manager runs only the controllers that
finish a deletion, as in a real cluster: the garbage collector (foreground deletion, owner references) and the
namespace controller (a deleted namespace empties, then goes). Nothing else reconciles: no pods are created, and
no namespace gets a `default` ServiceAccount.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60
BUILD_TIMEOUT = 1800


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together, so the kernel cannot hand out one twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _script(name: str, timeout: int) -> str:
    """The last stdout line of one of our cached-build scripts, building on a cold cache."""
    try:
        done = subprocess.run([str(ROOT / "scripts" / name)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"scripts/{name} did not finish in {timeout}s") from None
    if done.returncode != 0:
        raise RuntimeError(f"scripts/{name} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1].split("=", 1)[-1]


def binaries() -> Path:
    return Path(_script("install-kube-apiserver", BUILD_TIMEOUT))


def crd_documents() -> list[dict]:
    directory = Path(_script("fetch-crds", 600))
    return [yaml.safe_load(path.read_text()) for path in sorted(directory.rglob("*.yaml"))]


@dataclass
class Response:
    status: int
    body: dict
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class KubeAPI:
    """Plain HTTPS to the API server, as admin unless `token` says otherwise."""

    url: str
    token: str = field(repr=False)
    ca: str = field(repr=False)
    _paths: dict = field(default_factory=dict, repr=False)
    # One connection for thousands of requests: a TLS handshake each would dominate the RBAC matrix.
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def request(self, method: str, path: str, body: dict | None = None, **params) -> Response:
        response = self._session.request(
            method, self.url + path, json=body, params=params or None, verify=self.ca, timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        warnings = [w for w in response.headers.get("Warning", "").split(", 299 ") if w]
        try:
            payload = response.json()
        except ValueError:
            payload = {"text": response.text}
        return Response(response.status_code, payload, warnings)

    def resource_path(self, api_version: str, kind: str, namespace: str | None) -> str:
        """The collection URL of `kind`, found through discovery (so CRD kinds work as soon as they are served)."""
        key = (api_version, kind)
        if key not in self._paths:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            found = self.request("GET", base)
            for resource in found.body.get("resources", []):
                if resource["kind"] == kind and "/" not in resource["name"]:
                    self._paths[key] = (base, resource["name"], resource["namespaced"])
                    break
            else:
                raise LookupError(f"the API server serves no {kind} in {api_version}")
        base, plural, namespaced = self._paths[key]
        return f"{base}/namespaces/{namespace}/{plural}" if namespaced and namespace else f"{base}/{plural}"

    def create(self, document: dict, dry_run: bool = False) -> Response:
        """POST with strict field validation: an unknown or duplicate field is an error, not a warning."""
        path = self.resource_path(document["apiVersion"], document["kind"], document["metadata"].get("namespace"))
        params = {"fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        return self.request("POST", path, document, **params)

    def ensure(self, document: dict) -> Response:
        """Create unless it exists already (namespaces shared between variants of one stack)."""
        response = self.create(document)
        return Response(200, response.body, response.warnings) if response.status == 409 else response

    def delete(self, document: dict) -> Response:
        path = self.resource_path(document["apiVersion"], document["kind"], document["metadata"].get("namespace"))
        return self.request("DELETE", f"{path}/{document['metadata']['name']}")

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for clients that are not us (the Pulumi kubernetes provider, kubectl)."""
        import base64

        ca = base64.b64encode(Path(self.ca).read_bytes()).decode()
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
            "clusters": [{"name": "fixture", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "admin"}}],
        }))
        path.chmod(0o600)
        return path

    def can(self, user: str, verb: str, resource: str, namespace: str | None, subresource: str = "", group: str = "") -> bool:
        attributes = {"verb": verb, "resource": resource, "group": group, "subresource": subresource}
        if namespace:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": _groups_of(user), "resourceAttributes": attributes},
        }
        response = self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        assert response.ok, response.body
        return bool(response.body["status"].get("allowed"))


def _groups_of(user: str) -> list[str]:
    """The groups the API server gives a service account's token, which SARs must name themselves."""
    if user.startswith("system:serviceaccount:"):
        namespace = user.split(":")[2]
        return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    return ["system:authenticated"]


def _signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class Fixture:
    def __init__(self, bin_dir: Path, work: Path):
        self.bin, self.work = bin_dir, work
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = self.work / f"{name}.log"
        self.logs.append(log)
        handle = log.open("wb")
        self.processes.append(subprocess.Popen([str(self.bin / name), *args], stdout=handle, stderr=subprocess.STDOUT))

    def log_tail(self) -> str:
        return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]) for log in self.logs)

    def start(self) -> KubeAPI:
        client, peer, secure = _free_ports(3)
        self._start("etcd", [
            "--data-dir", str(self.work / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync=true", "--log-level", "warn",
        ])
        token = secrets.token_urlsafe(32)
        (self.work / "tokens.csv").write_text(f"{token},admin,admin-uid,system:masters\n")
        key = self.work / "sa.key"
        _signing_key(key)
        self._start("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1", f"--secure-port={secure}", f"--cert-dir={self.work / 'certs'}",
            f"--token-auth-file={self.work / 'tokens.csv'}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
            "--service-cluster-ip-range=10.96.0.0/16", "--v=1",
        ])
        url = f"https://127.0.0.1:{secure}"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            crt = self.work / "certs" / "apiserver.crt"
            if crt.exists():
                try:
                    api = KubeAPI(url, token, str(crt))
                    if api.request("GET", "/readyz").ok:
                        self._start_controllers(api)
                        return api
                except requests.RequestException:
                    pass
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not become ready:\n{self.log_tail()}")
            time.sleep(0.2)

    def _start_controllers(self, api: KubeAPI) -> None:
        self._start("kube-controller-manager", [
            f"--kubeconfig={api.kubeconfig(self.work / 'controller-manager.kubeconfig')}",
            "--controllers=garbage-collector-controller,namespace-controller",
            "--leader-elect=false", "--secure-port=0", "--v=1",
        ])

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            # A graceful kube-apiserver shutdown takes ~20 s; nothing here outlives the session's temp dir.
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def install_crds(api: KubeAPI, documents: list[dict]) -> None:
    for crd in documents:
        response = api.create(crd)
        assert response.ok, f"CRD {crd['metadata']['name']}: {response.body}"
    deadline = time.monotonic() + 30
    for crd in documents:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        while True:
            conditions = (api.request("GET", path).body.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            assert time.monotonic() < deadline, f"CRD {crd['metadata']['name']} not established: {conditions}"
            time.sleep(0.1)


def unavailable(reason: str):
    """Skip, unless CI or the caller says a missing fixture is a failure."""
    if os.environ.get("AIRFLOW_PLATFORM_KUBE_APISERVER") == "require" or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def running_api_server(bin_dir: Path, crds: list[dict]) -> Iterator[KubeAPI]:
    """A started API server serving `crds`, as admin, stopped (and its files removed) on leaving."""
    work = Path(tempfile.mkdtemp(prefix="kube-apiserver-"))
    fixtures = []
    try:
        for attempt in (1, 2):
            fixtures.append(Fixture(bin_dir, work / str(attempt)))
            fixtures[-1].work.mkdir()
            try:
                api = fixtures[-1].start()
                break
            except RuntimeError:
                # A port someone took between our choosing and etcd binding it: once more, on new ports.
                fixtures[-1].stop()
                if attempt == 2:
                    raise
        install_crds(api, crds)
        yield api
    finally:
        for fixture in fixtures:
            fixture.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_api():
    """A running API server serving our CRDs, as admin; torn down after the session."""
    if missing := os.environ.get("AIRFLOW_PLATFORM_KUBE_APISERVER_MISSING"):
        unavailable(missing)
    try:
        bin_dir = binaries()
        crds = crd_documents()
    except RuntimeError as error:
        unavailable(f"no kube-apiserver fixture: {error}")
    with running_api_server(bin_dir, crds) as api:
        yield api


@pytest.fixture(scope="session")
def kube_apiserver_kubeconfig(kube_api, tmp_path_factory) -> Path:
    """KUBECONFIG for the fixture, as admin: what an engine test (`up` against a real API server) points the
    kubernetes provider at, with no render directory."""
    return kube_api.kubeconfig(tmp_path_factory.mktemp("kubeconfig") / "config")


def skip_await(args):
    """A resource transform marking every Kubernetes object `pulumi.com/skipAwait`: with no nodes and no
    operators nothing here ever becomes ready, so `up` applies each object and does not wait for it."""
    import pulumi

    if not args.custom or not args.type_.startswith("kubernetes:") or args.type_.startswith("pulumi:providers"):
        return None
    props = dict(args.props)
    metadata = props.get("metadata")
    if not isinstance(metadata, dict):
        return None
    annotations = {**(metadata.get("annotations") or {}), "pulumi.com/skipAwait": "true"}
    props["metadata"] = {**metadata, "annotations": annotations}
    return pulumi.ResourceTransformResult(props, args.opts)


def instance_without_awaiting() -> None:
    """Our program, as `pulumi up` runs it, with `skip_await` on every Kubernetes object."""
    import pulumi

    from components.instance import airflow_instance

    pulumi.runtime.register_resource_transform(skip_await)
    airflow_instance()
