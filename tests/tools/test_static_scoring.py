"""Static scoring of every object every committed stack (and a branch stack, and Kerberos) renders, with the
tools an SRE would point at our manifests before trusting them:

- the Kubernetes OpenAPI schemas of 1.31 to 1.35 (kubernetes-validate, strict: an unknown field is an error),
  and the CloudNativePG / Barman Cloud plugin CRD schemas for our custom resources;
- checkov, a security scanner for Kubernetes manifests: no failed check, except those in CHECKOV_SKIPS, each
  with its reason (and a skip that no longer matches a failure is itself a failure, so the list cannot rot).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from testbed.harness import ROOT
from testbed.manifests import STACKS, stack_manifests, stack_run, strict_schema, task_pod_template

KUBERNETES_VERSIONS = ("1.31", "1.32", "1.33", "1.34", "1.35")

# kubernetes-validate re-reads its (large) definitions file for every object; the files never change.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)


def objects(stack: str) -> list[dict]:
    """What the stack applies, plus the task pod the scheduler creates from the template it ships."""
    return [*stack_manifests(stack), task_pod_template(stack_run(stack))]


def name_of(document: dict) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


# --- schemas ---------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str], dict]:
    directory = Path(subprocess.run([str(ROOT / "scripts/fetch-crds")], capture_output=True, text=True, check=True)
                     .stdout.strip().splitlines()[-1])
    schemas = {}
    for path in sorted(directory.rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, crd["spec"]["names"]["kind"])] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def schema_problems(document: dict) -> list[str]:
    """Every way `document` breaks the schema of its kind, in each Kubernetes version we support."""
    crd = crd_schemas().get((document["apiVersion"], document["kind"]))
    if crd is not None:
        return [f"{name_of(document)}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in jsonschema.Draft7Validator(crd).iter_errors(document)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name_of(document)} ({version}): {'.'.join(map(str, error.path))}: {error.message[:300]}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name_of(document)}: Kubernetes {version} has no {document['apiVersion']} {document['kind']}")
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_matches_the_kubernetes_and_crd_schemas(stack):
    documents = objects(stack)
    assert len(documents) > 20
    problems = [problem for document in documents for problem in schema_problems(document)]
    assert problems == []


def test_schema_check_catches_a_misspelt_field_a_wrong_type_and_a_removed_api():
    deployment = next(d for d in stack_manifests("dev") if d["kind"] == "Deployment")
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    assert any("replica" in problem for problem in schema_problems(misspelt))
    wrong_type = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    assert schema_problems(wrong_type)
    removed = {**deployment, "apiVersion": "extensions/v1beta1"}
    assert schema_problems(removed)
    cluster = next(d for d in stack_manifests("dev") if d["kind"] == "Cluster")
    assert schema_problems({**cluster, "spec": {**cluster["spec"], "instances": 0}})  # CRD minimum is 1
    assert any("storge" in p for p in schema_problems({**cluster, "spec": {**cluster["spec"], "storge": {}}}))


# --- checkov -------------------------------------------------------------------------------------------------------

# Every failed check we accept, with why. `objects` limits a skip to resource ids (checkov's
# `Kind.namespace.name`, globs); without it the skip holds for every object of the stacks.
CHECKOV_SKIPS: dict[str, dict] = {
    "CKV_K8S_38": {
        "reason": "Service-account tokens are mounted exactly where WorkerRBAC grants API rights: the scheduler "
                  "launches task pods, the api-server streams their logs (WorkerRBAC.token_components; the RBAC "
                  "matrix in tests/apiserver/test_objects_on_the_server.py proves nobody else has rights, and every "
                  "other pod mounts none).",
        "objects": ["Deployment.*-scheduler", "Deployment.*-api-server"],
    },
    "CKV_K8S_15": {
        "reason": "Images are immutable version tags (apache/airflow:<version>-python<x.y>, git-sync vX.Y.Z); "
                  "`Always` would make every task pod's start depend on the registry answering. A stack that "
                  "wants it sets imagePullPolicy: Always.",
    },
    "CKV_K8S_43": {
        "reason": "Images are referenced by the version tag airflowVersion derives, so an upgrade is one setting "
                  "and previews show it; a digest would have to be looked up in a registry at deploy time, which "
                  "our offline builds cannot do. Digest pinning belongs in the cluster's admission policy.",
    },
    "CKV_K8S_35": {
        "reason": "Airflow reads the Fernet key, JWT secret and database URL from AIRFLOW__* variables; they come "
                  "from our Kubernetes Secrets by secretKeyRef/envFrom, never as literals "
                  "(tests/components/control_plane/test_secrets.py). Files would need Airflow's `_CMD` variants in "
                  "every container: a separate change.",
    },
    "CKV_K8S_9": {
        "reason": "A readiness probe decides whether a Service sends a pod traffic; the scheduler, dag-processor, "
                  "triggerer, Kerberos renewer and task pods serve none. Their liveness probes (Airflow's own "
                  "health checks) restart them when they hang.",
        "objects": ["Deployment.*-scheduler", "Deployment.*-dag-processor", "Deployment.*-triggerer",
                    "Deployment.*-kerberos", "Pod.*.task-pod*"],
    },
    "CKV_K8S_8": {
        "reason": "Task pods run one task to completion and the executor watches them; a liveness probe would kill "
                  "a long task.",
        "objects": ["Pod.*.task-pod*"],
    },
}


@functools.lru_cache(maxsize=None)
def checkov_report(directory: str) -> dict:
    venv = subprocess.run([str(ROOT / "scripts/checkov-venv")], capture_output=True, text=True, timeout=1200)
    if venv.returncode != 0:
        pytest.fail(f"scripts/checkov-venv could not provide checkov:\n{venv.stderr[-2000:]}")
    checkov = Path(venv.stdout.strip().splitlines()[-1]) / "bin" / "checkov"
    done = subprocess.run(
        [str(checkov), "--directory", directory, "--framework", "kubernetes", "--output", "json", "--compact",
         "--skip-download"],
        capture_output=True, text=True, timeout=1200,
    )
    if done.returncode not in (0, 1):
        pytest.fail(f"checkov failed to run:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def write_stacks(directory: Path) -> int:
    count = 0
    for stack in STACKS:
        documents = objects(stack)
        count += len(documents)
        (directory / f"{stack}.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return count


def skip_for(check: dict) -> dict | None:
    skip = CHECKOV_SKIPS.get(check["check_id"])
    if skip and any(fnmatch.fnmatch(check["resource"], pattern) for pattern in skip.get("objects", ["*"])):
        return skip
    return None


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rendered")
    count = write_stacks(directory)
    return count, checkov_report(str(directory))


@pytest.mark.slow  # runs checkov, a separate program in its own venv
def test_checkov_finds_no_failed_check_we_have_not_explained(scored):
    count, report = scored
    results = report["results"]
    failed = results.get("failed_checks", [])
    unexplained = sorted({f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
                          for c in failed if skip_for(c) is None})
    skipped = [c for c in failed if skip_for(c) is not None]
    print(f"\ncheckov over {count} objects: {len(results.get('passed_checks', []))} passed, "
          f"{len(unexplained)} failed, {len(skipped)} skipped with a reason "
          f"({len({c['check_id'] for c in skipped})} distinct checks)")
    assert unexplained == []


@pytest.mark.slow  # runs checkov, a separate program in its own venv
def test_every_checkov_skip_has_a_reason_and_still_matches_a_failure(scored):
    _, report = scored
    used = {c["check_id"] for c in report["results"].get("failed_checks", []) if skip_for(c) is not None}
    for check_id, skip in CHECKOV_SKIPS.items():
        assert len(skip.get("reason", "")) > 20, f"{check_id} has no written reason"
    assert sorted(set(CHECKOV_SKIPS) - used) == [], "skips that match no failure any more: remove them"
