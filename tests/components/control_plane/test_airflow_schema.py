"""The record of the Airflow version the database was migrated by: an upgrade moves it, going back is refused
at preview with what to do instead."""

from __future__ import annotations

import pytest

from components.airflow_schema import SchemaProvider, downgrade_problem


@pytest.mark.parametrize("recorded, wanted", [(None, "3.2.1"), ("3.2.1", "3.3.2"), ("3.3.2", "3.3.2"),
                                              ("3.3.0rc1", "3.3.0"), ("3.3.2", "3.10.0")])
def test_a_first_deploy_an_upgrade_or_the_same_version_is_allowed(recorded, wanted):
    assert downgrade_problem(recorded, wanted) is None


@pytest.mark.parametrize("recorded, wanted", [("3.3.2", "3.2.9"), ("3.10.0", "3.9.0"), ("3.3.0", "3.3.0rc1")])
def test_going_back_is_refused_naming_the_setting_both_versions_and_the_way_back(recorded, wanted):
    problem = downgrade_problem(recorded, wanted)
    assert problem.startswith(f"airflowVersion: {wanted} is older than {recorded}")
    assert f"airflow db downgrade --to-version {wanted}" in problem and "pulumi state delete" in problem


def test_the_provider_refuses_at_check_and_never_replaces_the_record():
    provider = SchemaProvider()
    refused = provider.check({"airflow_version": "3.3.2"}, {"airflow_version": "3.2.0"})
    assert [f.property for f in refused.failures] == ["airflow_version"]
    assert provider.check({}, {"airflow_version": "3.2.0"}).failures == []
    diff = provider.diff("airflow-schema", {"airflow_version": "3.2.0"}, {"airflow_version": "3.3.2"})
    assert diff.changes and not diff.replaces
    assert provider.update("airflow-schema", {}, {"airflow_version": "3.3.2"}).outs == {"airflow_version": "3.3.2"}


def test_every_kubernetes_object_waits_for_the_record_so_a_refusal_comes_before_any_change():
    from testbed.harness import run_stack
    from testbed.stacks import TEST_SECRETS, stack_file_config

    run = run_stack(stack_file_config("dev"), TEST_SECRETS)
    (schema,) = run.of_kind("AirflowSchema")
    assert schema.inputs["airflow_version"] == stack_file_config("dev").get("airflowVersion", "3.3.2")
    providers = [r for r in run.resources if r.type == "pulumi:providers:kubernetes"]
    assert providers and all(schema.urn in p.dependencies for p in providers)
