"""The fixtures of the tests that check what we render against the real Airflow 3.3.2: the three stacks and one probe
of each in the Airflow venv (both once for the folder), and a throwaway PostgreSQL cluster (one per test module that
asks for it). The Airflow venv itself (`airflow_python`) is tests/conftest.py's: tests/kdc/ uses it too."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.airflow.rendered_stacks import STACKS, Rendered, run_probe


@pytest.fixture(scope="package")
def stacks() -> dict[str, Rendered]:
    return {name: Rendered(name) for name in STACKS}


@pytest.fixture(scope="package")
def probes(airflow_python, stacks, tmp_path_factory) -> dict[str, dict]:
    """One probe per stack, run side by side (each is mostly Airflow's import time)."""
    with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
        futures = {
            name: pool.submit(run_probe, airflow_python, tmp_path_factory.mktemp(f"probe-{name}"), rendered)
            for name, rendered in stacks.items()
        }
        return {name: future.result() for name, future in futures.items()}


def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres") or shutil.which("initdb")
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on a free localhost port (initdb refuses root: as `postgres` then).
    Yields (port, run_sql)."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and there is no runuser to drop to the `postgres` user")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="airflow-platform-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sockets"
    for path in (data, sockets):
        path.mkdir()
        if as_user:
            shutil.chown(path, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*argv, **kwargs):
        return subprocess.run([*as_user, *map(str, argv)], check=True, capture_output=True, text=True, timeout=60,
                              **kwargs)

    started = False
    try:
        # Sockets trust the superuser (test set-up only); TCP, which Airflow uses, checks passwords.
        run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256")
        run(bin_dir / "pg_ctl", "-D", data, "-l", sockets / "server.log", "-w", "-t", "30", "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        started = True

        def sql(statement: str, database: str = "postgres"):
            return run(bin_dir / "psql", "-h", sockets, "-p", port, "-U", "postgres", "-d", database,
                       "-v", "ON_ERROR_STOP=1", "-c", statement)

        yield port, sql
    except subprocess.CalledProcessError as e:
        pytest.fail(f"could not start PostgreSQL: {e.cmd}\n{e.stdout}\n{e.stderr}")
    finally:
        if started:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
