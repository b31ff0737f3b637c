"""The guard of every module that needs the Pulumi toolchain: a skip with the reason on a developer's machine, an
error in CI, so that CI cannot pass by skipping the engine, API server and node tests."""

import pytest

import engine
from testbed.toolchain import pulumi_bin_or_skip


@pytest.fixture
def no_toolchain(monkeypatch):
    def missing():
        raise engine.ToolchainMissing("no pulumi here")

    monkeypatch.setattr(engine, "pulumi_bin", missing)
    monkeypatch.delenv("AIRFLOW_PLATFORM_TOOLCHAIN_MISSING", raising=False)
    return monkeypatch


def test_without_the_toolchain_a_module_is_skipped_with_the_reason(no_toolchain):
    no_toolchain.delenv("AIRFLOW_PLATFORM_E2E", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no pulumi here"):
        pulumi_bin_or_skip()


def test_scripts_test_says_why_it_could_not_build_the_toolchain(no_toolchain):
    no_toolchain.delenv("AIRFLOW_PLATFORM_E2E", raising=False)
    no_toolchain.setenv("AIRFLOW_PLATFORM_TOOLCHAIN_MISSING", "scripts/install-pulumi failed")
    with pytest.raises(pytest.skip.Exception, match="scripts/install-pulumi failed"):
        pulumi_bin_or_skip()


def test_in_ci_a_missing_toolchain_is_an_error_not_a_skip(no_toolchain):
    no_toolchain.setenv("AIRFLOW_PLATFORM_E2E", "require")
    with pytest.raises(RuntimeError, match="no pulumi here"):
        pulumi_bin_or_skip()
