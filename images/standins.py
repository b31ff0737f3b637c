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
- The Barman Cloud plugin is 0.14.0, not 0.15.0: 0.15.0 needs barman-cloud 0.6.0 and machinery 0.6.0, which the
  module proxy withholds (toolchain-fixtures/plugin-barman-cloud/go.mod). Its two images stand in for upstream's
  under upstream's references of that version: the plugin image is the binary alone at /manager (upstream's is
  UBI micro; the user is the 10001:10001 upstream's Deployment runs it as), and the sidecar is trixie's Python 3.13
  (as upstream's debian13 one) with barman[cloud] at upstream's pin in a venv over Debian's psycopg2 (so nothing
  is compiled), instead of upstream's distroless image with every cloud's extras.
- A second Airflow image, `airflow-previous`, for the upgrade test (tests/node/test_upgrade.py): the Airflow
  before the current one (PREVIOUS_AIRFLOW_VERSION, the pin of images/airflow/requirements-3.2.txt), built by the
  same script from that file and tagged with what the program renders for `airflowVersion` set to it.
- A second PostgreSQL image, `postgres-previous`, for the major-upgrade test (tests/node/test_postgres_upgrade.py):
  PostgreSQL 15 (PREVIOUS_POSTGRES_MAJOR), bookworm's, on the bookworm base, tagged with what the program renders for
  `postgres.version: 15`. Upstream builds every major on one Debian release, because CloudNativePG's in-place major
  upgrade runs the old major's binaries (copied out of the old image by its `prepare` init container) inside the
  new image with pg_upgrade: CloudNativePG's documentation requires both images on the same operating system.
  Debian has no release with both 15 and 17 (bookworm ships 15 only, trixie 17 only), so the two images here are
  on different releases, and the 17 image also carries the two bookworm libraries the 15 binaries link that
  trixie lacks (libicu72, libldap-2.5-0), from bookworm's archive at a low pin priority; its build fails unless
  every shared library of bookworm's postgresql-15 binaries resolves in it (`ldd`). The other libraries they
  link are the same sonames in trixie, newer. A production cluster needs none of this: upstream's images of the
  two majors share their OS.

The builder (images/specs.py) and the tests import these names; nothing else repeats them.
"""

from __future__ import annotations

import re
from pathlib import Path

AIRFLOW_PYTHON = "3.11"
POSTGRES_MAJOR = 17
# The major the PostgreSQL upgrade test starts from (the `postgres-previous` image).
PREVIOUS_POSTGRES_MAJOR = 15

# The stack config that selects the stand-ins, keys as in Pulumi.<stack>.yaml (without the project prefix).

STACK_CONFIG = {"airflowPythonVersion": AIRFLOW_PYTHON}

_TOOLCHAIN = Path(__file__).resolve().parent.parent / "toolchain-fixtures"
PREVIOUS_AIRFLOW_REQUIREMENTS = Path(__file__).resolve().parent / "airflow" / "requirements-3.2.txt"


def previous_airflow_version() -> str:
    """The Airflow the upgrade test starts from, e.g. "3.2.2": the apache-airflow pin of its requirements file."""
    match = re.search(r"^apache-airflow==(\S+)$", PREVIOUS_AIRFLOW_REQUIREMENTS.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{PREVIOUS_AIRFLOW_REQUIREMENTS} pins no apache-airflow==VERSION")
    return match.group(1)


PREVIOUS_AIRFLOW_VERSION = previous_airflow_version()


def _go_mod_version(wrapper: str, module: str) -> str:
    """The version (without the "v") the wrapper toolchain-fixtures/<wrapper>/go.mod requires of `module`: what
    scripts/install-node-tools builds."""
    go_mod = _TOOLCHAIN / wrapper / "go.mod"
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} v(\d+\.\d+\.\d+)\b", go_mod.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{go_mod} requires no {module} version")
    return match.group(1)


def cnpg_operator_version() -> str:
    """The CloudNativePG version scripts/install-node-tools builds, e.g. "1.29.0" (from the wrapper's go.mod)."""
    return _go_mod_version("cloudnative-pg", "github.com/cloudnative-pg/cloudnative-pg")


def coredns_version() -> str:
    """The CoreDNS version scripts/install-node-tools builds, e.g. "1.15.0"."""
    return _go_mod_version("coredns", "github.com/coredns/coredns")


def barman_cloud_plugin_version() -> str:
    """The Barman Cloud plugin version scripts/install-node-tools builds, e.g. "0.14.0"."""
    return _go_mod_version("plugin-barman-cloud", "github.com/cloudnative-pg/plugin-barman-cloud")


# The cluster DNS runs as a pod in kube-system, as on any cluster (the instance's NetworkPolicies name that
# namespace for DNS), from an image of the CoreDNS binary built here.
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:v{coredns_version()}"

# The operator image: what the operator names itself in the pods it creates (its default
# DefaultOperatorImageName, or OPERATOR_IMAGE_NAME), which copy `/manager` from it in an init container.
CNPG_OPERATOR_IMAGE = f"ghcr.io/cloudnative-pg/cloudnative-pg:{cnpg_operator_version()}"

# The Barman Cloud plugin (CNPG-I): its operator part runs as a Deployment in cnpg-system from the plugin image;
# it injects the sidecar image (its SIDECAR_IMAGE) into every PostgreSQL pod and recovery Job. Both run the same
# binary, built here (scripts/install-node-tools), under upstream's references of that version.
BARMAN_CLOUD_PLUGIN_IMAGE = f"ghcr.io/cloudnative-pg/plugin-barman-cloud:v{barman_cloud_plugin_version()}"
BARMAN_CLOUD_SIDECAR_IMAGE = f"ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v{barman_cloud_plugin_version()}"
