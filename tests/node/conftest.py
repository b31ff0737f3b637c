"""The test node (testbed/node/cluster.py) for every test in this folder: started once, torn down after the
folder's last test, and the teardown fails the run if it left anything on the host. On it, one instance of the
program (a branch-like stack, `deployed`) serves every module that needs Airflow running: the instance's own
tests, then the NetworkPolicy paths, then the faults, then an update that turns Kerberos on, then one that turns
backups on, then restores of those backups into new stacks; destroying it comes last. The upgrade modules (Airflow,
then PostgreSQL) deploy stacks of their own."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from testbed.apiserver import _script, binaries

BUILD_TIMEOUT = 3600


def _unavailable(reason: str):
    if os.environ.get("AIRFLOW_PLATFORM_NODE") == "require" or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def node():
    from testbed.node import host
    from testbed.node.cluster import Node

    if missing := os.environ.get("AIRFLOW_PLATFORM_NODE_MISSING"):
        _unavailable(missing)
    if missing := host.missing_tools():
        _unavailable(f"the test node needs {', '.join(missing)} (scripts/test installs the Debian packages as root)")
    try:
        kube_bin = binaries()
        tools = _script("install-node-tools", BUILD_TIMEOUT)
        images = _script("build-node-images", BUILD_TIMEOUT)
    except RuntimeError as error:
        _unavailable(f"no test node: {error}")

    if stale := Node.reclaim_stale(kube_bin, Path(tools), Path(images)):
        print(f"\nreclaimed a test node an earlier run left running: {stale}")
    cluster = Node(kube_bin, Path(tools), Path(images))
    try:
        cluster.start()
    except BaseException:
        print(cluster.log_tail(60))
        leftovers = cluster.stop()
        assert not leftovers, f"the test node left {leftovers}"
        raise
    print(f"\ntest node started: {cluster.timings}")
    yield cluster
    leftovers = cluster.stop()
    assert not leftovers, f"tearing the test node down left {leftovers} on the host"


# Modules in the order they use the one instance: what breaks things runs after what observes them.
MODULE_ORDER = ("test_cluster", "test_images", "test_instance", "test_network_policies", "test_faults",
                "test_kerberos", "test_backups", "test_restore", "test_upgrade", "test_postgres_upgrade")


def pytest_collection_modifyitems(items):
    """Reorders this folder's tests among themselves, in the slots they already hold; other tests keep theirs."""
    here = Path(__file__).parent

    def rank(item):
        module = Path(str(item.fspath)).stem
        position = MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER)
        return (item.get_closest_marker("destroys_instance") is not None, position)

    slots = [i for i, item in enumerate(items) if Path(str(item.fspath)).parent == here]
    ordered = sorted((items[i] for i in slots), key=rank)  # stable: the order within a module stays as written
    for slot, item in zip(slots, ordered):
        items[slot] = item


def pytest_configure(config):
    config.addinivalue_line("markers", "destroys_instance: destroys the node's shared instance; runs last")


@pytest.fixture(scope="package")
def s3_server(node):
    """The S3 endpoint on the node's bridge, which a fault test may take down and bring back."""
    from testbed.node.instance import S3OnBridge

    with S3OnBridge() as server:
        yield server


@pytest.fixture(scope="package")
def s3_on_bridge(s3_server):
    return s3_server.url


@pytest.fixture(scope="package")
def dag_repo(node, tmp_path_factory):
    from testbed.node.instance import GitServer

    server = GitServer(tmp_path_factory.mktemp("git"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="package")
def deployed(node, s3_on_bridge, dag_repo, tmp_path_factory):
    engine = pytest.importorskip("engine")
    try:
        engine.pulumi_bin()
    except engine.ToolchainMissing as error:
        _unavailable(str(error))
    from testbed.node.instance import open_branch_stack

    name = f"br-node-{secrets.token_hex(3)}"
    stack = open_branch_stack(name, node.kubeconfig(), s3_on_bridge, dag_repo, tmp_path_factory.mktemp("node-stack"))
    started = time.monotonic()
    try:
        up = stack.up(color="never", on_output=print)
    except Exception:
        print(node.log_tail(40))
        raise
    up_seconds = time.monotonic() - started
    print(f"\nup of {name} on the node: {up_seconds:.0f}s, {up.summary.resource_changes}")
    yield stack, up, up_seconds
    # Whatever a failed test left: the engine's destroy, the way a branch environment goes.
    if stack.export_stack().deployment.get("resources"):
        engine.destroy(stack)


@pytest.fixture(scope="package")
def backed_up(node, deployed):
    """The instance after an update that turns backups on, once its first base backup has ended; the backup
    tests check what landed, the restore tests restore from it."""
    from testbed.node.backups import turn_backups_on

    stack, _, _ = deployed
    return turn_backups_on(node, stack)


@pytest.fixture(scope="package")
def airflow(node, deployed):
    from testbed.node.instance import Airflow, service_url

    _, up, _ = deployed
    client = Airflow(service_url(node.api, up.outputs["namespace"].value, "api-server"), up.outputs["admin_password"].value)
    client.login()
    return client
