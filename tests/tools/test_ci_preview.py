"""Merge-request previews: which stacks a change touches, the one comment, redaction, and the CI templates."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from testbed.harness import ROOT

from ci_preview import automation, changes, cli, comment, forges, redaction
from ci_preview.pipeline import gitlab_deploy_pipeline

STACKS = ["dev", "prod", "team-analytics"]


@pytest.mark.parametrize(
    "files, expected",
    [
        (["Pulumi.dev.yaml"], ["dev"]),
        (["Pulumi.prod.yaml", "README.md"], ["prod"]),
        (["README.md", "tests/settings/test_config.py", "docs/x.md"], []),
        (["__main__.py"], STACKS),
        (["components/postgres_cluster.py"], STACKS),
        (["Pulumi.yaml"], STACKS),
        (["requirements.txt"], STACKS),
        (["requirements-dev.txt"], STACKS),
        (["policy/rules.py"], STACKS),
        (["Pulumi.gone.yaml"], []),  # a stack file deleted by the change: no stack left to preview
        (["Pulumi.br-feature-x-abcdef.yaml"], []),  # branch environments are not deployed from here
        (["envs/cli.py", "ci_preview/cli.py", "scripts/ci-preview"], []),
        (["sub/Pulumi.dev.yaml"], []),
    ],
)
def test_changed_stacks(files, expected):
    assert changes.changed_stacks(files, STACKS) == expected


def test_committed_stacks_are_the_stack_files_without_branch_environments(tmp_path):
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.br-x-123456.yaml", "Pulumi.dev.yaml.bak"):
        (tmp_path / name).write_text("")
    assert changes.committed_stacks(tmp_path) == ["dev", "prod"]


def test_prod_is_deployed_last():
    assert changes.deploy_order(["prod", "dev", "prod-eu", "team-a"]) == ["dev", "team-a", "prod", "prod-eu"]


def test_changed_files_come_from_git_diff_of_the_merge_base(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "Pulumi.dev.yaml").write_text("a")
    git("add", ".")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "feature")
    (tmp_path / "Pulumi.prod.yaml").write_text("b")
    git("add", ".")
    git("commit", "-qm", "change")
    git("checkout", "-q", "main")
    (tmp_path / "__main__.py").write_text("later on main")  # not part of the MR: three-dot diff ignores it
    git("add", ".")
    git("commit", "-qm", "main moves on")
    assert changes.git_changed_files("main", "feature", tmp_path) == ["Pulumi.prod.yaml"]


# --- redaction -----------------------------------------------------------------------------------------------

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----"
CONFIG_JSON = """{
  "airflow-platform:s3SecretAccessKey": {"value": "wJalrXUtnFEMI-K7MDENG-bPxRfiCY", "secret": true},
  "airflow-platform:gitSyncSshKey": {"value": "ssh-line-one-secret\\nssh-line-two-secret", "secret": true},
  "airflow-platform:navbarColor": {"value": "#d9534f", "secret": false}
}"""
PREVIEW = f"""Previewing update (prod):
  ~ kubernetes:core/v1:Secret prod-s3 update [diff: ~data]
      ~ data: {{
          ~ AWS_SECRET_ACCESS_KEY: [secret] => [secret]
        }}
  + pulumi-python:dynamic:S3Bucket prod create
      secret_access_key: "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
      key: "ssh-line-one-secret\\nssh-line-two-secret"
      ssh: |
          ssh-line-one-secret
          ssh-line-two-secret
      url: "postgresql://airflow:hunter2-db-pass@prod-pg-rw:5432/airflow"
      token: "ghp-token-from-the-environment"
      blob: "c2VjcmV0IGJ5dGVzIHRoYXQgYXJlIGxvbmcgZW5vdWdoIHRvIGJlIGEga2V5"
      digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
      {PEM.replace(chr(10), chr(10) + '      ')}
      navbar: "#d9534f"
Resources:
    + 1 to create
    ~ 1 to update
    40 unchanged
"""


def test_redaction_removes_every_secret_and_keeps_the_diff_readable():
    secrets = redaction.secret_config_values(CONFIG_JSON) + redaction.env_secret_values(
        {"GITHUB_TOKEN": "ghp-token-from-the-environment", "HOME": "/root", "PATH": "/usr/bin"}
    )
    text = redaction.redact(PREVIEW, secrets)
    for leaked in (
        "wJalrXUtnFEMI",
        "ssh-line-one-secret",
        "ssh-line-two-secret",
        "hunter2-db-pass",
        "ghp-token-from-the-environment",
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
        "c2VjcmV0IGJ5dGVz",
        "9f86d081884c7d659a2f",
        "PRIVATE KEY-----\n",
    ):
        assert leaked not in text, leaked
    assert "[secret] => [secret]" in text
    assert 'url: "postgresql://airflow:[redacted]@prod-pg-rw:5432/airflow"' in text
    assert 'navbar: "#d9534f"' in text and "/root" not in secrets and "+ 1 to create" in text


def test_a_private_key_without_its_end_line_is_redacted_to_the_end():
    assert redaction.redact("before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\ntruncated") == "before\n[redacted private key]"


def test_only_secret_looking_environment_variables_are_redacted():
    env = {"PULUMI_CONFIG_PASSPHRASE": "pass-phrase", "MY_API_TOKEN": "tok-123456", "DB_PASSWORD": "pw-123456",
           "HOME": "/home/runner", "CI_COMMIT_REF_NAME": "main"}
    assert sorted(redaction.env_secret_values(env)) == ["pass-phrase", "pw-123456", "tok-123456"]


# --- the comment ---------------------------------------------------------------------------------------------


def test_comment_has_the_marker_and_one_section_per_stack():
    results = [comment.StackResult("dev", 0, redaction.redact(PREVIEW)), comment.StackResult("prod", 255, "error: policy violation\nResources:\n    1 unchanged\n")]
    body = comment.build_comment(results, head="0123456789abcdef0123", job_url="https://ci/job/1")
    assert body.startswith(comment.MARKER)
    assert body.count("### Stack ") == 2
    assert "### Stack `dev` ✅" in body and "### Stack `prod` ❌ failed (exit 255)" in body
    assert "+ 1 to create, ~ 1 to update, 40 unchanged" in body
    assert "Commit `0123456789ab`" in body and "(https://ci/job/1)" in body
    assert body.startswith(comment.MARKER + "\n## ❌")


def test_a_change_that_touches_no_stack_still_says_so():
    body = comment.build_comment([])
    assert comment.MARKER in body and "touches no stack" in body


def test_huge_outputs_are_clipped_to_fit_one_comment():
    big = "\n".join(f"  + resource {i}" for i in range(20000)) + "\nResources:\n    + 20000 to create\n"
    body = comment.build_comment([comment.StackResult(s, 0, big) for s in STACKS])
    assert len(body) < 65536
    assert body.count("lines omitted") == 3 and body.count("+ 20000 to create") == 6  # summary line and kept tail


def test_backticks_in_the_output_cannot_close_the_code_block():
    body = comment.build_comment([comment.StackResult("dev", 0, "```\n# injected heading")])
    assert body.count("```") == 2


@pytest.mark.parametrize(
    "notes, expected",
    [
        ([], ("create", None)),
        ([{"id": 1, "body": "LGTM"}, {"id": 2, "body": "ci: pipeline passed"}], ("create", None)),
        ([{"id": 1, "body": "LGTM"}, {"id": 7, "body": f"{comment.MARKER}\n## old preview"}, {"id": 9, "body": comment.MARKER}], ("update", 7)),
        ([{"id": 3, "body": None}], ("create", None)),
    ],
)
def test_update_the_previous_comment_instead_of_adding_one(notes, expected):
    assert forges.plan_post(notes) == expected


class FakeForge:
    def __init__(self, notes):
        self._notes, self.calls = notes, []

    def notes(self):
        return self._notes

    def create(self, body):
        self.calls.append(("create", body))

    def update(self, note_id, body):
        self.calls.append(("update", note_id, body))


def test_post_updates_or_creates():
    forge = FakeForge([{"id": 4, "body": comment.MARKER + " old"}])
    assert forges.post(forge, "new", out=lambda _: None) == "update" and forge.calls == [("update", 4, "new")]
    forge = FakeForge([])
    assert forges.post(forge, "new", out=lambda _: None) == "create" and forge.calls == [("create", "new")]


def test_forge_is_chosen_from_the_ci_environment():
    gitlab = forges.forge_from_env({"GITLAB_CI": "true", "GITLAB_TOKEN": "t", "CI_API_V4_URL": "https://gl/api/v4",
                                "CI_PROJECT_ID": "group/proj", "CI_MERGE_REQUEST_IID": "12"})
    assert type(gitlab.client).__module__.startswith("gitlab")  # python-gitlab, not hand-written HTTP
    assert gitlab.client.api_url == "https://gl/api/v4" and gitlab.mr.notes.path == "/projects/group%2Fproj/merge_requests/12/notes"
    github = forges.forge_from_env({"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "o/r"}, pr="5")
    assert type(github.client).__module__.startswith("github") and github.issue.number == 5
    with pytest.raises(SystemExit, match="GITLAB_TOKEN"):
        forges.forge_from_env({"GITLAB_CI": "true"})
    assert "urllib" not in (ROOT / "ci_preview/forges.py").read_text()


# --- running the program: inline, through engine.py -----------------------------------------------------------

from pulumi import automation as auto  # noqa: E402
from pulumi.automation._cmd import CommandResult  # noqa: E402
from types import SimpleNamespace  # noqa: E402


class FakeStack:
    """What engine.open_stack returns, as far as ci-preview uses it."""

    def __init__(self, name, output="Resources:\n    1 unchanged\n", fail_code=None, log=None):
        self.name, self.output, self.fail_code, self.log = name, output, fail_code, log if log is not None else []

    def get_all_config(self):
        return {"airflow-platform:s3SecretAccessKey": auto.ConfigValue(value="wJalrXUtnFEMI-K7MDENG-bPxRfiCY", secret=True),
                "airflow-platform:navbarColor": auto.ConfigValue(value="#d9534f", secret=False)}

    def _run(self, verb, kwargs):
        self.log.append((verb, self.name, kwargs))
        if self.fail_code is not None:
            raise auto.CommandError(CommandResult(self.output, "error: wJalrXUtnFEMI-K7MDENG-bPxRfiCY", self.fail_code))
        return self.output

    def preview(self, **kwargs):
        return auto.PreviewResult(stdout=self._run("preview", kwargs), stderr="", change_summary={})

    def up(self, **kwargs):
        return auto.UpResult(stdout=self._run("up", kwargs), stderr="", summary=None, outputs={})

    # What recovery.up reads before and after an update: no lock folder, no pending operation.
    workspace = SimpleNamespace(env_vars={"PULUMI_BACKEND_URL": "file:///nonexistent/state"})

    def export_stack(self):
        return auto.Deployment(version=3, deployment={"resources": []})


def test_a_preview_runs_inline_with_the_policy_pack_and_is_redacted():
    log = []
    result = automation.run_stack("preview", "prod", {"GITHUB_TOKEN": "ghp-token-from-the-environment"},
                          lambda name: FakeStack(name, PREVIEW, log=log))
    assert result.exit_code == 0 and "wJalrXUtnFEMI" not in result.output and "ghp-token" not in result.output
    assert '"#d9534f"' in result.output and "+ 1 to create" in result.output
    [(verb, stack, kwargs)] = log
    assert (verb, stack) == ("preview", "prod")
    assert kwargs["policy_packs"] == [str(ROOT / "policy")]
    assert kwargs["diff"] is True and kwargs["color"] == "never" and kwargs["suppress_outputs"] is True


def test_an_engine_error_is_a_failed_redacted_result_with_its_exit_code():
    result = automation.run_stack("preview", "dev", {}, lambda name: FakeStack(name, "policy violation", fail_code=255))
    assert result.exit_code == 255 and "policy violation" in result.output and "wJalrXUtnFEMI" not in result.output

    def unreachable(name):
        raise auto.CommandError(CommandResult("", "error: could not reach the backend", 1))

    assert automation.run_stack("preview", "dev", {}, unreachable).exit_code == 1


def test_apply_deploys_prod_last_and_stops_at_the_first_failure(capsys):
    log = []
    stacks = {"dev": None, "team-a": 1, "prod": None}
    code = cli.main(["--apply", "--stack", "prod", "--stack", "dev", "--stack", "team-a"],
                   open_stack=lambda name: FakeStack(name, fail_code=stacks[name], log=log))
    assert code == 1 and [(verb, stack) for verb, stack, _ in log] == [("up", "dev"), ("up", "team-a")]
    kwargs = log[0][2]
    assert kwargs["policy_packs"] == [str(ROOT / "policy")] and kwargs["show_secrets"] is False


def test_dry_run_prints_the_comment_of_every_stack(capsys):
    code = cli.main(["--stack", "dev", "--stack", "prod", "--dry-run"], open_stack=lambda name: FakeStack(name, PREVIEW))
    out = capsys.readouterr().out
    assert code == 0 and out.startswith(comment.MARKER) and out.count("### Stack ") == 2 and "wJalrXUtnFEMI" not in out


def test_no_toolchain_stops_with_what_to_do(monkeypatch):
    import engine

    def missing():
        raise engine.ToolchainMissing("no Pulumi CLI at the pinned version")

    monkeypatch.setattr(engine, "pulumi_bin", missing)
    with pytest.raises(SystemExit, match="no Pulumi CLI"):
        automation.open_engine_stack("dev")


# --- GitLab: the deploy child pipeline --------------------------------------------------------------------------


def test_gitlab_deploy_pipeline_has_one_job_and_resource_group_per_stack_prod_last(tmp_path):
    out = tmp_path / "deploy.yml"
    assert cli.main(["--stack", "prod", "--stack", "dev", "--stack", "team-a", "--gitlab-pipeline", str(out)]) == 0
    pipeline = yaml.safe_load(out.read_text())
    jobs = {name: job for name, job in pipeline.items() if name.startswith("deploy:")}
    assert list(jobs) == ["deploy:dev", "deploy:team-a", "deploy:prod"]
    for stack in ("dev", "team-a", "prod"):
        job = jobs[f"deploy:{stack}"]
        assert job["resource_group"] == f"airflow-platform/{stack}" and job["extends"] == ".airflow-platform"
        assert job["script"] == [f"scripts/ci-preview --apply --stack {stack}"]
    stages = pipeline["stages"]
    assert stages.index(jobs["deploy:prod"]["stage"]) > stages.index(jobs["deploy:dev"]["stage"])
    assert "nothing-to-deploy" in gitlab_deploy_pipeline([])  # a child pipeline needs at least one job
