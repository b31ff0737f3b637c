"""scripts/install-pulumi uses a Pulumi someone installed the usual way instead of building one, when that
Pulumi is at least the pinned version and has both plugins at the pinned versions; otherwise it builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testbed.harness import ROOT


def pinned(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].split()[0]
    raise AssertionError(package)


@pytest.fixture
def installed(tmp_path):
    """A fake official install: `pulumi` reporting a version, its launchers, and a plugin cache."""
    bin_dir, home = tmp_path / "bin", tmp_path / "pulumi-home"
    bin_dir.mkdir()

    def make(version: str, plugins: dict[str, str]) -> dict[str, str]:
        cli = bin_dir / "pulumi"
        # Any command but `version` fails, so a build or a download attempt cannot pass unnoticed.
        cli.write_text(f'#!/bin/sh\n[ "$1" = version ] && echo v{version} && exit 0\nexit 3\n')
        cli.chmod(0o755)
        launcher = bin_dir / "pulumi-resource-pulumi-python"
        launcher.write_text("#!/bin/sh\n")
        launcher.chmod(0o755)
        for name, plugin_version in plugins.items():
            (home / "plugins" / f"resource-{name}-v{plugin_version}").mkdir(parents=True)
        return {"PATH": f"{bin_dir}:/usr/bin:/bin", "PULUMI_HOME": str(home),
                "AIRFLOW_PLATFORM_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}

    return make, bin_dir


def print_bin(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts/install-pulumi"), "--print-bin"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


PLUGINS = {"kubernetes": pinned("pulumi-kubernetes"), "random": pinned("pulumi-random")}


def test_an_installed_pulumi_at_the_pinned_version_with_its_plugins_is_used(installed):
    make, bin_dir = installed
    result = print_bin(make(pinned("pulumi"), PLUGINS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(bin_dir)


def test_a_newer_installed_pulumi_is_used_too(installed):
    make, bin_dir = installed
    major, minor, patch = (int(part) for part in pinned("pulumi").split("."))
    assert print_bin(make(f"{major}.{minor + 12}.0", PLUGINS)).stdout.strip() == str(bin_dir)


def test_an_older_pulumi_is_not_used(installed):
    make, _ = installed
    major, minor, patch = (int(part) for part in pinned("pulumi").split("."))
    assert print_bin(make(f"{major}.{minor - 1}.{patch}", PLUGINS)).returncode == 1


def test_a_pulumi_without_the_pinned_plugins_is_not_used_when_it_cannot_fetch_them(installed):
    make, _ = installed
    wrong = {**PLUGINS, "kubernetes": "4.34.2"}
    assert print_bin(make(pinned("pulumi"), wrong)).returncode == 1
