"""scripts/local-up's `kubectl apply` of the rendered folder: the order it names the files in. That the command
applies a real render to a real API server in one pass is tests/engine/test_end_to_end.py's
test_the_kubectl_command_local_up_prints_applies_the_rendered_folder_in_one_pass."""

from __future__ import annotations

import sys

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
