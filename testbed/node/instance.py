"""A branch-like instance deployed on the test node through the real engine, and the REST API of its Airflow.

The servers the instance needs beside the cluster run on the node's bridge address, where pods reach them: an
S3 endpoint (moto's server) and a git server (`git daemon`) holding the DAGs git-sync delivers. The stand-in
images differ from upstream where Debian forces it (images/standins.py); the stack says so through its
ordinary settings, and the program runs unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import requests
from pulumi import automation as auto

from testbed.apiserver import KubeAPI, _free_ports
from testbed.node import host
from testbed.node.pods import PROBE_FUNCTION
from testbed.processes import stop as stop_process

ROOT = Path(__file__).resolve().parents[2]

SMOKE_DAG = '''
from datetime import datetime

from airflow.sdk import dag, task
''' + PROBE_FUNCTION + '''


@dag(dag_id="node_smoke", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def node_smoke():
    @task
    def hello():
        import os
        import socket
        print("hello from a task pod", socket.gethostname())
        # Airflow's task runner itself sets AIRFLOW__DATABASE__SQL_ALCHEMY_CONN to a blocking placeholder; what
        # must not be there is a real database URL.
        print("database URL in env:", any("postgresql" in value for value in os.environ.values()))

    hello()


@dag(dag_id="node_long", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def node_long():
    @task
    def tick():
        import time
        for i in range(45):
            print(f"tick {i}", flush=True)
            time.sleep(1)

    tick()


@dag(dag_id="node_paths", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def node_paths():
    @task
    def probe_from_a_task_pod():
        from airflow.sdk import get_current_context

        probe(get_current_context()["dag_run"].conf["targets"])

    probe_from_a_task_pod()


@dag(dag_id="node_kerberos", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def node_kerberos():
    @task
    def use_the_instance_ticket():
        import os
        import subprocess

        from airflow.sdk import get_current_context

        print("keytab mounted:", any(os.path.exists(p) for p in ("/etc/airflow-keytab", "/etc/airflow-api-keytab")))
        for command in (["klist"], ["kvno", get_current_context()["dag_run"].conf["service"]]):
            done = subprocess.run(command, capture_output=True, text=True)
            print(f"{command[0]} exit {done.returncode}:", done.stdout, done.stderr, flush=True)

    use_the_instance_ticket()


node_smoke()
node_long()
node_paths()
node_kerberos()
'''


class GitServer:
    """A bare repository with our DAGs, served by `git daemon` on the node's bridge address."""

    def __init__(self, work: Path):
        self.work = work
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        source, served = self.work / "src", self.work / "served"
        source.mkdir(parents=True)
        (source / "dags.py").write_text(SMOKE_DAG)
        git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
        subprocess.run([*git, "init", "-q", str(source)], check=True)
        subprocess.run([*git, "-C", str(source), "add", "."], check=True)
        subprocess.run([*git, "-C", str(source), "commit", "-qm", "DAGs for the node test"], check=True)
        served.mkdir()
        subprocess.run(["git", "clone", "-q", "--bare", str(source), str(served / "dags.git")], check=True)
        # A port found free can be taken before git binds it (the S3 server on the same address asks the kernel
        # for any port), and then git exits at once: try another. ls-remote has a timeout because a port taken
        # by an HTTP server accepts the connection and never answers git's protocol.
        for _ in range(5):
            (port,) = _free_ports(1)
            self.process = subprocess.Popen(
                ["git", "daemon", "--reuseaddr", f"--listen={host.NODE_IP}", f"--port={port}", "--export-all",
                 f"--base-path={served}", str(served)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            url = f"git://{host.NODE_IP}:{port}/dags.git"
            deadline = time.monotonic() + 20
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    if subprocess.run(["git", "ls-remote", url], capture_output=True, timeout=5).returncode == 0:
                        return url
                except subprocess.TimeoutExpired:
                    pass
                time.sleep(0.2)
            stop_process(self.process, grace=1)
        raise AssertionError("git daemon did not start on any of five ports")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process, grace=5)
        shutil.rmtree(self.work, ignore_errors=True)


@dataclass
class Airflow:
    """The instance's REST API, reached from the host through its Service's ClusterIP, as its admin."""

    base: str
    password: str = field(repr=False)
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def login(self) -> None:
        token = self.session.post(f"{self.base}/auth/token", json={"username": "admin", "password": self.password},
                                  timeout=30)
        token.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def login_within(self, timeout: float) -> None:
        """login, retried while the api-server restarts or its database is away (an update, an upgrade)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.login()
            except requests.RequestException as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no login in {timeout:.0f}s: {error}") from error
                time.sleep(2)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(f"{self.base}/api/v2{path}", timeout=30, **kwargs)

    def call(self, method: str, path: str, body: dict) -> dict:
        response = self.session.request(method, f"{self.base}/api/v2{path}", json=body, timeout=30)
        assert response.ok, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self.get(f"/dags/{dag_id}").ok:
            assert time.monotonic() < deadline, f"DAG {dag_id} was not parsed within {timeout}s"
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        return self.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def run_to_end(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """The run's final state (success or failed). While a fault is being recovered from, the API may fail to
        answer for a while; that is waited out like any other state."""
        deadline, state = time.monotonic() + timeout, None
        while state not in ("success", "failed"):
            assert time.monotonic() < deadline, f"run {run_id} of {dag_id} still {state} after {timeout}s"
            try:
                state = self.get(f"/dags/{dag_id}/dagRuns/{run_id}").json().get("state")
            except (requests.RequestException, ValueError) as error:
                state = f"unknown ({error.__class__.__name__})"
            time.sleep(1)
        return state

    def uploaded_log(self, dag_id: str, run_id: str, task_id: str, marker: str, timeout: float = 60) -> str:
        """The finished task's log once it holds `marker`: a run is marked a success seconds before its pod has
        uploaded the log, and until then the API server cannot read it anywhere."""
        deadline = time.monotonic() + timeout
        while marker not in (log := self.log(dag_id, run_id, task_id)):
            assert time.monotonic() < deadline, log
            time.sleep(1)
        return log

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        found = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return found.json() if found.ok else {}

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        found = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                         params={"full_content": "true"}, headers={"Accept": "application/json"})
        assert found.ok, f"log: {found.status_code} {found.text}"
        # Structured log lines (the task's prints are `event`s) or, from an older source, plain text.
        content = found.json().get("content")
        if isinstance(content, list):
            return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in content)
        return str(content)


def service_url(api: KubeAPI, namespace: str, component: str) -> str:
    services = api.request("GET", f"/api/v1/namespaces/{namespace}/services").body["items"]
    for service in services:
        if service["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component:
            port = service["spec"]["ports"][0]["port"]
            return f"http://{service['spec']['clusterIP']}:{port}"
    raise LookupError(f"no {component} Service in {namespace}")


def items(api: KubeAPI, path: str) -> list[dict]:
    return api.request("GET", path).body.get("items", [])


def set_config(stack: auto.Stack, values: dict) -> None:
    from components.settings.stack_files import config_text

    for key, value in values.items():
        stack.set_config(f"airflow-platform:{key}", auto.ConfigValue(config_text(value)))


ACCESS_KEY, SECRET_KEY = "node-access-key", "node-secret-key"
# One key per job, as the settings demand; moto accepts any.
LOG_KEY, LOG_SECRET = "node-log-key", "node-log-secret"


def aws_client(url: str, service: str = "s3", key: str = ACCESS_KEY, secret: str = SECRET_KEY):
    """A boto3 client of moto's server on the bridge (S3, or its IAM), by default with the provisioning key."""
    return boto3.client(service, endpoint_url=url, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1")


def object_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    """Every key in `bucket` under `prefix`, all pages."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def open_branch_stack(name: str, kubeconfig: Path, s3_url: str, dag_repo: str, work: Path) -> auto.Stack:
    """A branch environment's stack (the dev stack's settings under the branch template's sizes, disposable) on
    the test node, with the stand-in images' settings (images/standins.py), its bucket on `s3_url` and its DAGs
    from `dag_repo`."""
    import engine
    from images import standins
    from envs.template import dev_template
    from testbed.stacks import stack_file_config

    shutil.copy(engine.ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    backend = engine.Backend(url=f"file://{work}", passphrase="node-test", extra_env={"KUBECONFIG": str(kubeconfig)})
    stack = engine.open_stack(name, backend, work_dir=work)
    dev, branch = stack_file_config("dev"), dev_template()
    # What `envs create` gives a branch environment: dev's settings under the branch template's sizes, which is
    # also what fits a two-core node with room for task pods and a rolling update.
    set_config(stack, {
        **dev,
        **branch,
        "instance": name,
        **standins.STACK_CONFIG,
        "s3": {**dev["s3"], **branch["s3"], "endpointUrl": s3_url, "bucket": f"{name}-logs"},
        "gitSync": {"enabled": True, "repo": dag_repo, "ref": "main", "periodSeconds": 5},
    })
    for key, value in (("s3AccessKeyId", ACCESS_KEY), ("s3SecretAccessKey", SECRET_KEY),
                       ("s3LogAccessKeyId", LOG_KEY), ("s3LogSecretAccessKey", LOG_SECRET)):
        stack.set_config(f"airflow-platform:{key}", auto.ConfigValue(value, secret=True))
    return stack


class S3OnBridge:
    """moto's server on the node's bridge address: the engine provisions the bucket there, pods write there.

    `down()` stops the endpoint and `up()` brings it back on the same address with the same objects (moto keeps
    its buckets in this process, not in the server), as a store's outage would."""

    def __init__(self) -> None:
        self.port = 0
        self.server = None

    def up(self) -> str:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address=host.NODE_IP, port=self.port)
        self.server.start()
        address, self.port = self.server.get_host_and_port()
        return f"http://{address}:{self.port}"

    def down(self) -> None:
        self.server.stop()

    def __enter__(self) -> S3OnBridge:
        self.url = self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()
