"""The instance's secrets: generated as random resources, travelling only as Secrets, each component reading only
the ones it uses, and what rolls when one changes."""

import base64

from cryptography.fernet import Fernet

from testbed.runs import checksums, containers_of, dev, pod_spec, pod_specs, prod, S3_KEYS, stack
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS

LOG_KEYS = {k: TEST_SECRETS[k] for k in ("s3LogAccessKeyId", "s3LogSecretAccessKey")}
GIT = {"gitSync": {"enabled": True, "repo": "https://git.example.org/team/dags.git", "ref": "feature/x", "periodSeconds": 30}}
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer")


def generated_secret_values(run):
    return [r.outputs_secret for r in run.resources if hasattr(r, "outputs_secret")]


BACKUP_KEYS = {k: TEST_SECRETS[k] for k in ("s3BackupAccessKeyId", "s3BackupSecretAccessKey")}
PROD_SECRETS = {**S3_KEYS, **BACKUP_KEYS, "authOidcClientSecret": TEST_SECRETS["authOidcClientSecret"]}


def secret_names_read(spec):
    names = set()
    for container in spec.get("initContainers", []) + spec["containers"]:
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
        names |= {e["valueFrom"]["secretKeyRef"]["name"] + ":" + e["valueFrom"]["secretKeyRef"]["key"]
                  for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    return names


# --- generated secrets ------------------------------------------------------------------------------------


def test_fernet_key_is_32_bytes_of_url_safe_base64_accepted_by_fernet():
    run = dev()
    key = run.one("Secret", "-secrets").inputs["stringData"]["AIRFLOW__CORE__FERNET_KEY"]
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert "+" not in key and "/" not in key
    token = Fernet(key.encode()).encrypt(b"connection password")
    assert Fernet(key.encode()).decrypt(token) == b"connection password"


def test_instance_secrets_are_generated_as_random_resources_and_travel_as_secrets():
    run = dev()
    names = {r.name for r in run.resources if r.type.startswith("random:")}
    assert {"dev-fernet-key", "dev-api-secret-key", "dev-jwt-secret", "dev-admin-password"} <= names
    secret = run.one("Secret", "-secrets")
    assert set(secret.inputs["stringData"]) == {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY"}
    assert set(run.one("Secret", "-jwt").inputs["stringData"]) == {"AIRFLOW__API_AUTH__JWT_SECRET"}
    assert set(run.one("Secret", "-api-key").inputs["stringData"]) == {"AIRFLOW__API__SECRET_KEY"}
    for name in ("-secrets", "-jwt", "-api-key"):
        assert "stringData" in run.one("Secret", name).secret_paths


def test_no_generated_secret_comes_from_a_resource_whose_id_is_its_value():
    """State files store resource IDs unencrypted; a RandomBytes' ID is its base64 value."""
    run = dev()
    assert not run.of_kind("RandomBytes") and not run.of_kind("RandomId")
    assert {r.type for r in run.resources if r.type.startswith("random:")} == {"random:index/randomPassword:RandomPassword"}


def test_a_rotated_log_key_rolls_every_component_reading_the_log_connection_and_the_provisioning_key_none():
    before = checksums(dev(secrets=LOG_KEYS))
    rotated_log = checksums(dev(secrets={**LOG_KEYS, "s3LogSecretAccessKey": "rotated-log-secret"}))
    assert {name for name in before if before[name] != rotated_log[name]} == {f"dev-{c}" for c in LONG_RUNNING}
    rotated_provisioning = checksums(dev(secrets={**LOG_KEYS, "s3SecretAccessKey": "rotated-provisioning-secret"}))
    assert rotated_provisioning == before, "the provisioning key never reaches a pod"


def test_generated_secrets_do_not_depend_on_settings_that_change():
    """A random resource is replaced when its inputs change: ours take none from settings, so an upgrade or a
    config change can never regenerate the Fernet key or the JWT secret."""
    before = {r.name: r.inputs for r in dev().resources if r.type.startswith("random:")}
    after = {r.name: r.inputs for r in dev({"airflowVersion": "3.3.1", "navbarColor": "#000"}).resources
             if r.type.startswith("random:")}
    assert before == after


def test_no_configmap_or_env_literal_holds_a_secret():
    run = dev({**KERBEROS_CONFIG, **GIT, "auth": {"mode": "ldap", "ldapUri": "ldaps://ldap.example.org",
                                                   "ldapSearchBase": "ou=people,dc=example,dc=org",
                                                   "ldapBindDn": "uid=airflow,dc=example,dc=org"}},
              {"kerberosKeytab": KEYTAB_B64, "gitSyncToken": "git-token-must-not-leak",
               "authLdapBindPassword": "ldap-password-must-not-leak"})
    secrets = [*S3_KEYS.values(), KEYTAB_B64, "git-token-must-not-leak", "ldap-password-must-not-leak",
               *generated_secret_values(run)]
    secrets.append(run.one("Secret", "-secrets").inputs["stringData"]["AIRFLOW__CORE__FERNET_KEY"])
    literals = [repr(c.inputs) for c in run.of_kind("ConfigMap")]
    for spec in pod_specs(run, cronjobs=False).values():
        literals += [repr(c.get("env", [])) + repr(c.get("args", [])) for c in containers_of(spec)]
    for text in literals:
        for secret in secrets:
            assert secret not in text


def test_jwt_secret_is_shared_by_api_server_and_scheduler():
    run = dev()
    for name in ("dev-api-server", "dev-scheduler"):
        container = pod_spec(run.one("Deployment", name))["containers"][0]
        assert {"secretRef": {"name": "dev-secrets"}} in container["envFrom"]


# --- secrets stay secret --------------------------------------------------------------------------------


def test_no_configmap_holds_a_secret_value():
    run = dev(KERBEROS_CONFIG, {"kerberosKeytab": KEYTAB_B64})
    secrets = [*S3_KEYS.values(), KEYTAB_B64, *(r.outputs_secret for r in run.resources if hasattr(r, "outputs_secret"))]
    for config_map in run.of_kind("ConfigMap"):
        text = repr(config_map.inputs)
        for secret in secrets:
            assert secret not in text, f"{config_map.k8s_name} holds a secret"


def test_s3_credentials_travel_only_as_secrets():
    run = prod(secrets=PROD_SECRETS)
    bucket = next(r for r in run.resources if r.type == "pulumi-python:dynamic:S3Bucket")
    assert {"access_key_id", "secret_access_key"} <= bucket.secret_paths
    for resource in run.resources:
        if S3_KEYS["s3SecretAccessKey"] in repr(resource.inputs):
            assert resource.secret_paths, f"{resource.type} {resource.name} holds the S3 key in plain text"


# --- each component reads only its own ------------------------------------------------------------------------


def test_each_component_reads_only_the_secrets_it_uses():
    specs = pod_specs(stack("prod"))
    db_only = "prod-secrets:AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
    common = {"prod-connections", db_only}  # and every Deployment's wait-for-migrations init container
    assert secret_names_read(specs["prod-api-server"]) == common | {"prod-secrets", "prod-jwt", "prod-api-key", "prod-webserver-config"}
    assert secret_names_read(specs["prod-scheduler"]) == common | {"prod-secrets", "prod-jwt"}
    assert secret_names_read(specs["prod-dag-processor"]) == common | {"prod-secrets"}
    assert secret_names_read(specs["prod-triggerer"]) == common | {"prod-secrets"}
    assert secret_names_read(specs["prod-migrate-3-3-2"]) == {db_only}
    assert secret_names_read(specs["prod-cleanup"]) == {db_only}
    assert secret_names_read(specs["task pod"]) == {"prod-connections"}


def test_the_triggerer_runs_no_log_server_it_could_not_authenticate():
    args = pod_specs(stack("dev"))["dev-triggerer"]["containers"][0]["args"]
    assert args == ["triggerer", "--skip-serve-logs"]
