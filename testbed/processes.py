"""Stopping the servers our fixtures start."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL if `process` has not exited within `grace` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)
