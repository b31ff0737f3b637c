"""Team stacks: small files over shared defaults, each in a namespace with its own quota and limits, and
upkeep (the database clean-up) done by a CronJob rather than a DAG."""

import subprocess

import pytest

from components.settings.fields import secret_keys
from components.settings.stack_files import read_stack_file
from testbed.harness import ROOT, run_stack
from testbed.stacks import TEST_SECRETS, stack_file_config

TEAMS = ("team-analytics", "team-search")


def team(stack, **extra):
    return run_stack({**stack_file_config(stack), **extra}, dict(TEST_SECRETS), stack=stack)


@pytest.mark.parametrize("stack", TEAMS)
def test_a_team_stack_file_sets_only_what_differs(stack):
    config = stack_file_config(stack)
    assert "instance" not in config and "namespace" not in config  # both follow from the stack name
    assert len(config) <= 6
    run = team(stack)
    assert run.exports["namespace"] == f"airflow-{stack}"
    labels = run.one("Namespace").metadata["labels"]
    assert labels["airflow-platform/team"] == config["team"]


@pytest.mark.parametrize("stack", TEAMS)
def test_each_team_namespace_gets_a_quota_and_a_limit_range(stack):
    run = team(stack)
    hard = run.one("ResourceQuota").inputs["spec"]["hard"]
    assert set(hard) == {"requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods", "persistentvolumeclaims"}
    assert run.one("ResourceQuota").metadata["namespace"] == f"airflow-{stack}"
    (limits,) = run.one("LimitRange").inputs["spec"]["limits"]
    assert limits["type"] == "Container" and set(limits) >= {"default", "defaultRequest", "max"}


def test_team_quota_comes_from_its_stack_file():
    hard = team("team-analytics").one("ResourceQuota").inputs["spec"]["hard"]
    assert hard["requests.cpu"] == "24" and hard["limits.memory"] == "192Gi"
    assert team("team-search").one("ResourceQuota").inputs["spec"]["hard"]["pods"] == "400"


def test_task_pod_defaults_sit_inside_the_limit_range():
    from components.settings.rules import cpu_cores, memory_bytes

    for stack in (*TEAMS, "dev", "prod"):
        run = run_stack(stack_file_config(stack), dict(TEST_SECRETS), stack=stack)
        maximum = run.one("LimitRange").inputs["spec"]["limits"][0]["max"]
        for deployment in run.of_kind("Deployment"):
            for container in deployment.inputs["spec"]["template"]["spec"]["containers"]:
                limits = container["resources"]["limits"]
                assert cpu_cores(limits["cpu"]) <= cpu_cores(maximum["cpu"]), (stack, container["name"])
                assert memory_bytes(limits["memory"]) <= memory_bytes(maximum["memory"]), (stack, container["name"])


def test_limits_above_the_limit_range_are_refused_before_anything_is_created():
    from components.settings import ConfigError

    with pytest.raises(ConfigError) as error:
        run_stack({"limitRange": {"max": {"cpu": "1", "memory": "1Gi"}}}, stack="dev")
    assert "airflow-platform:taskPod.resources: limits 2 CPU / 2Gi exceed limitRange.max 1 / 1Gi" in str(error.value)


def test_team_secrets_stay_in_the_team_namespace():
    run = team("team-analytics")
    for secret in run.of_kind("Secret"):
        assert secret.metadata["namespace"] == "airflow-team-analytics"
    assert not run.of_kind("ClusterRole") and not run.of_kind("ClusterRoleBinding")
    for binding in run.of_kind("RoleBinding"):
        assert {s["namespace"] for s in binding.inputs["subjects"]} == {"airflow-team-analytics"}


def test_db_cleanup_cron_job_cleans_configured_tables_as_the_migration_account():
    run = team("team-search")
    cron = run.one("CronJob").inputs["spec"]
    assert cron["schedule"] == "17 3 * * *" and cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "team-search-migrate"
    command = pod["containers"][0]["command"][-1]
    assert "airflow db clean --yes" in command
    assert "--tables task_instance,xcom,log,dag_run" in command and "--skip-archive" in command
    assert "- 30 * 86400" in command


def test_db_cleanup_timestamp_expression_is_valid_shell_giving_a_past_iso_time():
    command = team("dev").one("CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    expression = command.split("--clean-before-timestamp ", 1)[1].split(" --", 1)[0]
    out = subprocess.run(["sh", "-c", f"echo {expression}"], capture_output=True, text=True, check=True).stdout.strip()
    from datetime import datetime, timedelta, timezone

    moment = datetime.fromisoformat(out)
    assert timedelta(days=89) < datetime.now(timezone.utc) - moment < timedelta(days=91)


def test_db_cleanup_can_be_switched_off():
    assert run_stack({"dbCleanup": {"enabled": False}}, stack="dev").of_kind("CronJob") == []


def test_committed_stack_files_hold_no_plaintext_secret():
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        assert read_stack_file(path)[1] == [], path.name


@pytest.mark.parametrize("key", sorted(secret_keys()))
def test_a_plaintext_secret_in_a_stack_file_is_caught_and_an_encrypted_one_is_not(tmp_path, key):
    # What `pulumi config set --secret` writes: the ciphertext under `secure:`, on the line after the key.
    encrypted = tmp_path / "Pulumi.encrypted.yaml"
    encrypted.write_text(f"encryptionsalt: v1:c2FsdA==\nconfig:\n  airflow-platform:{key}:\n    secure: v1:aXY=:Y2lwaGVy\n")
    assert read_stack_file(encrypted)[1] == []
    plain = tmp_path / "Pulumi.plain.yaml"
    plain.write_text(f"config:\n  airflow-platform:{key}: hunter2\n")
    assert read_stack_file(plain)[1] == [
        f"airflow-platform:{key}: is a secret; set it with `pulumi config set --secret {key}`"
    ]
