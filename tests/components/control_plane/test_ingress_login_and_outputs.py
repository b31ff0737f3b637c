"""Reaching the instance: the Ingress, the login (OIDC, LDAP, simple auth on the stacks that may use it), the stack
outputs, and the order the objects come up in."""

import json

import pytest

from components.settings import ConfigError, parse_settings
from policy import rules
from testbed.runs import config_env, dev, pod_spec, pod_specs, prod, refused, task_pod_template
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS, stack_file_config

LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer")


STACKS = ("dev", "prod", "team-analytics", "team-search")


# --- reaching it ----------------------------------------------------------------------------------------------


def test_ingress_serves_the_api_server_and_base_url_matches():
    run = prod()
    ingress = run.one("Ingress").inputs["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["airflow.example.org"], "secretName": "airflow-prod-tls"}]
    path = ingress["rules"][0]["http"]["paths"][0]
    assert ingress["rules"][0]["host"] == "airflow.example.org" and path["path"] == "/"
    assert path["backend"]["service"]["name"] == "prod-api-server"
    assert config_env(run)["AIRFLOW__API__BASE_URL"] == "https://airflow.example.org"
    assert "--proxy-headers" in pod_spec(run.one("Deployment", "prod-api-server"))["containers"][0]["args"]
    assert run.exports["url"] == "https://airflow.example.org"


def test_oidc_login_maps_directory_groups_to_roles_without_a_public_role():
    run = prod()
    assert config_env(run)["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    secret = run.one("Secret", "-webserver-config")
    assert "stringData" in secret.secret_paths
    config = secret.inputs["stringData"]["webserver_config.py"]
    assert "AUTH_TYPE = AUTH_OAUTH" in config
    assert (
        "AUTH_ROLES_MAPPING = {'airflow-prod-admins': ['Admin'], 'airflow-prod-ops': ['Op'], "
        "'airflow-prod-users': ['User']}" in config
    )
    assert "AUTH_ROLES_SYNC_AT_LOGIN = True" in config
    assert "AUTH_ROLE_PUBLIC" not in config
    assert TEST_SECRETS["authOidcClientSecret"] not in config
    assert secret.inputs["stringData"]["oidc-client-secret"] == TEST_SECRETS["authOidcClientSecret"]
    compile(config, "webserver_config.py", "exec")
    assert "admin_password" not in run.exports


def test_dev_login_is_an_admin_with_a_generated_password_exported_as_a_secret():
    run = dev()
    password = run.exports["admin_password"]
    assert "admin_password" in run.secret_exports and len(password) == 24
    passwords = json.loads(run.one("Secret", "-webserver-config").inputs["stringData"]["simple_auth_manager_passwords.json"])
    assert passwords == {"admin": password}


def test_stack_outputs_tell_a_team_where_everything_is():
    run = dev()
    assert run.exports["url"] == "http://dev-api-server.airflow-dev.svc:8080"
    assert run.exports["namespace"] == "airflow-dev"
    assert run.exports["service_accounts"]["scheduler"] == "dev-scheduler"
    assert run.exports["logs_url"] == "s3://airflow-dev-airflow-logs/logs"
    assert run.exports["database_host"] == "dev-pgbouncer.airflow-dev.svc"


def test_kerberos_ticket_reaches_scheduler_api_server_and_task_pods_but_not_the_keytab():
    run = dev(KERBEROS_CONFIG, {"kerberosKeytab": KEYTAB_B64})
    for name, spec in pod_specs(run, cronjobs=False).items():
        claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        secrets = {v.get("secret", {}).get("secretName") for v in spec["volumes"]}
        if name in ("dev-scheduler", "dev-api-server", "task pod", "dev-kerberos"):
            assert "dev-krb5-ccache" in claims, name
        if name != "dev-kerberos":
            assert "dev-keytab" not in secrets, name
    env = {e["name"]: e["value"] for e in task_pod_template(run)["spec"]["containers"][0]["env"]}
    assert env["KRB5CCNAME"] == "FILE:/var/run/airflow-krb5/krb5cc"


def test_control_plane_objects_wait_for_the_namespace_and_pods_for_their_service_account():
    """On a new stack the engine creates the namespace before anything in it, and a pod's service account before
    the Deployment or Job that runs as it (its Role is bound before the migration runs: `migrate_after`)."""
    run = prod()
    namespace = run.one("Namespace").urn
    accounts = {account.k8s_name: account.urn for account in run.of_kind("ServiceAccount")}
    for kind in ("ConfigMap", "Secret", "Service", "Ingress", "PodDisruptionBudget", "Job", "CronJob"):
        for resource in run.of_kind(kind):
            if resource.parent.endswith("AirflowControlPlane::prod"):
                assert namespace in resource.dependencies, (kind, resource.k8s_name)
    for component in LONG_RUNNING:
        assert accounts[f"prod-{component}"] in run.one("Deployment", f"prod-{component}").dependencies
    assert accounts["prod-migrate"] in run.one("CronJob", "prod-cleanup").dependencies
    # The scheduler launches task pods from the template, as the task account.
    assert accounts["prod-task"] in run.one("ConfigMap", "prod-pod-template").dependencies


# --- login on long-lived stacks -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prod", "team-analytics", "team-search"])
def test_simple_auth_is_refused_on_long_lived_stacks(name):
    assert "auth.mode: 'simple' (SimpleAuthManager) is for development only" in refused({"auth": {"mode": "simple"}}, name=name)
    with pytest.raises(ConfigError, match="auth.mode"):
        parse_settings({"instance": "staging"}, stack="staging")
    # Only the `local-` prefix makes a local copy: a name that merely starts with the word is long-lived.
    for name in ("localsearch", "locals", "team-local"):
        with pytest.raises(ConfigError, match="auth.mode"):
            parse_settings({"instance": name}, stack=name)


# local-*: the git-ignored copies (`Pulumi.local-*.yaml`) that `AIRFLOW_PLATFORM_LOCAL_STACK=local-x scripts/local-up`
# renders, as docs/checking-and-rendering-a-stack.md shows for team-search.
@pytest.mark.parametrize("name", ["dev", "local", "local-search", "br-feature-x-abcdef"])
def test_dev_local_and_branch_stacks_may_use_simple_auth_and_are_not_protected(name):
    settings = parse_settings({"instance": name, "auth": {"mode": "simple"}}, stack=name)
    assert settings.protected is False
    assert parse_settings({"instance": name, "protect": False}, stack=name).protected is False


def test_no_committed_stack_hands_admin_to_a_group_not_named_for_its_instance():
    for name in STACKS:
        mapping = (stack_file_config(name).get("auth") or {}).get("roleMapping", {})
        owner = stack_file_config(name).get("team") or name
        for group, roles in mapping.items():
            if "Admin" in roles:
                assert owner in group, (name, group)
