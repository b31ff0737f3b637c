"""What every benchmark shares: medians, a scratch Pulumi project with a file backend and a local S3 endpoint,
and the config of the stacks we measure.

The machine these run on is shared and noisy, so a figure is never one run: each is the median of `repeat`
runs, and a ratio is taken between two operations run alternately in the same loop, so that a burst of load
from a neighbour hits both.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "bench-passphrase"
ACCESS_KEY, SECRET_KEY = "bench-access-key", "bench-secret-key"
# One key per job, as on a real store; the local endpoint accepts any.
JOB_SECRETS = {
    "s3AccessKeyId": ACCESS_KEY, "s3SecretAccessKey": SECRET_KEY,
    "s3LogAccessKeyId": "bench-log-key", "s3LogSecretAccessKey": "bench-log-secret",
    "s3BackupAccessKeyId": "bench-backup-key", "s3BackupSecretAccessKey": "bench-backup-secret",
}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: on a loaded machine, wall time is mostly waiting."""
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


@dataclass
class Scratch:
    """A scratch project: our Pulumi.yaml, the repository's virtualenv where Pulumi.yaml names it, a file
    backend and a moto S3 server on loopback (what scripts/local-up and the end-to-end tests use)."""

    directory: Path
    endpoint: str
    _server: Any

    @classmethod
    def start(cls) -> Scratch:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
        directory = Path(tempfile.mkdtemp(prefix="airflow-bench-"))
        shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
        (directory / ".venv").symlink_to(ROOT / ".venv")
        (directory / "state").mkdir()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(directory, f"http://{host}:{port}", server)

    def stop(self) -> None:
        self._server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def backend_url(self) -> str:
        return f"file://{self.directory / 'state'}"

    def backend(self):
        import engine

        return engine.Backend(url=self.backend_url, passphrase=PASSPHRASE)

    def rendered(self, stack: str) -> Path:
        return self.directory / "rendered" / stack

    def env(self) -> dict[str, str]:
        """For subprocesses (`python -m envs`, the probes): the same backend, and this checkout importable."""
        return {**os.environ, "PULUMI_BACKEND_URL": self.backend_url, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def local_config(scratch: Scratch, stack: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The `local` stack of scripts/local-up: defaults, rendered to YAML, backups on, the local S3 endpoint."""
    plain = {
        "kubernetesRenderDir": str(scratch.rendered(stack)),
        "s3": {"endpointUrl": scratch.endpoint, "forceDestroy": True, "bucket": f"{stack}-bench-logs"},
        "postgres": {"backups": {"enabled": True}},
    }
    return plain, dict(JOB_SECRETS)


def team_config(scratch: Scratch, stack: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A team stack as `Pulumi.team-search.yaml` has it, rendered, on the local endpoint."""
    from testbed.stacks import stack_file_config

    plain = stack_file_config("team-search")
    plain["kubernetesRenderDir"] = str(scratch.rendered(stack))
    plain["s3"] = {**(plain.get("s3") or {}), "endpointUrl": scratch.endpoint, "bucket": f"{stack}-bench-logs"}
    return plain, {**JOB_SECRETS, "authOidcClientSecret": "bench-oidc-secret", "gitSyncToken": "bench-git-token"}


def configure(stack, plain: dict[str, Any], secrets: dict[str, str]) -> None:
    """Structured values as JSON text, exactly as `python -m envs` sets a branch stack's config."""
    from pulumi import automation as auto

    from envs.cli import config_map

    stack.set_all_config({key: auto.ConfigValue(value=text, secret=secret)
                          for key, (text, secret) in config_map(plain, secrets).items()})


def run_probe(args: list[str], env: dict[str, str] | None = None, timeout: int = 900) -> dict[str, Any]:
    """`python -m bench.probe ARGS` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-m", "bench.probe", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"probe {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
