"""The CI templates: valid against the forges' schemas, linted by actionlint, the official Pulumi tools at the
versions requirements.txt pins, air-gapped variants that differ only in how the toolchain is had, and the
promises the README makes of them (previews, deploys, branch environments, concurrency, permissions)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.harness import ROOT

GITHUB = {name: ROOT / ".github/workflows" / name for name in ("preview.yml", "branch-env.yml")}
GITHUB_AIR_GAPPED = {name: ROOT / "ci/github/air-gapped" / name for name in GITHUB}
GITLAB = [ROOT / "ci/gitlab-ci.yml", ROOT / "ci/gitlab-ci.air-gapped.yml", ROOT / "ci/gitlab/pulumi-job.yml",
          ROOT / "ci/gitlab/pulumi-job.air-gapped.yml"]
WORKFLOWS = [*GITHUB.values(), *GITHUB_AIR_GAPPED.values()]
PULUMI_ACTION = "pulumi/actions@v7.0.0"  # an immutable release of the official action (May 2026)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def pins() -> dict[str, str]:
    text = (ROOT / "requirements.txt").read_text()
    return dict(re.findall(r"^(pulumi(?:-kubernetes|-random)?)==([0-9.]+)", text, re.MULTILINE))


def check_schema(schema: str, paths: list[Path], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *extra, *map(str, paths)],
                          capture_output=True, text=True)


# --- schemas ---------------------------------------------------------------------------------------------------


def test_github_workflows_match_the_workflow_schema():
    result = check_schema("vendor.github-workflows", WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_templates_and_the_generated_child_pipeline_match_gitlab_ci_schema(tmp_path):
    child = tmp_path / "deploy-pipeline.yml"
    subprocess.run([sys.executable, "-m", "ci_preview", "--stack", "dev", "--stack", "prod", "--gitlab-pipeline",
                    str(child)], cwd=ROOT, check=True, capture_output=True)
    result = check_schema("vendor.gitlab-ci", [*GITLAB, child], "--data-transform", "gitlab-ci")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_template(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("deploy:\n  script: [true]\n  resource_group: [not, a, string]\n  environment: {on_stop: 3}\n")
    assert check_schema("vendor.gitlab-ci", [broken], "--data-transform", "gitlab-ci").returncode != 0


# --- actionlint ------------------------------------------------------------------------------------------------


def actionlint() -> str:
    """scripts/test puts it in ACTIONLINT (lib.sh ensure_actionlint); otherwise build it here, as that would."""
    if os.environ.get("ACTIONLINT"):
        return os.environ["ACTIONLINT"]
    built = subprocess.run([str(ROOT / "scripts/install-actionlint")], capture_output=True, text=True)
    assert built.returncode == 0, f"actionlint could not be built from its Go module:\n{built.stderr}"
    return built.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_github_workflows_pass_actionlint(tmp_path):
    # shellcheck and pyflakes integrations off: the result must not depend on what else is on PATH.
    command = [actionlint(), "-no-color", "-shellcheck=", "-pyflakes="]
    result = subprocess.run([*command, *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and it does find what it is there for: an expression pasted into a script, an unknown context.
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.head_ref }} ${{ githib.sha }}\n")
    result = subprocess.run([*command, str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "githib" in result.stdout and "head_ref" in result.stdout


# --- the official Pulumi tools, at the pinned versions ---------------------------------------------------------


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize("name", sorted(GITHUB))
def test_github_workflows_use_the_official_action_at_the_pinned_cli(name):
    workflow, want = load(GITHUB[name]), pins()
    actions = [step for step in steps(workflow) if step.get("uses", "").startswith("pulumi/actions@")]
    assert actions and all(step["uses"] == PULUMI_ACTION for step in actions)
    assert all(step["with"]["pulumi-version"] == want["pulumi"] for step in actions)
    runs = " ".join(step.get("run", "") + step.get("uses", "") for step in steps(workflow))
    assert f"pulumi plugin install resource kubernetes {want['pulumi-kubernetes']}" in runs
    assert f"pulumi plugin install resource random {want['pulumi-random']}" in runs
    assert "install-pulumi" not in runs and "setup-go" not in runs  # building from Go is the air-gapped variant


def test_gitlab_template_uses_the_official_image_at_the_pinned_cli():
    job, want = load(ROOT / "ci/gitlab/pulumi-job.yml")[".airflow-platform"], pins()
    assert job["image"]["name"] == f"pulumi/pulumi-python-3.11:{want['pulumi']}"
    script = " ".join(job["before_script"])
    assert f"pulumi plugin install resource kubernetes {want['pulumi-kubernetes']}" in script
    assert f"pulumi plugin install resource random {want['pulumi-random']}" in script
    assert "install-pulumi" not in script and "golang" not in script


# --- air-gapped variants ---------------------------------------------------------------------------------------


def _without_toolchain(workflow: dict) -> dict:
    """The workflow less the steps that provide the toolchain (ids toolchain/program, and the Go/cache set-up)."""
    for job in workflow["jobs"].values():
        job["steps"] = [step for step in job["steps"] if step.get("id") not in ("toolchain", "program")
                        and not step.get("uses", "").startswith(("actions/setup-go@", "actions/cache@"))]
    return workflow


@pytest.mark.parametrize("name", sorted(GITHUB))
def test_github_air_gapped_variant_differs_only_in_the_toolchain(name):
    default, air_gapped = load(GITHUB[name]), load(GITHUB_AIR_GAPPED[name])
    assert _without_toolchain(default) == _without_toolchain(air_gapped)
    text = GITHUB_AIR_GAPPED[name].read_text()
    assert "scripts/install-pulumi" in text and "pulumi/actions" not in text and "AIR-GAPPED" in text


def test_gitlab_air_gapped_variant_replaces_the_whole_job_and_the_child_pipelines_too():
    default = load(ROOT / "ci/gitlab/pulumi-job.yml")[".airflow-platform"]
    air_gapped = load(ROOT / "ci/gitlab/pulumi-job.air-gapped.yml")[".airflow-platform"]
    # GitLab deep-merges a redefined job: only keys the variant also sets are replaced.
    assert set(default) == set(air_gapped) and set(default["variables"]) <= set(air_gapped["variables"])
    assert "scripts/install-pulumi" in " ".join(air_gapped["before_script"])
    variant = load(ROOT / "ci/gitlab-ci.air-gapped.yml")
    assert variant["include"] == [{"local": "ci/gitlab-ci.yml"}, {"local": "ci/gitlab/pulumi-job.air-gapped.yml"}]
    assert variant["deploy"]["trigger"]["include"][0] == {"local": "ci/gitlab/pulumi-job.air-gapped.yml"}
    default_trigger = load(ROOT / "ci/gitlab-ci.yml")["deploy"]["trigger"]
    assert default_trigger["include"][1:] == variant["deploy"]["trigger"]["include"][1:]


# --- what the templates promise --------------------------------------------------------------------------------


def test_every_script_a_template_calls_exists():
    for path in [*WORKFLOWS, *GITLAB]:
        for used in re.findall(r"scripts/[A-Za-z0-9_.-]+", path.read_text()):
            assert (ROOT / used).is_file(), f"{path.name}: {used}"
        text = path.read_text()
        # user-controlled names are never pasted into a shell script
        assert not re.search(r"run:.*\$\{\{\s*github\.(head_ref|ref_name|event\.ref)", text)


def test_github_preview_and_deploy_jobs_have_least_privilege_and_never_race():
    workflow = load(GITHUB["preview.yml"])
    on = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {}
    preview, deploy = workflow["jobs"]["preview"], workflow["jobs"]["deploy"]
    assert preview["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert deploy["permissions"] == {"contents": "read"}
    assert "pull_request.number" in preview["concurrency"]["group"] and preview["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in deploy["concurrency"]["group"] and deploy["concurrency"]["cancel-in-progress"] is False
    assert "scripts/ci-preview --apply" in " ".join(step.get("run", "") for step in deploy["steps"])


def test_github_branch_environments_follow_pushes_deletions_and_merges_one_branch_at_a_time():
    workflow = load(GITHUB["branch-env.yml"])
    on = workflow[True]
    assert on["push"]["branches-ignore"] == ["main"] and "delete" in on and on["pull_request"]["types"] == ["closed"]
    assert workflow["permissions"] == {"contents": "read"}
    group = workflow["concurrency"]["group"]
    # each event names the branch the way it carries it; all three must land in one group
    for expression in ("github.ref_name", "github.head_ref", "github.event.ref"):
        assert expression in group
    assert workflow["concurrency"]["cancel-in-progress"] is False
    runs = " ".join(step.get("run", "") for step in steps(workflow))
    assert "python -m envs create" in runs and "python -m envs destroy" in runs


def test_gitlab_template_previews_deploys_per_stack_and_stops_review_environments():
    jobs = load(ROOT / "ci/gitlab-ci.yml")
    assert jobs["include"] == [{"local": "ci/gitlab/pulumi-job.yml"}]
    assert "scripts/ci-preview" in " ".join(jobs["preview"]["script"])
    assert "merge_request_event" in jobs["preview"]["rules"][0]["if"]
    plan, deploy = jobs["deploy:plan"], jobs["deploy"]
    assert "--gitlab-pipeline deploy-pipeline.yml" in " ".join(plan["script"]) and "CI_DEFAULT_BRANCH" in plan["rules"][0]["if"]
    assert deploy["trigger"]["include"] == [{"local": "ci/gitlab/pulumi-job.yml"},
                                            {"artifact": "deploy-pipeline.yml", "job": "deploy:plan"}]
    assert deploy["trigger"]["strategy"] == "depend" and deploy["needs"] == ["deploy:plan"]
    create, destroy = jobs["branch-env:create"], jobs["branch-env:destroy"]
    assert create["environment"] == {"name": "review/$CI_COMMIT_REF_SLUG", "on_stop": "branch-env:destroy", "auto_stop_in": "1 week"}
    assert destroy["environment"] == {"name": "review/$CI_COMMIT_REF_SLUG", "action": "stop"}
    assert create["resource_group"] == destroy["resource_group"] == "review/$CI_COMMIT_REF_SLUG"
    assert destroy["rules"][0]["when"] == "manual"
    assert "python -m envs create" in " ".join(create["script"]) and "python -m envs destroy" in " ".join(destroy["script"])
