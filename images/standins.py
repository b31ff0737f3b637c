"""Where the test node's images differ from upstream, and why: the one place that says so.

The one-node test cluster (tests/node/) runs the program unchanged, with images built on the machine from Debian's
packages and Go modules (scripts/build-node-images), because no registry can be reached. What cannot be matched:

- Python 3.11 instead of the official Airflow image's 3.12: the Airflow image is built on bookworm, whose python3
  is 3.11. The test stack sets `airflowPythonVersion: "3.11"`, so the program renders
  `apache/airflow:<version>-python3.11`.
- PostgreSQL and PgBouncer come from trixie (PostgreSQL 17, the program's default major, at trixie's minor;
  PgBouncer 1.24.1, the pinned version), so the program's own references are built and no setting changes.
  `POSTGRES_MAJOR` is the program's default, named here so the builder and the tests say which image they mean.
- The CloudNativePG operator is 1.29.0, not the 1.30.x the production clusters run: the module proxy withholds
  two of 1.30.1's dependencies (toolchain-fixtures/cloudnative-pg/go.mod). The program renders no operator
  version; the CRDs it is checked against elsewhere (scripts/fetch-crds) stay 1.30's.
- git-sync is our stand-in (images/git-sync/git_sync.py) under git-sync's reference: the module proxy serves no
  version of k8s.io/git-sync. It honours the command line the program gives git-sync.

The builder (images/specs.py) and the tests import these names; nothing else repeats them.
"""

from __future__ import annotations

import re
from pathlib import Path

AIRFLOW_PYTHON = "3.11"
POSTGRES_MAJOR = 17

# The stack config that selects the stand-ins, keys as in Pulumi.<stack>.yaml (without the project prefix).

STACK_CONFIG = {"airflowPythonVersion": AIRFLOW_PYTHON}

_CNPG_GO_MOD = Path(__file__).resolve().parent.parent / "toolchain-fixtures" / "cloudnative-pg" / "go.mod"


def cnpg_operator_version() -> str:
    """The CloudNativePG version scripts/install-node-tools builds, e.g. "1.29.0" (from the wrapper's go.mod)."""
    text = _CNPG_GO_MOD.read_text()
    match = re.search(r"^\s*(?:require\s+)?github\.com/cloudnative-pg/cloudnative-pg v(\d+\.\d+\.\d+)\b", text, re.M)
    if not match:
        raise RuntimeError(f"{_CNPG_GO_MOD} requires no github.com/cloudnative-pg/cloudnative-pg version")
    return match.group(1)


_COREDNS_GO_MOD = _CNPG_GO_MOD.parent.parent / "coredns" / "go.mod"


def coredns_version() -> str:
    """The CoreDNS version scripts/install-node-tools builds, e.g. "1.15.0"."""
    match = re.search(r"^\s*(?:require\s+)?github\.com/coredns/coredns v(\d+\.\d+\.\d+)\b", _COREDNS_GO_MOD.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{_COREDNS_GO_MOD} requires no github.com/coredns/coredns version")
    return match.group(1)


# The cluster DNS runs as a pod in kube-system, as on any cluster (the instance's NetworkPolicies name that
# namespace for DNS), from an image of the CoreDNS binary built here.
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:v{coredns_version()}"

# The operator image: what the operator names itself in the pods it creates (its default
# DefaultOperatorImageName, or OPERATOR_IMAGE_NAME), which copy `/manager` from it in an init container.
CNPG_OPERATOR_IMAGE = f"ghcr.io/cloudnative-pg/cloudnative-pg:{cnpg_operator_version()}"
