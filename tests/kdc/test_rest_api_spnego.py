"""Kerberos (SPNEGO) on the REST API, proven with the real Airflow 3.3.2 api-server and a real MIT KDC.

The stack is rendered with `kerberos.apiAuth` and LDAP login; the api-server then runs here as its pod would
(the ConfigMap and Secret as its environment, its volumes on this machine: the plugin from the api-plugins
ConfigMap, the HTTP keytab from its Secret, our krb5.conf), with SQLite instead of the instance's PostgreSQL
and pykerberos (Airflow's `kerberos` extra) beside the cached Airflow venv. Clients are `curl --negotiate`,
a real GSSAPI/SPNEGO exchange with the KDC: one with a ticket of a principal that has an Airflow user gets
through, one without a ticket is challenged and refused, one whose principal has no user is forbidden, a
forged token is refused, and a person's password login (a Bearer JWT) still works beside it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from testbed.harness import run_stack
from testbed.kdc import free_port
from testbed.pod_view import PodView
from testbed.processes import stop

pytestmark = pytest.mark.slow

PRINCIPAL = "analytics/airflow-api.example.org"
CLIENT = "svc-reports"
STRANGER = "stranger"
PYKERBEROS = "pykerberos==1.2.4"
START_TIMEOUT = 300
LDAP = {"mode": "ldap", "ldapUri": "ldap://127.0.0.1:1", "ldapSearchBase": "ou=people,dc=example,dc=org"}


@pytest.fixture(scope="module")
def pykerberos_site(airflow_python) -> Path:  # noqa: F811
    """pykerberos for the Airflow venv's Python, in a directory of its own (the shared venv stays as built)."""
    cache = Path(os.environ.get("AIRFLOW_PLATFORM_CACHE") or Path.home() / ".cache" / "airflow-platform")
    site = cache / f"airflow-venv-{PYKERBEROS.replace('==', '-')}"
    stamp = site / ".stamp"
    if not stamp.exists():
        shutil.rmtree(site, ignore_errors=True)
        result = subprocess.run(
            [str(airflow_python), "-m", "pip", "install", "--quiet", "--target", str(site), PYKERBEROS],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(f"could not build {PYKERBEROS} (needs gcc and libkrb5-dev, see ensure_kdc):\n{result.stderr[-3000:]}")
        stamp.write_text(PYKERBEROS)
    return site


@pytest.fixture(scope="module")
def api(kdc, airflow_python, pykerberos_site, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("api")
    for name in (PRINCIPAL, CLIENT, STRANGER, "HTTP/localhost"):
        kdc.add_principal(name)
    keytab = kdc.keytab(root / "airflow.keytab", PRINCIPAL).read_bytes()
    http_keytab = kdc.keytab(root / "http.keytab", "HTTP/localhost").read_bytes()
    run = run_stack(
        {
            "kerberos": {"enabled": True, "principal": kdc.principal(PRINCIPAL), "realm": kdc.realm,
                         "kdcs": [kdc.kdc_address], "apiAuth": True},
            "auth": LDAP,
        },
        {"kerberosKeytab": base64.b64encode(keytab).decode(), "kerberosApiKeytab": base64.b64encode(http_keytab).decode()},
        stack="dev",
    )
    spec = run.one("Deployment", "-api-server").inputs["spec"]["template"]["spec"]
    pod = PodView(run, spec, root / "volumes", root / "claims")
    container = pod.container()
    port = free_port()
    home = root / "home"
    (home / "plugins").mkdir(parents=True)
    # The plugin as the pod sees it, at the plugins folder of this AIRFLOW_HOME.
    shutil.copy(pod.mapped(container, "/opt/airflow/plugins/kerberos_api.py"), home / "plugins")
    pod_env = {
        **run.one("ConfigMap", "-config").inputs["data"],
        **run.one("Secret", "-secrets").inputs["stringData"],
        **{e["name"]: e["value"] for e in container["env"]},
    }
    env = {
        "PATH": os.environ["PATH"], "HOME": str(root), "LC_ALL": "C.UTF-8",
        **{name: pod.mapped(container, value) for name, value in pod_env.items()},
        # What differs from the pod: a local database, no S3, this address, pykerberos beside the venv.
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "PYTHONPATH": str(pykerberos_site),
    }
    assert env["KRB5_KTNAME"] == f"FILE:{pod.dirs['api-keytab']}/http.keytab"
    airflow = str(airflow_python.parent / "airflow")

    def cli(*args: str, timeout: int = 600) -> None:
        result = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"airflow {' '.join(args[:2])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"

    cli("db", "migrate")
    password = secrets.token_urlsafe(16)
    cli("users", "create", "--username", CLIENT, "--role", "Viewer", "--email", "svc@example.org",
        "--firstname", "Svc", "--lastname", "Reports", "--password", password)
    args = [a for a in container["args"]]
    args[args.index("--port") + 1] = str(port)
    args[args.index("--workers") + 1] = "1"
    log = root / "api-server.log"
    process = subprocess.Popen([airflow, *args, "--host", "127.0.0.1"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    base = f"http://localhost:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"the api-server exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        try:
            urllib.request.urlopen(f"{base}/api/v2/version", timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the api-server did not answer within {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
    try:
        yield {"base": base, "krb5_conf": env["KRB5_CONFIG"], "root": root, "password": password, "log": log}
    finally:
        stop(process, grace=20)


def ticket(kdc, api, name: str | None) -> dict:
    """A client's environment: our krb5.conf and a cache with a ticket of `name` (None: an empty cache)."""
    cache = api["root"] / f"client-{name or 'none'}.cc"
    env = {"PATH": os.environ["PATH"] + ":/usr/sbin", "KRB5_CONFIG": api["krb5_conf"], "KRB5CCNAME": f"FILE:{cache}"}
    if name:
        keytab = kdc.keytab(api["root"] / f"{name}.keytab", name)
        subprocess.run(["kinit", "-k", "-t", str(keytab), kdc.principal(name)], env=env, check=True, timeout=20)
    return env


def curl(api, env: dict, path: str, *options: str) -> tuple[int, str, str]:
    """(status, response headers, body) of a GET, with curl's SPNEGO when the caller asks for it."""
    headers, body = api["root"] / "headers", api["root"] / "body"
    result = subprocess.run(
        ["curl", "-sS", "-D", str(headers), "-o", str(body), "-w", "%{http_code}", *options, f"{api['base']}{path}"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout), headers.read_text().lower(), body.read_text()


def test_a_client_with_a_ticket_gets_through_the_rest_api(kdc, api):
    status, headers, body = curl(api, ticket(kdc, api, CLIENT), "/api/v2/dags", "--negotiate", "-u", ":")
    assert status == 200, (body, api["log"].read_text()[-3000:])
    assert "dags" in json.loads(body)
    # curl first gets the challenge, then sends its token; the final answer carries the server's
    # mutual-authentication token.
    assert "www-authenticate: negotiate " in headers


def test_a_client_without_a_ticket_is_challenged_and_refused(kdc, api):
    status, headers, _ = curl(api, ticket(kdc, api, None), "/api/v2/dags", "--negotiate", "-u", ":")
    assert status == 401
    assert "www-authenticate: negotiate" in headers


def test_a_principal_without_an_airflow_user_is_forbidden(kdc, api):
    status, _, body = curl(api, ticket(kdc, api, STRANGER), "/api/v2/dags", "--negotiate", "-u", ":")
    assert status == 403
    assert f"{kdc.principal(STRANGER)} has no active Airflow user {STRANGER}" in body


def test_a_forged_token_is_refused(kdc, api):
    forged = base64.b64encode(b"\x60\x82 not a kerberos token").decode()
    status, _, _ = curl(api, {"PATH": os.environ["PATH"]}, "/api/v2/dags", "-H", f"Authorization: Negotiate {forged}")
    assert status == 401


def test_password_login_of_people_still_works_beside_it(api):
    request = urllib.request.Request(
        f"{api['base']}/auth/token",
        data=json.dumps({"username": CLIENT, "password": api["password"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    token = json.load(urllib.request.urlopen(request, timeout=60))["access_token"]
    status, _, body = curl(api, {"PATH": os.environ["PATH"]}, "/api/v2/dags", "-H", f"Authorization: Bearer {token}")
    assert status == 200, body
