"""The instance's Kerberos ticket, proven against a real MIT KDC (testbed/kdc.py) with the real Airflow 3.3.2.

The stack is rendered for the fixture's realm and KDC, then its pods' commands run here as the pods would run
them, with their volumes laid out on this machine (testbed/pod_view.py) and the ticket cache one directory
shared by every pod that claims it:

* the renewer's `airflow kerberos` with exactly the renewer container's env and the keytab from its Secret
  obtains a ticket into the cache, and keeps it valid past the KDC's 30-second ticket lifetime by re-initialising
  and renewing (`kinit -R`) on its own;
* its liveness probe command, as rendered, passes with that ticket and fails with no cache or an expired one;
* every pod that holds the ticket (task pods, scheduler, triggerer, api-server), with only the cache and
  krb5.conf mounted and no keytab, uses it: `klist -s`, then `kvno`, a real TGS exchange for a service
  ticket, as a Kerberized client library does before it talks to that service.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from testbed.harness import run_stack
from testbed.pod_view import PodView
from testbed.processes import stop

pytestmark = pytest.mark.slow

PRINCIPAL = "analytics/airflow-kdc.example.org"
SERVICE = "hive/metastore.example.org"
# The renewer's re-init period in these tests, instead of the settings' minimum of a minute, so that several
# cycles fit into a ticket lifetime of the fixture's KDC (30 s).
REINIT_SECONDS = 5
WAIT = 90


def kerberos_stack(kdc, keytab: bytes, extra_config: dict | None = None, extra_secrets: dict | None = None):
    config = {
        "kerberos": {
            "enabled": True,
            "principal": kdc.principal(PRINCIPAL),
            "realm": kdc.realm,
            "kdcs": [kdc.kdc_address],
            "ccacheStorageClass": "cephfs",
        },
        **(extra_config or {}),
    }
    secrets = {"kerberosKeytab": base64.b64encode(keytab).decode(), **(extra_secrets or {})}
    return run_stack(config, secrets, stack="dev")


def deployment_spec(run, name: str) -> dict:
    return run.one("Deployment", name).inputs["spec"]["template"]["spec"]


def task_pod_spec(run) -> dict:
    return yaml.safe_load(run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])["spec"]


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"] + ":/usr/sbin:/sbin", "HOME": str(home), "LC_ALL": "C", "TZ": "UTC"}


def expires(cache: str, env: dict) -> datetime:
    """When the TGT in `cache` expires, from klist's listing."""
    out = subprocess.run(["klist", "-c", cache], env=env, capture_output=True, text=True, timeout=10, check=True).stdout
    line = next(line for line in out.splitlines() if "krbtgt/" in line)
    return datetime.strptime(" ".join(line.split()[2:4]), "%m/%d/%y %H:%M:%S")


def wait_for(check, what: str, timeout: float = WAIT, diagnose=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout}s\n{diagnose()}")


@pytest.fixture(scope="module")
def stack(kdc, tmp_path_factory):
    kdc.add_principal(PRINCIPAL)
    kdc.add_principal(SERVICE)
    keytab = kdc.keytab(tmp_path_factory.mktemp("keytab") / "airflow.keytab", PRINCIPAL)
    return kerberos_stack(kdc, keytab.read_bytes())


@pytest.fixture(scope="module")
def claims(tmp_path_factory) -> Path:
    """The ReadWriteMany volumes: one directory per claim, shared by every pod below."""
    return tmp_path_factory.mktemp("claims")


@pytest.fixture(scope="module")
def renewer(stack, claims, airflow_python, tmp_path_factory):  # noqa: F811
    """The renewer pod's `airflow kerberos`, running for the whole module."""
    root = tmp_path_factory.mktemp("renewer")
    pod = PodView(stack, deployment_spec(stack, "-kerberos"), root / "volumes", claims, map_tmp=True)
    container = pod.container("renewer")
    home = root / "home"
    env = {**base_env(root), "AIRFLOW_HOME": str(home), **pod.env(container)}
    env["AIRFLOW__KERBEROS__REINIT_FREQUENCY"] = str(REINIT_SECONDS)
    log = root / "renewer.log"
    # The image's entrypoint runs `airflow <args>`.
    argv = [str(airflow_python.parent / "airflow"), *pod.command(container["args"], container)]
    process = subprocess.Popen(argv, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    cache = env["AIRFLOW__KERBEROS__CCACHE"]
    probe = pod.command(container["livenessProbe"]["exec"]["command"], container)

    def holds_ticket() -> bool:
        assert process.poll() is None, f"airflow kerberos exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        return subprocess.run(probe, env=env, timeout=10).returncode == 0

    wait_for(holds_ticket, "the renewer put no valid ticket into the cache", diagnose=lambda: log.read_text()[-3000:])
    try:
        yield {"process": process, "env": env, "cache": cache, "probe": probe, "log": log, "pod": pod, "home": home}
    finally:
        stop(process, grace=15)


def test_renewer_gets_the_instance_ticket_into_the_shared_cache_and_keeps_it_past_its_lifetime(renewer, kdc):
    env, cache = renewer["env"], renewer["cache"]
    assert cache.startswith(str(renewer["pod"].dirs["krb5-ccache"])), "the cache is not on the shared volume"
    listing = subprocess.run(["klist", "-c", cache], env=env, capture_output=True, text=True, timeout=10).stdout
    assert f"Default principal: {kdc.principal(PRINCIPAL)}" in listing
    first_expiry = expires(cache, env)
    # The KDC issues 30-second tickets: only a renewer that re-initialises keeps one valid past that.
    wait_for(lambda: datetime.utcnow() > first_expiry.replace(microsecond=0), "the first ticket did not expire", 60)
    time.sleep(2)
    assert subprocess.run(renewer["probe"], env=env, timeout=10).returncode == 0, "no valid ticket after the first expired"
    assert expires(cache, env) > first_expiry
    assert renewer["process"].poll() is None
    log = renewer["log"].read_text()
    # Each cycle is `kinit -k -t <keytab>` then `kinit -R`: a KDC that refused renewable tickets would make the
    # renewer exit here (and its pod crash-loop).
    assert log.count("Re-initialising kerberos from keytab") >= 3, log[-3000:]
    assert log.count("Renewing kerberos ticket") >= 3, log[-3000:]
    assert "Couldn't" not in log, log[-3000:]
    # $AIRFLOW_HOME is on the pod's read-only root: the renewer may write nothing there but what the image has
    # (airflow.cfg, which this test's empty home lacks) and logs/, a writable emptyDir in the pod.
    assert {p.name for p in renewer["home"].iterdir()} <= {"airflow.cfg", "logs"}


def test_liveness_probe_fails_without_a_cache_and_with_an_expired_ticket(stack, kdc, tmp_path):
    pod = PodView(stack, deployment_spec(stack, "-kerberos"), tmp_path / "volumes", tmp_path / "claims")
    container = pod.container("renewer")
    env = {**base_env(tmp_path), **pod.env(container)}
    probe = pod.command(container["livenessProbe"]["exec"]["command"], container)
    assert subprocess.run(probe, env=env, timeout=10).returncode != 0, "the probe passed with no ticket cache"

    keytab = str(pod.dirs["keytab"] / "airflow.keytab")
    subprocess.run(
        ["kinit", "-l", "3s", "-k", "-t", keytab, "-c", env["AIRFLOW__KERBEROS__CCACHE"], kdc.principal(PRINCIPAL)],
        env=env, check=True, timeout=20,
    )
    assert subprocess.run(probe, env=env, timeout=10).returncode == 0, "the probe failed with a valid ticket"
    time.sleep(4)
    assert subprocess.run(probe, env=env, timeout=10).returncode != 0, "the probe passed with an expired ticket"


@pytest.mark.parametrize("holder", ["task pod", "-scheduler", "-triggerer", "-api-server"])
def test_a_ticket_holder_without_the_keytab_uses_the_ticket(holder, stack, renewer, claims, kdc, tmp_path):
    spec = task_pod_spec(stack) if holder == "task pod" else deployment_spec(stack, holder)
    keytab_secret = stack.one("Secret", "-keytab").k8s_name
    assert not [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == keytab_secret]
    pod = PodView(stack, spec, tmp_path / "volumes", claims)
    container = pod.container()
    env = {**base_env(tmp_path), **pod.env(container)}
    # Only what the pod's env says: the shared cache and our krb5.conf, nothing of the fixture's.
    assert set(env) >= {"KRB5CCNAME", "KRB5_CONFIG"} and "KRB5_KTNAME" not in env
    assert subprocess.run(["klist", "-s"], env=env, timeout=10).returncode == 0
    kvno = subprocess.run(["kvno", kdc.principal(SERVICE)], env=env, capture_output=True, text=True, timeout=20)
    assert kvno.returncode == 0, kvno.stderr
    assert f"{kdc.principal(SERVICE)}: kvno = " in kvno.stdout
