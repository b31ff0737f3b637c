"""The footprint calculator: the LimitRange rule, and agreement with the objects the program creates."""

from __future__ import annotations

import pytest

from components.settings import parse_settings
from components.footprint import GIB, Defaults, container, footprint, from_manifests, stack_outputs
from envs.cli import branch_config
from testbed.harness import run_stack
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS, stack_file_config

DEFAULTS = Defaults({"cpu": "250m", "memory": "512Mi"}, {"cpu": "1", "memory": "1Gi"})
MI = 2**20


def test_a_container_that_declares_nothing_gets_the_limit_range_defaults():
    bare = container("w", "c", None, DEFAULTS)
    assert (bare.requests.cpu, bare.requests.memory) == (0.25, 512 * MI)
    assert (bare.limits.cpu, bare.limits.memory) == (1.0, GIB)
    assert bare.defaulted


def test_a_declared_limit_is_also_the_request_and_a_missing_limit_is_the_default():
    only_limits = container("w", "c", {"limits": {"cpu": "2", "memory": "2Gi"}}, DEFAULTS)
    assert (only_limits.requests.cpu, only_limits.requests.memory) == (2.0, 2 * GIB)
    assert not only_limits.defaulted
    only_requests = container("w", "c", {"requests": {"cpu": "100m", "memory": "64Mi"}}, DEFAULTS)
    assert (only_requests.requests.cpu, only_requests.limits.cpu, only_requests.limits.memory) == (0.1, 1.0, GIB)
    assert only_requests.defaulted


def test_without_a_limit_range_an_undeclared_container_requests_nothing_and_is_unbounded():
    bare = container("w", "c", None, Defaults())
    assert (bare.requests.cpu, bare.requests.memory, bare.limits.cpu) == (0.0, 0.0, None)


def _exact(size):
    """Sizes summed in another order differ in the last bit of a float."""
    return tuple(None if value is None else round(value, 6) for value in (size.cpu, size.memory))


def _stacks():
    name, branch, branch_secrets = branch_config("feature/x", dags_repo="https://git.example.org/d.git", env={})
    secrets = dict(TEST_SECRETS)
    return {
        "dev": ("dev", stack_file_config("dev"), secrets),
        "prod": ("prod", stack_file_config("prod"), secrets),
        "team-search": ("team-search", stack_file_config("team-search"), secrets),
        # A branch environment with everything optional on: git-sync sidecars, the renewer, the backup sidecar.
        "branch-kerberos": (name, {**branch, **KERBEROS_CONFIG,
                                   "postgres": {**branch["postgres"], "backups": {"enabled": True}}},
                            {**secrets, **branch_secrets, "kerberosKeytab": KEYTAB_B64}),
    }


@pytest.mark.parametrize("stack", ["dev", "prod", "team-search", "branch-kerberos"])
def test_the_settings_and_the_created_objects_give_the_same_footprint(stack):
    name, config, secrets = _stacks()[stack]
    settings = parse_settings({"instance": name, **config, **secrets}, stack=name)
    run = run_stack(config, secrets, stack=name)
    objects = [{"kind": r.kind, **r.inputs} for r in run.resources]
    from_settings, rendered = footprint(settings), from_manifests(objects)
    assert _exact(from_settings.requests) == _exact(rendered.requests)
    assert _exact(from_settings.limits) == _exact(rendered.limits)
    assert sorted(from_settings.by_workload()) == sorted(rendered.by_workload())
    assert from_settings.containers == rendered.containers
    assert {key: run.exports[key] for key in stack_outputs(settings)} == stack_outputs(settings)


def test_dev_counts_every_pod_that_runs_all_the_time():
    settings = parse_settings({"instance": "dev", **stack_file_config("dev")})
    result = footprint(settings)
    assert sorted(result.by_workload()) == ["api-server", "dag-processor", "pgbouncer", "postgres", "scheduler", "statsd-exporter", "triggerer"]
    # Every container of ours is sized; before the Pooler and the Barman sidecar were, LimitRange defaults gave
    # dev a quarter more than its objects said.
    assert result.defaulted_containers == 0 and result.declared_requests == result.requests
    assert (round(result.requests.cpu, 2), result.requests.memory / GIB) == (1.2, 3.0625)
    assert stack_outputs(settings)["monthly_cost"] == round(1.2 * 30 + 3.0625 * 4, 2)
