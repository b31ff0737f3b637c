"""Every container image the platform chooses, pinned to an exact version, in one place.

A tag like `postgresql:17` or `git-sync:v4` is re-pointed by its publisher under a running stack: a node that
pulls it later runs different code from the node next to it, and a rollback cannot go back. The policy pack
(`pinned-image-tags`) refuses floating tags on every container, Cluster and Pooler.

Users may override each of these with their own exact tag or with a digest (`repo@sha256:...`) in the stack
config (`postgres.image`, `gitSync.image`, `airflowImage` + `airflowVersion`); the settings model refuses
floating ones at config time.
"""

from __future__ import annotations

import re

# CloudNativePG's PostgreSQL operand images (ghcr.io/cloudnative-pg/postgresql), one minor per major we
# support. A minor upgrade is a change here, reviewed and rolled like any other.
POSTGRES_REPOSITORY = "ghcr.io/cloudnative-pg/postgresql"
POSTGRES_MINOR = {14: "14.19", 15: "15.14", 16: "16.10", 17: "17.6", 18: "18.0"}

# The PgBouncer image of the CloudNativePG Pooler; without it the operator picks its own default, which
# changes with every operator upgrade.
PGBOUNCER = "ghcr.io/cloudnative-pg/pgbouncer:1.24.1"

GIT_SYNC = "registry.k8s.io/git-sync/git-sync:v4.4.2"

_EXACT_TAG = re.compile(r"^[^@]+:[^:/]*\d+\.\d+[^:/]*$")
_DIGEST = re.compile(r"^[^@]+@sha256:[0-9a-f]{64}$")


def postgres(major: int) -> str:
    return f"{POSTGRES_REPOSITORY}:{POSTGRES_MINOR[major]}"


def pinned_image_problem(image: str) -> str | None:
    """Why `image` is not pinned (None: it is): an exact version tag or a sha256 digest."""
    if _DIGEST.match(image) or _EXACT_TAG.match(image):
        return None
    return f"'{image}' is not pinned: name an exact version tag (e.g. :17.6) or a digest (@sha256:...)"
