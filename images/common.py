"""What every part of the node-image builder shares: where the repository and the recipes are, where the cache
lives (`$AIRFLOW_PLATFORM_CACHE/node-images`, its archives in `images/`), the error a failed step raises, the
progress line, the PATH inside every image and the digest the cache keys are made of.

Imported by images/chroot.py, images/base.py, images/specs.py and images/build.py; it imports none of the
builder's modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

# The repository, and images/ in it (the recipes' files; read-only at /tmp/build in every chroot).
ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "images"
# PATH in every chroot and in the images' environments.
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BuildError(RuntimeError):
    pass


def cache_root() -> Path:
    if os.environ.get("AIRFLOW_PLATFORM_CACHE"):
        return Path(os.environ["AIRFLOW_PLATFORM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airflow-platform"


def store() -> Path:
    return cache_root() / "node-images"


def out_dir() -> Path:
    """NODE_IMAGES: the folder of archives (every *.tar one image) and images.json."""
    return store() / "images"


def digest(value) -> str:
    """The sha256 (hex) of `value` as sorted JSON: what the base's and the images' cache keys are cut from."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
