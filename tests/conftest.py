import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The program imports `components` from the project root, as the Pulumi language host runs it.
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    """The CloudNativePG and Barman Cloud plugin CRDs at our pinned versions, from scripts/fetch-crds."""
    result = subprocess.run([ROOT / "scripts" / "fetch-crds"], capture_output=True, text=True)
    if result.returncode != 0:
        reason = f"scripts/fetch-crds failed: {result.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(result.stdout.strip())


@pytest.fixture(scope="session")
def kdc(tmp_path_factory):
    """A real MIT KDC on a random loopback port (testbed/kdc.py), stopped at the end of the session."""
    from testbed.kdc import Kdc, missing_tools

    if missing := missing_tools():
        reason = f"no {', '.join(missing)} (scripts/test installs krb5-kdc, krb5-admin-server and krb5-user)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = Kdc(tmp_path_factory.mktemp("kdc")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """The Python of the Airflow venv, built by scripts/airflow-venv when missing (tests/airflow/venv.py)."""
    from tests.airflow.venv import AIRFLOW_VENV, BUILD_TIMEOUT, _tail

    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(AIRFLOW_VENV), "--print-path"], capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"scripts/airflow-venv did not finish in {BUILD_TIMEOUT}s:\n{_tail(e.stderr)}")
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(
            "could not build the Airflow venv these tests need (scripts/airflow-venv, which installs "
            f"apache-airflow and its providers from the package index; exit {proc.returncode}):\n{_tail(proc.stderr)}"
        )
    python = Path(proc.stdout.strip().splitlines()[-1]) / "bin" / "python"
    assert python.exists(), f"scripts/airflow-venv printed {proc.stdout!r}, but {python} does not exist"
    if time.monotonic() - started > 10:
        print(f"built the Airflow venv in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return python


# The session-scoped `kube_api` fixture: a real API server for the tests that need one.
pytest_plugins = ("testbed.apiserver",)


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 endpoint (moto's server) on a random loopback port, for the tests that run the engine."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
