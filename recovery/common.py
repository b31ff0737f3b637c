"""What every part of recovery, and every tool that deploys, shares: the errors a tool catches to say what went wrong
without a traceback, and the command it then names."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "airflow-platform"
RECOVER = "scripts/recover-stack"
BUCKET_TYPE = "pulumi-python:dynamic:S3Bucket"


class DeployFailed(Exception):
    """A deploy our tools did not start or that failed, with a message for the person running it (no traceback)."""


class RecoveryRefused(DeployFailed):
    """`recover` found something it must not touch (an update still running, a lock of another machine)."""


def recover_command(stack: str, *, force: bool = False) -> str:
    """The command that recovers `stack`: what every tool prints when it finds an interrupted update."""
    if stack == "--local":
        return f"{RECOVER} --local"
    return f"{RECOVER} {stack}" + (" --force" if force else "")


def engine_text(error: Exception) -> str:
    """The engine's exit code, output and error output, as the Automation API puts them in its errors."""
    return str(error)
