"""scripts/local-up: the order its `kubectl apply` of the rendered folder names the files in, and what every run
ends with (the outputs and the next steps, on an unchanged stack too). That the command applies a real render to a
real API server in one pass is tests/engine/test_end_to_end.py's
test_the_kubectl_command_local_up_prints_applies_the_rendered_folder_in_one_pass."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys

import pytest

from testbed.harness import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import local_up  # noqa: E402


def test_the_apply_command_names_crds_then_namespaces_then_the_folder_and_never_an_empty_folder(tmp_path):
    # The kubernetes provider's layout: CRDs in 0-crd/, every other object in 1-manifest/, named
    # <apiVersion>-<kind>-<namespace>-<name>.yaml (so the Namespace sorts after most objects inside it).
    crds, manifests = tmp_path / "0-crd", tmp_path / "1-manifest"
    crds.mkdir()
    manifests.mkdir()
    for name, kind in (("apps_v1-deployment-airflow-x-x-scheduler.yaml", "Deployment"),
                       ("v1-configmap-airflow-x-x-config.yaml", "ConfigMap"),
                       ("v1-namespace-default-airflow-x.yaml", "Namespace")):
        (manifests / name).write_text(f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n")
    namespace = str(manifests / "v1-namespace-default-airflow-x.yaml")
    assert local_up.apply_command(tmp_path) == ["kubectl", "apply", "-f", namespace, "-f", str(manifests)]
    crd = crds / "apiextensions.k8s.io_v1-customresourcedefinition-default-things.example.org.yaml"
    crd.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: x\n")
    assert local_up.apply_command(tmp_path) == ["kubectl", "apply", "-f", str(crd), "-f", namespace, "-f", str(manifests)]


class _Output:
    def __init__(self, value, secret=False):
        self.value, self.secret = value, secret


class _Stack:
    """An Automation API stack as report() reads it: its outputs and its config."""

    def __init__(self, outputs):
        self._outputs = outputs

    def outputs(self):
        return self._outputs

    def get_all_config(self):
        return {}


def _report(monkeypatch, tmp_path, stack, result) -> str:
    monkeypatch.setattr(local_up, "LOCAL", tmp_path / ".local")
    monkeypatch.setattr(local_up, "RENDERED", tmp_path / "rendered" / "local")
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "moto.pid").write_text("4242")
    return local_up.report(stack, result, "http://127.0.0.1:9000")


def test_a_run_that_changed_nothing_still_shows_the_outputs_and_the_next_steps(monkeypatch, tmp_path):
    from types import SimpleNamespace

    stack = _Stack({"admin_user": _Output("admin"), "admin_password": _Output("pw", secret=True),
                    "namespace": _Output("airflow-local")})
    text = _report(monkeypatch, tmp_path, stack, SimpleNamespace(outputs={}))  # the update's result carries none
    assert "  admin_user         admin" in text and "  namespace          airflow-local" in text
    assert "  admin_password     [secret]" in text and "  admin_password     pw" not in text
    next_steps = text.split("\nNext:\n", 1)[1]
    assert "kubectl apply" in next_steps and "scripts/local-up --show admin_password" in next_steps


@pytest.mark.slow
def test_a_second_run_on_an_unchanged_stack_shows_the_same_outputs_and_next_steps(monkeypatch, tmp_path, capsys):
    """scripts/local-up's run (local_up.main) twice, with the real engine, in a scratch project."""
    import engine

    try:
        engine.pulumi_bin()
    except engine.ToolchainMissing as missing:
        pytest.skip(str(missing))
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    (project / ".venv").symlink_to(ROOT / ".venv")
    monkeypatch.setattr(local_up, "LOCAL", project / ".local")
    monkeypatch.setattr(local_up, "RENDERED", project / "rendered" / local_up.STACK)
    monkeypatch.setattr(engine, "open_stack", functools.partial(engine.open_stack, work_dir=project))
    try:
        runs = []
        for _ in range(2):
            assert local_up.main() == 0
            runs.append(capsys.readouterr().out)
    finally:
        pid = project / ".local" / "moto.pid"
        if pid.exists():
            os.killpg(int(pid.read_text()), signal.SIGTERM)  # the endpoint outlives a run, in a session of its own
    assert "changes: none" in runs[1]

    def outputs(text: str) -> list[str]:
        return [line for line in text.split("Log bucket on the local S3 endpoint", 1)[1].splitlines()
                if line.startswith("  ") and not line.startswith("   ")]

    assert outputs(runs[1]) == outputs(runs[0]) and any(line.split()[0] == "url" for line in outputs(runs[1]))
    assert runs[1].split("\nNext:\n", 1)[1] == runs[0].split("\nNext:\n", 1)[1]
    assert "kubectl apply" in runs[1].split("\nNext:\n", 1)[1]
