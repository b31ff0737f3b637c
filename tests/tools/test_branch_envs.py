"""Branch environments (`python -m envs`): names, the config a branch stack gets, destroy, list and reap."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from components import kube
from components.log_bucket_props import bucket_name_errors
from envs import cli
from envs.automation import StackMissing
from envs.branch_config import TAG_BRANCH, TAG_CREATED
from envs.listing import StackInfo
from envs.naming import branch_instance_name, max_instance_length
from envs.template import NAVBAR_COLOR
from testbed.harness import run_stack

NASTY_BRANCHES = [
    "main",
    "feature/JIRA-123_Big Thing",
    "feature/jira-123-big-thing",
    "Ünïcödé/ブランチ/名前",
    "日本語",
    "🚀🔥",
    "x" * 300,
    "feature/" + "very-long-name-" * 20,
    "////",
    "---leading-dashes",
    "trailing-dashes---",
    "123-starts-with-digits",
    "0",
    "..",
    "a..b",
    "release/1.2.3",
    "xn--punycode",
    "UPPER_CASE",
    "refs/heads/main",
    "  spaced  ",
    "dots.in.the.name",
    "-",
]


@pytest.mark.parametrize("branch", NASTY_BRANCHES)
def test_every_branch_gets_a_name_every_derived_kubernetes_and_s3_name_accepts(branch):
    name = branch_instance_name(branch)
    assert name.startswith("br-")
    assert kube.is_dns1123_label(name)
    assert kube.name_length_problems(name, "3.3.2") == []
    assert all(len(derived) <= limit for derived, limit in kube.all_derived_names(name, "3.3.2"))
    namespace = f"airflow-{name}"
    assert kube.is_dns1123_label(namespace)
    assert bucket_name_errors(f"{namespace}-airflow-logs") == []
    assert branch_instance_name(branch) == name  # stable


def test_branches_that_slug_alike_get_different_environments():
    first = branch_instance_name("feature/JIRA-123_Big Thing")
    second = branch_instance_name("feature/jira-123-big-thing")
    assert first != second
    assert first.startswith("br-feature-jira-123-big-thing-")
    assert len({branch_instance_name(branch) for branch in NASTY_BRANCHES if branch.strip() not in ("main", "refs/heads/main")}) == len(NASTY_BRANCHES) - 2


def test_refs_heads_prefix_names_the_same_branch():
    assert branch_instance_name("refs/heads/feature/x") == branch_instance_name("feature/x")


def test_long_branches_are_cut_to_the_longest_name_that_fits_and_stay_distinct():
    a, b = branch_instance_name("f" * 200 + "a"), branch_instance_name("f" * 200 + "b")
    assert a != b
    assert len(a) == max_instance_length() == 42  # the bucket `airflow-<name>-airflow-logs` is the tightest


# --- the config a branch stack gets -----------------------------------------------------------------------

REPO = "https://git.example.org/data/dags.git"


def test_branch_stack_is_dev_sized_unprotected_and_follows_its_branch():
    name, plain, secrets = cli.branch_config("feature/JIRA-123_Big Thing", dags_repo=REPO, env={})
    assert name == plain["instance"] == branch_instance_name("feature/JIRA-123_Big Thing")
    assert plain["protect"] is False
    assert plain["s3"]["forceDestroy"] is True
    assert plain["postgres"]["instances"] == 1 and plain["postgres"]["backups"]["enabled"] is False
    assert plain["gitSync"] == {"enabled": True, "repo": REPO, "ref": "feature/JIRA-123_Big Thing"}
    assert plain["navbarColor"] == NAVBAR_COLOR
    assert cli.config_problems(plain, secrets) == []

    run = run_stack(plain, {"s3AccessKeyId": "AKIA-BRANCH", "s3SecretAccessKey": "branch-secret"}, stack=name)
    assert len(run.of_kind("Cluster")) == 1
    assert run.one("Cluster").inputs["spec"]["instances"] == 1
    assert run.of_kind("ObjectStore") == [] and run.of_kind("ScheduledBackup") == []
    assert not [r.name for r in run.resources if r.protect or r.retain_on_delete]
    assert run.exports["namespace"] == f"airflow-{name}"
    assert run.exports["log_bucket"] == f"airflow-{name}-airflow-logs"
    bucket = run.of_kind("S3Bucket")[0]
    assert bucket.inputs["force_destroy"] is True
    git_args = [
        arg
        for r in run.of_kind("Deployment")
        for c in r.inputs["spec"]["template"]["spec"]["containers"]
        if c["name"] == "git-sync"
        for arg in c["args"]
    ]
    assert "--ref=feature/JIRA-123_Big Thing" in git_args and f"--repo={REPO}" in git_args


def test_secrets_come_from_the_parent_stack_and_environment_variables_win():
    parent = {
        "s3AccessKeyId": ("PARENT-KEY", True),
        "s3SecretAccessKey": ("parent-secret", True),
        "gitSyncSshKey": ("-----BEGIN OPENSSH PRIVATE KEY-----", True),
        "s3": ('{"endpointUrl": "https://rgw.example.org", "bucket": "airflow-dev-logs", "forceDestroy": false}', False),
        "postgres": ('{"instances": 3}', False),  # sizes are the template's, never the parent's
    }
    env = {"AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY": "env-secret", "AIRFLOW_PLATFORM_GIT_SYNC_TOKEN": "env-token"}
    _, plain, secrets = cli.branch_config("b", dags_repo=REPO, parent=parent, env=env)
    assert secrets == {"s3AccessKeyId": "PARENT-KEY", "s3SecretAccessKey": "env-secret", "gitSyncToken": "env-token"}
    assert plain["s3"] == {"endpointUrl": "https://rgw.example.org", "forceDestroy": True, "retentionDays": 3}
    assert plain["postgres"]["instances"] == 1
    config = cli.config_map(plain, secrets)
    assert config["airflow-platform:s3SecretAccessKey"] == ("env-secret", True)
    assert config["airflow-platform:postgres"][1] is False


def test_dags_repo_comes_from_the_environment_and_is_required():
    _, plain, _ = cli.branch_config("b", dags_repo=None, env={"AIRFLOW_DAGS_REPO": REPO})
    assert plain["gitSync"]["repo"] == REPO
    with pytest.raises(ValueError, match="--dags-repo"):
        cli.branch_config("b", dags_repo=None, env={})


def test_config_flags_override_the_template_and_bad_ones_are_refused_before_any_engine_runs():
    overrides = cli.parse_overrides(["postgres.instances=2", "team=analytics", "airflow-platform:navbarColor=#000"])
    _, plain, secrets = cli.branch_config("b", dags_repo=REPO, overrides=overrides, env={})
    assert plain["postgres"]["instances"] == 2 and plain["postgres"]["storageSize"] == "2Gi"
    assert plain["team"] == "analytics" and plain["navbarColor"] == "#000"

    _, bad, secrets = cli.branch_config("b", dags_repo=REPO, overrides={"postgres.instances": 0, "nope": 1}, env={})
    problems = cli.config_problems(bad, secrets)
    assert any("postgres.instances" in p for p in problems) and any("nope" in p for p in problems)
    with pytest.raises(ValueError):
        cli.parse_overrides(["no-equals-sign"])


def test_creation_time_tag_is_set_once():
    now = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    assert cli.branch_tags("feature/x", {}, now) == {TAG_BRANCH: "feature/x", TAG_CREATED: "2025-03-01T12:00:00Z"}
    assert cli.branch_tags("feature/x", {TAG_CREATED: "2025-01-01T00:00:00Z"}, now) == {TAG_BRANCH: "feature/x"}


# --- destroy, list, reap with a fake engine ----------------------------------------------------------------

NOW = datetime(2025, 6, 30, 12, tzinfo=timezone.utc)


class FakeEngine:
    def __init__(self, stacks: list[StackInfo] | None = None):
        self.stacks_ = {s.name: s for s in stacks or []}
        self.calls: list[tuple[str, str]] = []
        self.up_args = None

    def stacks(self):
        return list(self.stacks_.values())

    def parent_config(self, stack):
        return {"s3AccessKeyId": ("PARENT-KEY", True), "s3SecretAccessKey": ("parent-secret", True)}

    def tags(self, stack):
        return dict(self.stacks_[stack].tags or {}) if stack in self.stacks_ else {}

    def up(self, stack, config, tags, on_output):
        self.up_args = (stack, config, tags(self.tags(stack)))
        self.stacks_[stack] = StackInfo(stack, NOW, 40, False, self.up_args[2])
        return {"url": "http://example"}

    def destroy(self, stack, on_output):
        self.calls.append(("destroy", stack))
        if stack not in self.stacks_:
            raise StackMissing(stack)

    def remove(self, stack):
        self.calls.append(("remove", stack))
        if self.stacks_.pop(stack, None) is None:
            raise StackMissing(stack)


def test_create_sets_secret_config_and_tags_through_the_engine(monkeypatch):
    monkeypatch.setenv("AIRFLOW_DAGS_REPO", REPO)
    engine, lines = FakeEngine(), []
    assert cli.create(engine, "feature/x", dags_repo=None, parent_stack="dev", overrides={}, out=lines.append, now=NOW) == 0
    stack, config, tags = engine.up_args
    assert stack == branch_instance_name("feature/x")
    assert config["airflow-platform:s3AccessKeyId"] == ("PARENT-KEY", True)
    assert tags == {TAG_BRANCH: "feature/x", TAG_CREATED: "2025-06-30T12:00:00Z"}
    assert "url: http://example" in lines
    assert not any("parent-secret" in line for line in lines)


def test_destroy_twice_is_success_both_times():
    name = branch_instance_name("feature/x")
    engine, lines = FakeEngine([StackInfo(name)]), []
    assert cli.destroy(engine, "feature/x", out=lines.append) == 0
    assert engine.calls == [("destroy", name), ("remove", name)]
    assert cli.destroy(engine, "feature/x", out=lines.append) == 0
    assert lines[-1] == f"stack {name} does not exist: nothing to destroy"
    assert engine.calls[-1] == ("destroy", name)  # nothing removed the second time


def test_destroy_refuses_stacks_that_are_not_branch_environments(capsys):
    assert cli.main(["destroy", "--stack", "prod"], engine_factory=lambda _: FakeEngine()) == 2
    assert "not a branch stack" in capsys.readouterr().err


def _envs():
    return [
        StackInfo("dev", NOW - timedelta(days=90)),
        StackInfo("prod", NOW - timedelta(days=90)),
        StackInfo("br-fresh-aaaaaa", NOW - timedelta(hours=2), 40, tags={TAG_BRANCH: "fresh", TAG_CREATED: "2025-06-30T10:00:00Z"}),
        # created long ago but pushed to yesterday: in use, not idle
        StackInfo("br-busy-bbbbbb", NOW - timedelta(days=1), 40, tags={TAG_BRANCH: "busy", TAG_CREATED: "2025-05-01T00:00:00Z"}),
        StackInfo("br-stale-cccccc", NOW - timedelta(days=20), 40, tags={TAG_BRANCH: "stale", TAG_CREATED: "2025-06-01T00:00:00Z"}),
        # no tags (backend without tag support): the last update decides; naive times are UTC
        StackInfo("organization/airflow-platform/br-untagged-dddddd", datetime(2025, 6, 1), 40),
    ]


def test_list_shows_only_branch_environments_with_their_ages():
    lines = []
    found = cli.list_envs(FakeEngine(_envs()), None, out=lines.append, now=NOW)
    assert [env.stack for env in found] == ["br-busy-bbbbbb", "br-fresh-aaaaaa", "br-stale-cccccc", "br-untagged-dddddd"]
    table = lines[0]
    assert "dev " not in table and "prod" not in table
    assert "busy" in table and "60d12h ago" in table and "1d0h ago" in table


def test_older_than_selects_environments_idle_for_longer():
    envs = cli.branch_envs(_envs())
    assert [e.stack for e in cli.older_than(envs, 7, NOW)] == ["br-stale-cccccc", "br-untagged-dddddd"]
    assert [e.stack for e in cli.older_than(envs, 25, NOW)] == ["br-untagged-dddddd"]
    assert cli.older_than(envs, 60, NOW) == []


def test_reap_asks_first_and_destroys_only_the_idle_ones():
    engine, lines = FakeEngine(_envs()), []
    assert cli.reap(engine, 7, yes=False, out=lines.append, ask=lambda _: "n", now=NOW) == 1
    assert engine.calls == []
    assert cli.reap(engine, 7, yes=True, out=lines.append, now=NOW) == 0
    assert [c for c in engine.calls if c[0] == "destroy"] == [("destroy", "br-stale-cccccc"), ("destroy", "br-untagged-dddddd")]
    assert {s.name for s in engine.stacks()} >= {"dev", "prod", "br-busy-bbbbbb", "br-fresh-aaaaaa"}


def test_list_shows_what_each_environment_reserves_and_costs_and_the_total():
    outputs = {"requested_cpu": 0.52, "requested_memory": 2.19, "monthly_cost": 24.36, "cost_currency": "EUR"}
    envs = [StackInfo("br-a-aaaaaa", NOW, 40, outputs=outputs), StackInfo("br-b-bbbbbb", NOW, 40, outputs=outputs),
            StackInfo("br-old-cccccc", NOW, 40)]  # last updated before these outputs existed
    lines = []
    cli.list_envs(FakeEngine(envs), None, out=lines.append, now=NOW)
    header, first, _, old, total = lines[0].splitlines()
    assert header.split()[-3:] == ["CPU", "MEMORY", "COST/MONTH"]
    assert first.split()[-4:] == ["0.52", "2.19Gi", "24.36", "EUR"]
    assert old.split()[-3:] == ["-", "-", "-"]
    assert total.split() == ["TOTAL", "1.04", "4.38Gi", "48.72", "EUR"]


def test_a_branch_environment_fits_in_one_core_and_two_and_a_half_gib_everything_counted():
    from components.settings import parse_settings
    from components.footprint import GIB, footprint

    _, plain, secrets = cli.branch_config("feature/x", dags_repo=REPO, env={})
    requested = footprint(parse_settings({**plain, **secrets})).requests
    assert requested.cpu <= 1.0 and requested.memory <= 2.5 * GIB
