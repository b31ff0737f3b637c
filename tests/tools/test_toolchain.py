"""The toolchain scripts/install-pulumi provides is the one requirements.txt pins, and our own random provider
serves what the pulumi_random SDK asks for: same tokens, same properties, the same values kept secret."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pulumi_random
import pytest
from pulumi.runtime import rpc

import engine
from testbed.harness import ROOT
from testbed.toolchain import pulumi_bin_or_skip

pytestmark = pytest.mark.slow

BIN = pulumi_bin_or_skip()

ENV = {**os.environ, **engine.OFFLINE}


def pinned(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].split()[0]
    raise AssertionError(f"requirements.txt does not pin {package}")


def schema(provider: str) -> dict:
    out = subprocess.run([str(BIN / "pulumi"), "package", "get-schema", str(BIN / f"pulumi-resource-{provider}")],
                         capture_output=True, text=True, env=ENV, check=True, timeout=120)
    return json.loads(out.stdout)


def test_the_cli_and_both_plugins_report_the_pinned_versions():
    version = subprocess.run([str(BIN / "pulumi"), "version"], capture_output=True, text=True, env=ENV, check=True)
    assert version.stdout.strip() == f"v{pinned('pulumi')}"
    assert schema("kubernetes")["version"] == pinned("pulumi-kubernetes")
    assert schema("random")["version"] == pinned("pulumi-random")


def test_the_launchers_the_engine_starts_sit_beside_the_cli():
    for launcher in ("pulumi-resource-pulumi-python", "pulumi-analyzer-policy-python"):
        assert os.access(BIN / launcher, os.X_OK), launcher


def sdk_resources() -> dict[str, type]:
    """Token -> class for every resource the pulumi_random SDK registers."""
    found = {}
    for key in rpc._RESOURCE_MODULES:
        if key.startswith("random:index/"):
            name = key.rsplit("/", 1)[1]
            cls = getattr(pulumi_random, name[0].upper() + name[1:])
            found[f"{key}:{cls.__name__}"] = cls
    return found


def sdk_properties(cls: type) -> set[str]:
    return {getattr(prop.fget, "_pulumi_name", None) or attr
            for attr, prop in vars(cls).items() if isinstance(prop, property)}


def test_our_random_provider_serves_every_sdk_resource_with_the_same_properties():
    served = schema("random")["resources"]
    expected = sdk_resources()
    assert len(expected) >= 10
    assert set(served) == set(expected)
    for token, cls in expected.items():
        assert set(served[token]["properties"]) == sdk_properties(cls), token


@pytest.mark.parametrize("token, secret", [
    ("random:index/randomPassword:RandomPassword", {"result", "bcryptHash"}),
    ("random:index/randomString:RandomString", set()),
    ("random:index/randomBytes:RandomBytes", {"base64", "hex"}),
])
def test_generated_secrets_are_marked_secret_by_the_provider(token, secret):
    properties = schema("random")["resources"][token]["properties"]
    assert {name for name, spec in properties.items() if spec.get("secret")} == secret


def test_a_warm_install_reuses_the_build_in_well_under_a_second():
    run = subprocess.run([str(ROOT / "scripts/install-pulumi")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == f"PULUMI_BIN={BIN}"
    assert "building" not in run.stderr


def test_the_install_script_refuses_pins_the_wrappers_do_not_build(tmp_path):
    """A requirements.txt pin that toolchain/ does not build must stop the build with both versions named."""
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    for script in ("install-pulumi", "lib.sh"):  # lib.sh: the Go build helpers it sources
        (copy / "scripts" / script).write_bytes((ROOT / "scripts" / script).read_bytes())
    (copy / "scripts/install-pulumi").chmod(0o755)
    subprocess.run(["cp", "-r", str(ROOT / "toolchain"), str(copy / "toolchain")], check=True)
    (copy / "requirements.txt").write_text((ROOT / "requirements.txt").read_text().replace(
        f"pulumi=={pinned('pulumi')}", "pulumi==3.999.0"))
    run = subprocess.run([str(copy / "scripts/install-pulumi")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AIRFLOW_PLATFORM_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin:/usr/local/go/bin"})
    assert run.returncode != 0
    assert "3.999.0" in run.stderr and f"v{pinned('pulumi')}" in run.stderr
    assert not (tmp_path / "cache").exists() or not list(Path(tmp_path / "cache").rglob("pulumi"))
