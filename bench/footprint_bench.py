"""Footprint of a running instance per kind of stack, from the settings (components/footprint.py) and, as a
cross-check, from the objects the program creates under mocks; objects per stack; the edit-test loop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from bench.common import JOB_SECRETS, ROOT, say
from components.settings import parse_settings
from components.footprint import GIB, footprint, from_manifests, monthly_cost

# Published figures (not measured here): what others reserve for one Airflow.
REFERENCES = [
    ("official Helm chart, defaults", "0 of 15 containers request anything"),
    ("Wikimedia analytics-test, without its database", "9.9 vCPU / 10.9 GiB"),
    ("Wikimedia analytics-test, with its database", "13.9 vCPU / 26.9 GiB"),
]
# Measured by this calculator at a29528f, when PgBouncer took the LimitRange's default (250m / 512Mi) and there
# was no Barman sidecar: what sizing them saved.
BEFORE = {"branch": (0.72, 2.62, 0.47, 2.12), "dev": (1.35, 4.00, 1.10, 3.50)}


def stacks() -> dict[str, tuple[str, dict[str, Any], dict[str, str]]]:
    from envs.cli import branch_config
    from testbed.stacks import stack_file_config

    name, branch, branch_secrets = branch_config("feature/JIRA-123_Big-Thing", dags_repo="https://git.example.org/d.git",
                                                 env={})
    oidc = {"authOidcClientSecret": "x", "gitSyncToken": "x"}
    return {
        "branch": (name, branch, {**JOB_SECRETS, **branch_secrets}),
        "dev": ("dev", stack_file_config("dev"), dict(JOB_SECRETS)),
        "team-search": ("team-search", stack_file_config("team-search"), {**JOB_SECRETS, **oidc}),
        "prod": ("prod", stack_file_config("prod"), {**JOB_SECRETS, **oidc}),
    }


def footprints() -> dict[str, Any]:
    from testbed.harness import run_stack

    result = {}
    for label, (name, config, secrets) in stacks().items():
        settings = parse_settings({"instance": name, **config, **secrets}, stack=name)
        computed = footprint(settings)
        run = run_stack(config, secrets, stack=name)
        counted = from_manifests([{"kind": r.kind, **r.inputs} for r in run.resources])
        agree = all(round(a, 6) == round(b, 6) for a, b in (
            (computed.requests.cpu, counted.requests.cpu), (computed.requests.memory, counted.requests.memory)))
        kubernetes = [r for r in run.resources if r.type.startswith("kubernetes:") and r.kind != "Provider"]
        result[label] = {
            "stack": name,
            "requests_cpu": computed.requests.cpu, "requests_gib": computed.requests.memory / GIB,
            "declared_cpu": computed.declared_requests.cpu, "declared_gib": computed.declared_requests.memory / GIB,
            "limits_cpu": computed.limits.cpu, "limits_gib": (computed.limits.memory or 0) / GIB,
            "containers": computed.containers, "defaulted": computed.defaulted_containers,
            "by_workload": {w: (s.cpu, s.memory / GIB) for w, s in computed.by_workload().items()},
            "monthly_cost": monthly_cost(computed.requests, settings), "currency": settings.cost.currency,
            "kubernetes_objects": len(kubernetes), "pulumi_resources": len(run.resources) + 1,  # + the Stack
            "agrees_with_objects": agree,
        }
        say(f"footprint {label}: {computed.requests.cpu:.2f} vCPU / {computed.requests.memory / GIB:.2f} GiB, "
            f"{len(kubernetes)} objects")
    return result


def rendered_crosscheck(objects: list[dict], scratch_local_settings: dict[str, Any]) -> dict[str, Any]:
    """The engine-rendered `local` stack counted from its YAML against the calculator on its settings."""
    settings = parse_settings(scratch_local_settings, stack="local")
    computed, counted = footprint(settings), from_manifests(objects)
    return {"computed": (computed.requests.cpu, computed.requests.memory / GIB),
            "rendered": (counted.requests.cpu, counted.requests.memory / GIB),
            "objects": len(objects)}


def test_suite(runs: int) -> dict[str, Any]:
    """The quick loop (`scripts/test -m "not slow"` without the set-up), wall and CPU seconds. On this shared
    machine wall time is mostly waiting for a core; CPU time is what an idle machine would take, about."""
    walls, cpus, summary = [], [], ""
    for _ in range(runs):
        before = os.times()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
                              cwd=ROOT, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
        say(f"quick test suite: {walls[-1]:.0f}s wall, {cpus[-1]:.0f}s CPU: {summary}")
    return {"wall_s": walls, "cpu_s": cpus, "summary": summary, "runs": runs}
