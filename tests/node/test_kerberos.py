"""Kerberos on the node: the node's instance is updated to Kerberos on, with a real MIT KDC on the node's
bridge. The renewer pod gets the instance's ticket into the shared ticket cache (a ReadWriteMany volume), and a
task pod, which never sees the keytab, holds that ticket and uses it: `klist` shows it, and `kvno` gets a
service ticket from the KDC with it, as a Kerberized client library does before it talks to a service.
"""

from __future__ import annotations

import base64
import time

import pytest
from pulumi import automation as auto

from components.kerberos_keytab import CCACHE_PATH
from testbed.node import host
from testbed.node.cluster import SHARED_STORAGE_CLASS
from testbed.node.instance import items, set_config

pytestmark = pytest.mark.slow

PRINCIPAL = "analytics/airflow-node.example.org"
SERVICE = "hive/metastore.example.org"


@pytest.fixture(scope="module")
def kdc_on_bridge(node, tmp_path_factory):
    from testbed.kdc import Kdc, missing_tools

    if missing := missing_tools():
        pytest.fail(f"no {', '.join(missing)} (scripts/test installs krb5-kdc, krb5-admin-server and krb5-user)")
    # Tickets live ten minutes: longer than the renewer's shortest re-init period (a minute), so the cache the
    # task reads always holds a valid one.
    kdc = Kdc(tmp_path_factory.mktemp("kdc"), address=host.NODE_IP, max_life="10m").start()
    try:
        yield kdc
    finally:
        kdc.stop()


@pytest.fixture(scope="module")
def kerberized(node, deployed, kdc_on_bridge, tmp_path_factory):
    """The node's instance after an update that turns Kerberos on."""
    stack, _, _ = deployed
    kdc = kdc_on_bridge
    kdc.add_principal(PRINCIPAL)
    kdc.add_principal(SERVICE)
    keytab = kdc.keytab(tmp_path_factory.mktemp("keytab") / "airflow.keytab", PRINCIPAL)
    set_config(stack, {"kerberos": {
        "enabled": True, "principal": kdc.principal(PRINCIPAL), "realm": kdc.realm, "kdcs": [kdc.kdc_address],
        "ccacheStorageClass": SHARED_STORAGE_CLASS, "reinitFrequencySeconds": 60,
    }})
    stack.set_config("airflow-platform:kerberosKeytab",
                     auto.ConfigValue(base64.b64encode(keytab.read_bytes()).decode(), secret=True))
    started = time.monotonic()
    up = stack.up(color="never", on_output=print)
    print(f"\nKerberos turned on by an update: {time.monotonic() - started:.0f}s, {up.summary.resource_changes}")
    return up


def test_a_task_pod_holds_the_instance_ticket_and_uses_it_without_the_keytab(node, kerberized, kdc_on_bridge, airflow):
    namespace = kerberized.outputs["namespace"].value
    renewers = items(node.api, f"/api/v1/namespaces/{namespace}/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dkerberos")
    assert [p["status"]["phase"] for p in renewers] == ["Running"]

    airflow.login()  # the update restarted the api-server; a new token is cheap
    airflow.wait_for_dag("node_kerberos")
    run_id = airflow.trigger("node_kerberos", {"service": kdc_on_bridge.principal(SERVICE)})
    try:
        state = airflow.run_to_end("node_kerberos", run_id, timeout=300)
    except AssertionError as stuck:
        seen = node.kubectl("get", "pods,events", "-n", namespace)
        pytest.fail(f"{stuck}\n{seen.stdout}{seen.stderr}")
    log = airflow.uploaded_log("node_kerberos", run_id, "use_the_instance_ticket", "kvno exit")
    print(f"\n{log}")
    assert state == "success", log
    assert "keytab mounted: False" in log
    assert "klist exit 0" in log and f"Ticket cache: FILE:{CCACHE_PATH}" in log
    assert f"Default principal: {kdc_on_bridge.principal(PRINCIPAL)}" in log
    assert "kvno exit 0" in log and f"{kdc_on_bridge.principal(SERVICE)}: kvno = " in log
