"""The CloudNativePG objects we render are valid against the operator's own CRD schemas (offline: the
schemas of CloudNativePG 1.30 and the Barman Cloud plugin 0.14 are kept in ../shared/crds)."""

import functools
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.harness import ROOT, run_stack
from tests.stacks import TEST_SECRETS, stack_file_config

CRDS = Path(os.environ.get("AIRFLOW_PLATFORM_CRDS", ROOT.parent / "shared" / "crds"))

if not CRDS.is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(f"CRD schemas not found at {CRDS}; set AIRFLOW_PLATFORM_CRDS")
    pytest.skip(f"CRD schemas not found at {CRDS} (set AIRFLOW_PLATFORM_CRDS)", allow_module_level=True)


@functools.lru_cache(maxsize=None)
def schema_for(api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    for path in CRDS.glob("*/*.yaml"):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    raise LookupError(f"no CRD for {api_version} {kind} under {CRDS}")


@functools.lru_cache(maxsize=None)
def prod_run():
    return run_stack(stack_file_config("prod"), dict(TEST_SECRETS), stack="prod")


@pytest.mark.parametrize("kind", ["Cluster", "Pooler", "ScheduledBackup", "ObjectStore"])
def test_rendered_custom_resource_matches_the_crd_schema(kind):
    resource = prod_run().one(kind)
    document = {
        "apiVersion": resource.inputs["apiVersion"],
        "kind": kind,
        "metadata": resource.metadata,
        "spec": resource.inputs["spec"],
    }
    jsonschema.validate(document, schema_for(document["apiVersion"], kind))


def test_schema_check_catches_a_misspelt_field():
    resource = prod_run().one("Pooler")
    spec = {**resource.inputs["spec"], "pgbouncer": {"poolMode": "transactional"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": spec}, schema_for("postgresql.cnpg.io/v1", "Pooler"))
