"""The Pulumi toolchain a test module needs from its import on: its bin directory, or the module is skipped with
the reason (scripts/test's, when it could not build it). Under AIRFLOW_PLATFORM_E2E=require, as .ci/run sets, a
missing toolchain is an error instead: CI never passes by skipping what it exists to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import engine


def pulumi_bin_or_skip() -> Path:
    try:
        return engine.pulumi_bin()
    except engine.ToolchainMissing as missing:
        reason = os.environ.get("AIRFLOW_PLATFORM_TOOLCHAIN_MISSING", str(missing))
        if os.environ.get("AIRFLOW_PLATFORM_E2E") == "require":
            raise RuntimeError(reason) from missing
        pytest.skip(reason, allow_module_level=True)
