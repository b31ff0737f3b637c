"""`pulumi up` through the real engine against the real kube-apiserver fixture (no render directory): it
succeeds, a second preview shows no change (server-side apply, the server's defaulting and our inputs
agree), and `destroy` leaves nothing behind but what `retain_on_delete` keeps on purpose: on a protected
stack the database, its credentials and pooler, and the namespace they live in (the fixture's controller
manager deletes a namespace's contents with it, as a real cluster does).

Nothing becomes ready here (no nodes, no operators), so the test's program marks every Kubernetes object
`pulumi.com/skipAwait`: the objects and their inputs are what `up` applies, only the waiting is skipped.
"""

from __future__ import annotations

import shutil
import time

import boto3
import pytest
from pulumi import automation as auto

import engine
from testbed.apiserver import instance_without_awaiting
from testbed.harness import ROOT
from testbed.stacks import stack_file_config
from testbed.toolchain import pulumi_bin_or_skip

pytestmark = pytest.mark.slow

BIN = pulumi_bin_or_skip()

ACCESS_KEY, SECRET_KEY = "engine-access-key", "engine-secret-key"
POD_S3_ENDPOINT = "http://s3.airflow-platform.test:9000"


def open_test_stack(name: str, work, kubeconfig, s3_endpoint, **config) -> auto.Stack:
    shutil.copy(ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    backend = engine.Backend(url=f"file://{work}", passphrase="engine-test",
                             extra_env={"KUBECONFIG": str(kubeconfig)})
    stack = engine.open_stack(name, backend, work_dir=work, program=instance_without_awaiting)
    # The bucket is provisioned on the loopback S3 fixture; pods (none run here) are told an address off loopback,
    # as a deployed stack must.
    values = {**stack_file_config("dev"), "instance": name, **config,
              "s3": {"endpointUrl": s3_endpoint, "podEndpointUrl": POD_S3_ENDPOINT, "bucket": f"{name}-logs",
                     "forceDestroy": True}}
    for key, value in values.items():
        from components.settings.stack_files import config_text

        stack.set_config(f"airflow-platform:{key}", auto.ConfigValue(config_text(value)))
    stack.set_config("airflow-platform:s3AccessKeyId", auto.ConfigValue(ACCESS_KEY, secret=True))
    stack.set_config("airflow-platform:s3SecretAccessKey", auto.ConfigValue(SECRET_KEY, secret=True))
    return stack


def live_objects(kube_api, namespace: str) -> list[str]:
    found = []
    for api_version, kind in (("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount"), ("apps/v1", "Deployment"),
                              ("batch/v1", "Job"), ("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "Pooler")):
        items = kube_api.request("GET", kube_api.resource_path(api_version, kind, namespace)).body.get("items", [])
        found += [f"{kind}/{item['metadata']['name']}" for item in items]
    return sorted(found)


def created_objects(stack: auto.Stack) -> dict[tuple[str, str, str, str], bool]:
    """Every Kubernetes object the stack's state says it created, with whether `retain_on_delete` keeps it."""
    created = {}
    for resource in stack.export_stack().deployment["resources"]:
        outputs = resource.get("outputs") or {}
        if not resource["type"].startswith("kubernetes:") or "kind" not in outputs:
            continue
        metadata = outputs["metadata"]
        key = (outputs["apiVersion"], outputs["kind"], metadata.get("namespace") or "", metadata["name"])
        created[key] = bool(resource.get("retainOnDelete"))
    return created


def still_there(kube_api, objects, timeout: float = 120) -> list[tuple[str, str, str, str]]:
    """The objects that exist once deletion has settled: the garbage collector and the namespace controller
    finish deletions after the API call returns, so wait until nothing is still being deleted."""
    deadline = time.monotonic() + timeout
    while True:
        present, terminating = [], []
        for key in objects:
            api_version, kind, namespace, name = key
            got = kube_api.request("GET", f"{kube_api.resource_path(api_version, kind, namespace or None)}/{name}")
            if got.ok:
                (terminating if got.body["metadata"].get("deletionTimestamp") else present).append(key)
        if not terminating or time.monotonic() > deadline:
            return sorted(present + terminating)
        time.sleep(1)


def unprotect_all(stack: auto.Stack) -> None:
    """What `pulumi state unprotect --all` does, the first step of retiring a long-lived stack."""
    state = stack.export_stack()
    for resource in state.deployment["resources"]:
        resource.pop("protect", None)
    stack.import_stack(state)


@pytest.fixture(scope="module")
def deployed(kube_api, kube_apiserver_kubeconfig, s3_endpoint, tmp_path_factory):
    # br-*: a disposable stack (the development login is allowed there, as on a branch environment).
    stack = open_test_stack("br-engine-0a1b2c", tmp_path_factory.mktemp("engine"), kube_apiserver_kubeconfig, s3_endpoint)
    up = stack.up(color="never", on_output=print)
    return stack, up


def test_up_applies_every_object_to_the_api_server(kube_api, deployed):
    stack, up = deployed
    assert up.summary.result == "succeeded"
    applied = live_objects(kube_api, up.outputs["namespace"].value)
    assert "Deployment/br-engine-0a1b2c-scheduler" in applied and "Cluster/br-engine-0a1b2c-pg" in applied
    created = created_objects(stack)
    assert still_there(kube_api, created, timeout=0) == sorted(created)
    print(f"\nup: {up.summary.resource_changes}; {len(created)} objects on the API server")


def test_a_second_preview_changes_nothing(deployed):
    stack, _ = deployed
    stack.preview(color="never", diff=True, expect_no_changes=True)


def test_destroy_leaves_nothing_behind(kube_api, deployed):
    stack, up = deployed
    created = created_objects(stack)
    stack.destroy(color="never", on_output=print)
    assert still_there(kube_api, created) == []
    assert kube_api.request("GET", f"/api/v1/namespaces/{up.outputs['namespace'].value}").status == 404


def test_retiring_a_protected_stack_keeps_the_database_and_its_namespace(kube_api, kube_apiserver_kubeconfig, s3_endpoint,
                                                                         tmp_path_factory):
    stack = open_test_stack("br-retained-3c4d5e", tmp_path_factory.mktemp("retained"), kube_apiserver_kubeconfig,
                            s3_endpoint, protect="true")
    stack.up(color="never")
    created = created_objects(stack)
    retained = sorted(key for key, kept in created.items() if kept)
    assert {kind for _, kind, _, _ in retained} >= {"Namespace", "Cluster"}

    unprotect_all(stack)
    stack.destroy(color="never", on_output=print)

    assert still_there(kube_api, created) == retained, "exactly what retain_on_delete keeps survives destroy"
    assert stack.export_stack().deployment.get("resources") in (None, [])
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    assert "br-retained-3c4d5e-logs" in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
