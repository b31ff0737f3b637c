"""The test node (tests/node/cluster.py) for every test in this folder: started once, torn down after the
folder's last test, and the teardown fails the run if it left anything on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.apiserver import _script, binaries

BUILD_TIMEOUT = 3600


def _unavailable(reason: str):
    if os.environ.get("AIRFLOW_PLATFORM_NODE") == "require" or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def node():
    from tests.node import host
    from tests.node.cluster import Node

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
