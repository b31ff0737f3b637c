"""Where the test node's images differ from upstream, and why: the one place that says so.

The one-node test cluster (tests/node/) runs the program unchanged, with images built on the machine from Debian
bookworm's packages and Go modules (scripts/build-node-images), because no registry can be reached. Two upstream
choices cannot be matched there, so the test stack sets them, through settings the program already has:

- Python 3.11 instead of the official image's 3.12: bookworm's python3 is 3.11, and the Airflow image installs
  Airflow into a venv of that interpreter. The test stack sets `airflowPythonVersion: "3.11"`, so the program
  renders `apache/airflow:<version>-python3.11`.
- PostgreSQL 15 instead of 17: bookworm ships postgresql-15 only. The test stack sets `postgres.version: 15`,
  so the program renders `components.images.postgres(15)`.

A third difference needs no stack setting because the program does not render it: the CloudNativePG operator is
1.29.0, not the 1.30.x the production clusters run, since the module proxy withholds two of 1.30.1's dependencies
(toolchain-fixtures/cloudnative-pg/go.mod); its version is read from that go.mod here.

The builder (images/build.py) and the tests import these names; nothing else repeats them.
"""

from __future__ import annotations

import re
from pathlib import Path

AIRFLOW_PYTHON = "3.11"
POSTGRES_MAJOR = 15

# The stack config that selects the stand-ins, keys as in Pulumi.<stack>.yaml (without the project prefix).
# `postgres` is a section: merge it into a stack's own `postgres` section rather than replacing that.
STACK_CONFIG = {"airflowPythonVersion": AIRFLOW_PYTHON, "postgres": {"version": POSTGRES_MAJOR}}

_CNPG_GO_MOD = Path(__file__).resolve().parent.parent / "toolchain-fixtures" / "cloudnative-pg" / "go.mod"


def cnpg_operator_version() -> str:
    """The CloudNativePG version scripts/install-node-tools builds, e.g. "1.29.0" (from the wrapper's go.mod)."""
    text = _CNPG_GO_MOD.read_text()
    match = re.search(r"^\s*(?:require\s+)?github\.com/cloudnative-pg/cloudnative-pg v(\d+\.\d+\.\d+)\b", text, re.M)
    if not match:
        raise RuntimeError(f"{_CNPG_GO_MOD} requires no github.com/cloudnative-pg/cloudnative-pg version")
    return match.group(1)


# The operator image: what the operator names itself in the pods it creates (its default
# DefaultOperatorImageName, or OPERATOR_IMAGE_NAME), which copy `/manager` from it in an init container.
CNPG_OPERATOR_IMAGE = f"ghcr.io/cloudnative-pg/cloudnative-pg:{cnpg_operator_version()}"
