"""The stack settings: defaults, and one clear error for every kind of bad input, before anything exists."""

import base64
import shlex
import subprocess
import sys

import pytest
from pydantic import ValidationError

from components import kube
from components.settings import ConfigError, Settings, parse_settings
from testbed.harness import ROOT, StackRun, run_stack

KEYTAB = base64.b64encode(b"\x05\x02fake-keytab").decode()


def problems_of(config: dict, secrets: dict | None = None) -> str:
    with pytest.raises(ConfigError) as error:
        run_stack(config, secrets)
    return str(error.value)


def test_defaults_make_a_complete_dev_instance():
    settings = parse_settings({"instance": "dev"})
    assert settings.kubernetes_namespace == "airflow-dev"
    assert settings.image == "apache/airflow:3.3.2-python3.12"
    assert settings.airflow_version.startswith("3.3.")
    assert settings.bucket_name == "airflow-dev-airflow-logs"
    assert settings.s3.retention_days == 30
    assert settings.postgres.mode == "cnpg" and settings.postgres.backups.enabled
    for component in (settings.api_server, settings.scheduler, settings.dag_processor, settings.triggerer):
        assert component.resources.requests.cpu and component.resources.limits.memory


def test_instance_defaults_to_the_stack_name():
    run = run_stack({}, stack="br-team-a")
    assert run.exports["namespace"] == "airflow-br-team-a"


def test_one_error_names_every_bad_key_its_value_and_what_is_allowed():
    message = problems_of(
        {
            "instance": "Team_A",
            "s3": {"retentionDays": 0, "bucket": "Logs..Bucket"},
            "scheduler": {"replicas": 1, "resources": {"requests": {"cpu": "lots", "memory": "1Gi"},
                                                        "limits": {"cpu": "1", "memory": "1Gi"}}},
        }
    )
    assert "(4 problem(s))" in message
    assert "airflow-platform:instance = 'Team_A'" in message and "DNS-1123" in message
    assert "airflow-platform:s3.retentionDays = 0" in message and "greater than or equal to 1" in message
    assert "airflow-platform:scheduler.resources.requests.cpu = 'lots'" in message and "millicores" in message
    assert "airflow-platform:s3.bucket" in message and "Logs..Bucket" in message


def test_error_is_raised_before_any_resource_is_registered():
    run = StackRun()
    with pytest.raises(ConfigError):
        run_stack({"s3": {"retentionDays": -5}}, run=run)
    assert run.resources == []


def test_keytab_that_is_not_base64_is_rejected_without_echoing_it():
    message = problems_of(
        {"kerberos": {"enabled": True, "principal": "airflow/x@EX.ORG", "realm": "EX.ORG", "kdcs": ["kdc1"]}},
        {"kerberosKeytab": "not base64 at all!!"},
    )
    assert "airflow-platform:kerberosKeytab = [secret]: must be base64" in message
    assert "not base64 at all" not in message


def test_secret_keys_must_be_stored_encrypted():
    from components.settings import load_settings
    import pulumi

    def program():
        pulumi.runtime.set_all_config({"airflow-platform:s3SecretAccessKey": "plain", "airflow-platform:s3AccessKeyId": "AK"}, [])
        load_settings()

    with pytest.raises(ConfigError) as error:
        run_stack({}, program=program)
    assert "s3SecretAccessKey: is a secret; set it with `pulumi config set --secret s3SecretAccessKey`" in str(error.value)
    assert "plain" not in str(error.value)


def test_unknown_and_misspelt_keys_are_named_with_a_suggestion():
    message = problems_of({"postgres": {"storageSzie": "20Gi"}, "schedular": {"replicas": 2}})
    assert "airflow-platform:postgres.storageSzie: unknown key; did you mean 'storageSize'?" in message
    assert "airflow-platform:schedular: unknown key; did you mean 'scheduler'?" in message


def test_instance_name_too_long_for_derived_kubernetes_names():
    longest_ok = "a" * 44
    parse_settings({"instance": longest_ok, "s3": {"bucket": "logs-bucket"}}, stack="dev")
    message = problems_of({"instance": "a" * 45, "s3": {"bucket": "logs-bucket"}})
    assert "would be 53 characters (Kubernetes allows 52)" in message
    assert "at most 44 characters" in message


def test_every_derived_name_of_the_longest_instance_fits_its_limit():
    settings = parse_settings({"instance": "a" * 44, "s3": {"bucket": "logs-bucket"}}, stack="dev")
    for name, limit in kube.all_derived_names(settings.instance, settings.airflow_version):
        assert len(name) <= limit, name


def test_requests_above_limits_are_rejected():
    message = problems_of(
        {"taskPod": {"resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}}}
    )
    assert "airflow-platform:taskPod.resources" in message
    assert "requests.cpu 2 is above limits.cpu 1" in message


def test_incomplete_sections_say_what_they_need():
    message = problems_of(
        {
            "kerberos": {"enabled": True},
            "gitSync": {"enabled": True},
            "auth": {"mode": "oidc"},
            "postgres": {"mode": "external"},
        }
    )
    assert "enabled Kerberos needs principal, realm, kdcs" in message
    assert "enabled git-sync needs repo" in message
    assert "auth mode 'oidc' needs oidcMetadataUrl, oidcClientId" in message


def test_cross_field_rules_name_their_keys():
    message = problems_of(
        {"postgres": {"mode": "external"}, "auth": {"mode": "oidc", "oidcMetadataUrl": "https://idp/.well-known",
                                                      "oidcClientId": "airflow"}},
        {"s3AccessKeyId": "AK"},
    )
    assert "airflow-platform:postgresExternalUri: postgres.mode is external but no URI is set" in message
    assert "airflow-platform:s3SecretAccessKey: set both s3AccessKeyId and s3SecretAccessKey" in message
    assert "airflow-platform:authOidcClientSecret" in message


def test_enumerations_list_what_is_allowed():
    message = problems_of({"postgres": {"mode": "mysql"}, "auth": {"roleMapping": {"cn=ops": ["Root"]}}})
    assert "airflow-platform:postgres.mode = 'mysql': Input should be 'cnpg' or 'external'" in message
    assert "unknown roles ['Root']; allowed: ['Admin', 'Op', 'User', 'Viewer']" in message


def test_image_must_come_without_tag_and_version_must_be_airflow_3():
    message = problems_of({"airflowImage": "apache/airflow:latest", "airflowVersion": "2.10.5"})
    assert "must be a repository without a tag" in message
    assert "'2.10.5' is not an Airflow 3 version" in message


def test_settings_are_immutable_so_no_component_changes_what_another_sees():
    settings = parse_settings({"instance": "dev"})
    assert isinstance(settings, Settings)
    with pytest.raises(ValidationError, match="frozen_instance"):
        settings.instance = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen_instance"):
        settings.postgres.instances = 3  # type: ignore[misc]
    assert settings.instance == "dev" and settings.postgres.instances == 1


def apply_fix(config: dict, command: str) -> None:
    """What `pulumi config set/rm [--path]` does to the stack's config, for the dotted paths we hint."""
    words = shlex.split(command)
    assert words[:2] == ["pulumi", "config"], command
    words = [w for w in words[2:] if w not in ("--path", "--secret")]
    action, parts, value = words[0], words[1].split("."), words[2:]
    parent = config
    for part in parts[:-1]:
        parent = parent.setdefault(part, {})
    if action == "rm":
        del parent[parts[-1]]
    else:
        (parent[parts[-1]],) = value


def test_the_error_gives_the_pulumi_command_that_fixes_each_key():
    message = problems_of(
        {"postgres": {"storageSize": "lots", "storageSzie": "20Gi"}, "executor": {"podCreationBatchSize": 0},
         "createNamespace": "maybe"},
        {"kerberosKeytab": "not base64!!"},
    )
    fixes = message.split("To fix (a value shown is the key's default):\n", 1)[1].splitlines()
    assert fixes == [
        "  pulumi config set createNamespace true",
        "  pulumi config set --path 'executor.podCreationBatchSize' 16",
        "  pulumi config set --path 'postgres.storageSize' 10Gi",
        "  pulumi config rm --path 'postgres.storageSzie'",
        "  pulumi config set --secret kerberosKeytab <value>",
    ]


def test_following_the_hinted_commands_makes_the_config_valid():
    config = {"postgres": {"storageSize": "lots", "storageSzie": "20Gi", "backups": {"schedule": "daily"}},
              "s3": {"retentionDays": 0}, "createNamespace": "maybe"}
    message = problems_of(config)
    for line in message.split("To fix", 1)[1].splitlines()[1:]:
        apply_fix(config, line.strip())
    parse_settings({"instance": "dev", **config})
    assert config["postgres"] == {"storageSize": "10Gi", "backups": {"schedule": "0 0 2 * * *"}}


def run_check(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "components.settings", "check", *arguments], cwd=ROOT,
                          capture_output=True, text=True)


def test_check_reads_a_stack_file_through_the_model_without_the_engine(tmp_path):
    stack_file = tmp_path / "Pulumi.team-x.yaml"
    stack_file.write_text(
        "config:\n"
        "  airflow-platform:gitSyncToken: ghp_plaintext\n"
        "  airflow-platform:s3SecretAccessKey:\n    secure: v1:c2FsdA==:Y2lwaGVydGV4dA==\n"
    )
    result = run_check(str(stack_file))
    assert result.returncode == 1
    assert "Pulumi.team-x.yaml: invalid configuration for stack 'team-x' (3 problem(s)):" in result.stdout
    # A team's stack is long-lived: the development login is refused there.
    assert "airflow-platform:auth.mode" in result.stdout and "needs oidc or ldap" in result.stdout
    assert "airflow-platform:gitSyncToken: is a secret; set it with `pulumi config set --secret gitSyncToken`" in result.stdout
    # The encrypted key counts as set: only its partner is missing.
    assert "airflow-platform:s3SecretAccessKey: set both s3AccessKeyId and s3SecretAccessKey" in result.stdout
    assert "pulumi config set --secret gitSyncToken <value>" in result.stdout
    assert "ghp_plaintext" not in result.stdout


def test_check_passes_a_committed_stack_file():
    result = run_check("dev")
    assert (result.returncode, result.stdout) == (0, "Pulumi.dev.yaml: ok\n"), result.stderr


def test_pulumi_yaml_and_the_settings_page_are_generated_from_the_model():
    import yaml

    from components.settings import PROJECT
    from components.settings.docs import config_reference_markdown, project_config_declarations
    from testbed.harness import ROOT

    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared == {f"{PROJECT}:{key}": value for key, value in project_config_declarations().items()}
    assert config_reference_markdown() in (ROOT / "docs" / "settings.md").read_text(), "run: scripts/gen-docs"


def test_pulumi_yaml_declares_no_key_the_engine_would_require():
    """The engine refuses to run a stack that does not set a declared key without a default; every key of ours
    is optional, so a stack file with nothing in it must be runnable."""
    import yaml

    from testbed.harness import ROOT

    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared, "the scalar keys with defaults are declared"
    assert [key for key, declaration in declared.items() if "default" not in declaration] == []
