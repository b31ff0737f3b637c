"""The CloudNativePG objects we render are valid against the operator's own CRD schemas, offline: the CRDs
of the pinned CloudNativePG and Barman Cloud plugin versions come from their Go modules (scripts/fetch-crds)."""

import functools
from pathlib import Path

import jsonschema
import pytest
import yaml

from testbed.manifests import strict_schema
from testbed.runs import prod


@functools.lru_cache(maxsize=None)
def _schema(crds: Path, api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    for path in sorted(crds.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            return strict_schema(next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"])
    raise LookupError(f"no CRD for {api_version} {kind} under {crds}")


@pytest.fixture
def schema_for(crd_dir):
    return lambda api_version, kind: _schema(crd_dir, api_version, kind)


@functools.lru_cache(maxsize=None)
def prod_run():
    return prod()


def problems(schema_for, kind: str, **spec_changes) -> list[str]:
    """What the API server would refuse (or silently drop) in the prod stack's `kind`, one message each."""
    resource = prod_run().one(kind)
    document = {
        "apiVersion": resource.inputs["apiVersion"],
        "kind": kind,
        "metadata": resource.metadata,
        "spec": {**resource.inputs["spec"], **spec_changes},
    }
    validator = jsonschema.Draft202012Validator(schema_for(document["apiVersion"], kind))
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]


@pytest.mark.parametrize("kind", ["Cluster", "Pooler", "ScheduledBackup", "ObjectStore"])
def test_rendered_custom_resource_matches_the_crd_schema(kind, schema_for):
    assert problems(schema_for, kind) == []


def test_schema_check_catches_a_value_the_operator_does_not_know(schema_for):
    (found,) = problems(schema_for, "Pooler", pgbouncer={"poolMode": "transactional"})
    assert found.startswith("spec.pgbouncer.poolMode: 'transactional' is not one of")


def test_schema_check_catches_a_misspelt_field_the_api_server_would_drop(schema_for):
    assert problems(schema_for, "Cluster", enablePdb=False) == [
        "spec: Additional properties are not allowed ('enablePdb' was unexpected)"
    ]
