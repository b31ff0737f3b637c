"""AirflowControlPlane: what a team gets after `pulumi up`, pinned down as behaviour."""

import base64
import json

import pytest
from cryptography.fernet import Fernet

from testbed.harness import run_stack
from testbed.runs import S3_KEYS, dev, pod_spec, pod_specs, prod, task_pod_template
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS

LOG_KEYS = {k: TEST_SECRETS[k] for k in ("s3LogAccessKeyId", "s3LogSecretAccessKey")}
GIT = {"gitSync": {"enabled": True, "repo": "https://git.example.org/team/dags.git", "ref": "feature/x", "periodSeconds": 30}}
KNOWN_HOSTS = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
SSH_GIT = {"gitSync": {"enabled": True, "repo": "git@git.example.org:team/dags.git", "knownHosts": KNOWN_HOSTS}}
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer")


def containers_of(spec):
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_env(run):
    return run.one("ConfigMap", "-config").inputs["data"]


def generated_secret_values(run):
    return [r.outputs_secret for r in run.resources if hasattr(r, "outputs_secret")]


# --- secrets ----------------------------------------------------------------------------------------------


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


# --- task pods --------------------------------------------------------------------------------------------


def test_task_pods_carry_no_database_credentials_no_secrets_and_no_token():
    run = dev()
    template = task_pod_template(run)
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "dev-task"
    base = spec["containers"][0]
    assert base["envFrom"] == [{"configMapRef": {"name": "dev-config"}}]
    assert "SQL_ALCHEMY_CONN" not in json.dumps(template)
    assert "FERNET" not in json.dumps(template) and "JWT" not in json.dumps(template)
    assert "SQL_ALCHEMY_CONN" not in json.dumps(config_env(run))


def test_task_pods_get_a_token_only_when_the_stack_opts_in():
    spec = task_pod_template(dev({"taskPod": {"kubernetesApiAccess": True}}))["spec"]
    assert spec["automountServiceAccountToken"] is True


def test_task_pod_template_is_what_the_kubernetes_executor_expects():
    run = dev({"team": "growth"})
    template = task_pod_template(run)
    spec = template["spec"]
    assert spec["containers"][0]["name"] == "base" and spec["containers"][0]["image"] == "apache/airflow:3.3.2-python3.12"
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "256Mi"},
        "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "4Gi"},
    }
    labels = template["metadata"]["labels"]
    assert labels["airflow-platform/team"] == "growth" and labels["app.kubernetes.io/instance"] == "dev"
    # the executor adds dag_id / task_id labels itself; the template must not claim those keys
    assert not {"dag_id", "task_id"} & set(labels)
    env = config_env(run)
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] == "/opt/airflow/pod-templates/pod_template.yaml"
    mounts = pod_spec(run.one("Deployment", "dev-scheduler"))["containers"][0]["volumeMounts"]
    assert {"name": "pod-template", "mountPath": "/opt/airflow/pod-templates", "readOnly": True} in mounts


def test_task_pods_reach_the_execution_api_through_the_api_server_service():
    run = dev()
    assert config_env(run)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://dev-api-server.airflow-dev.svc:8080/execution/"
    )
    service = run.one("Service", "dev-api-server").inputs["spec"]
    assert service["ports"][0]["port"] == 8080
    assert service["selector"]["app.kubernetes.io/component"] == "api-server"


# --- configuration ----------------------------------------------------------------------------------------


def test_executor_logging_and_secrets_backend_settings():
    env = config_env(dev({"executor": {"podCreationBatchSize": 32, "taskQueuedTimeoutSeconds": 7200}}))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] == "airflow-dev"
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE"] == "32"
    assert float(env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]) == 7200
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True"
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == "s3://airflow-dev-airflow-logs/logs"
    assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == "s3_logs"
    assert env["AIRFLOW__SECRETS__BACKEND"] == "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    assert env["AIRFLOW__API__INSTANCE_NAME"] == "dev"


def test_connections_file_holds_the_log_connection_and_the_stacks_own():
    extra = {"warehouse": {"conn_type": "postgres", "host": "dwh.example.org", "password": "dwh-pw"}}
    run = dev({"s3": {"endpointUrl": "https://rgw.example.org", "retentionDays": 7, "forceDestroy": True}},
              {"airflowConnections": json.dumps(extra), **LOG_KEYS})
    secret = run.one("Secret", "-connections")
    assert "stringData" in secret.secret_paths
    connections = json.loads(secret.inputs["stringData"]["connections.json"])
    assert connections["warehouse"]["host"] == "dwh.example.org"
    log = connections["s3_logs"]
    assert log["conn_type"] == "aws" and log["login"] == LOG_KEYS["s3LogAccessKeyId"]
    assert log["password"] == LOG_KEYS["s3LogSecretAccessKey"]
    assert log["extra"]["endpoint_url"] == "https://rgw.example.org"


def test_the_log_connection_retries_long_enough_for_a_task_pod_to_outlast_a_store_outage():
    from botocore.config import Config

    def retries(overrides: dict) -> dict:
        connections = json.loads(dev(overrides, LOG_KEYS).one("Secret", "-connections").inputs["stringData"]["connections.json"])
        config = Config(**connections["s3_logs"]["extra"]["config_kwargs"])  # what the Amazon provider builds
        return config.retries

    def typical_window(attempts: int) -> float:
        """Seconds botocore's standard mode waits between the attempts, each wait at its median."""
        from botocore.retries.standard import ExponentialBackoff, RetryContext

        backoff = ExponentialBackoff(random=lambda: 0.5)
        return sum(backoff.delay_amount(RetryContext(attempt_number=n, caught_exception=ConnectionError()))
                   for n in range(1, attempts))

    assert retries({})["mode"] == "standard"
    # The test node lost a log to a 25-second outage with 10 attempts (13 s of waiting in the median).
    assert typical_window(retries({})["total_max_attempts"]) > 90
    assert retries({"s3": {"logUploadAttempts": 3}})["total_max_attempts"] == 3


# --- migration ---------------------------------------------------------------------------------------------


def test_migration_job_runs_after_the_database_and_before_every_component():
    run = dev()
    job = run.one("Job")
    assert job.k8s_name == "dev-migrate-3-3-2"
    assert pod_spec(job)["containers"][0]["args"] == ["db", "migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # Depending on the PostgresCluster component means depending on its Cluster, which waits for Ready.
    assert run.one("Cluster").urn in job.dependencies
    assert run.one("Cluster").metadata["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    for deployment in run.of_kind("Deployment"):
        if deployment.k8s_name in ("dev-kerberos", "dev-statsd-exporter"):  # neither runs Airflow on the database
            continue
        assert job.urn in deployment.dependencies, deployment.k8s_name
        init = pod_spec(deployment)["initContainers"][0]
        assert init["args"][:2] == ["db", "check-migrations"]


def test_an_airflow_upgrade_creates_a_new_migration_job():
    assert run_stack({"airflowVersion": "3.3.1"}, stack="dev").one("Job").k8s_name == "dev-migrate-3-3-1"


# --- deployments -------------------------------------------------------------------------------------------


def test_every_container_has_requests_and_limits():
    for name, spec in pod_specs(prod(), cronjobs=False).items():
        for container in containers_of(spec):
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (name, container["name"])
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), (name, container["name"])


def test_every_pod_meets_pod_security_restricted():
    run = dev({**KERBEROS_CONFIG, **SSH_GIT}, {"kerberosKeytab": KEYTAB_B64, "gitSyncSshKey": "-----BEGIN KEY-----"})
    specs = pod_specs(run, cronjobs=False)
    assert {"dev-kerberos", "dev-migrate-3-3-2", "task pod", *(f"dev-{c}" for c in LONG_RUNNING)} <= set(specs)
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        if name == "dev-statsd-exporter":  # not the Airflow image: its own `nobody`
            assert pod["runAsUser"] == pod["runAsGroup"] == 65534, name
        else:
            assert pod["runAsUser"] == 50000 and pod["runAsGroup"] == 0, name
        for volume in spec["volumes"]:
            assert "hostPath" not in volume, name
        for container in containers_of(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
            assert "privileged" not in context
        mounts = {m["mountPath"] for c in containers_of(spec) for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts or name == "dev-statsd-exporter", name  # a Go binary that writes no file


def test_every_container_that_runs_airflow_reads_an_airflow_cfg_that_exists_so_airflow_never_writes_one():
    # Airflow 3.3's `airflow` command writes a default airflow.cfg to AIRFLOW_CONFIG unless that path exists;
    # under our read-only root that killed every Airflow container at start (tests/test_real_airflow.py shows it).
    run = dev({**KERBEROS_CONFIG, **GIT}, {"kerberosKeytab": KEYTAB_B64})
    specs = pod_specs(run, cronjobs=False)
    specs.update({c.k8s_name: c.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in run.of_kind("CronJob")})
    image = task_pod_template(run)["spec"]["containers"][0]["image"]
    runs_airflow = set()
    for name, spec in specs.items():
        for container in containers_of(spec):
            command = container.get("command") or ["airflow"]  # the image's entrypoint runs `airflow <args>`
            if container["image"] != image or not (command[0] == "airflow" or "exec airflow " in command[-1]):
                continue  # git-sync, the StatsD exporter, a file copy: no Airflow code
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("AIRFLOW_CONFIG") == "/dev/null", (name, container["name"])
            runs_airflow.add(f"{name}/{container['name']}")
    assert runs_airflow >= {
        "dev-migrate-3-3-2/migrate", "dev-cleanup/db-clean", "dev-kerberos/renewer", "task pod/base",
        *(f"dev-{c}/{c}" for c in LONG_RUNNING), *(f"dev-{c}/wait-for-migrations" for c in LONG_RUNNING),
    }


def test_probes_test_the_process_not_just_the_port():
    run = dev()
    api = pod_spec(run.one("Deployment", "dev-api-server"))["containers"][0]
    assert api["readinessProbe"]["httpGet"] == {"path": "/api/v2/version", "port": 8080}
    assert api["livenessProbe"]["httpGet"]["path"] == "/api/v2/version"
    scheduler = pod_spec(run.one("Deployment", "dev-scheduler"))["containers"][0]
    assert scheduler["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8974}
    assert config_env(run)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    # The dag-processor's and the triggerer's `airflow jobs check` probes run against a real database in
    # tests/test_real_airflow.py (test_the_job_probes_pass_for_this_pods_live_job_and_fail_without_one).
    for component in ("dag-processor", "triggerer"):
        container = pod_spec(run.one("Deployment", f"dev-{component}"))["containers"][0]
        assert container["livenessProbe"]["exec"] == container["readinessProbe"]["exec"]


def test_prod_runs_two_schedulers_with_pdb_and_anti_affinity():
    run = prod()
    scheduler = run.one("Deployment", "prod-scheduler").inputs["spec"]
    assert scheduler["replicas"] == 2
    terms = scheduler["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "scheduler"
    budgets = {b.k8s_name: b.inputs["spec"] for b in run.of_kind("PodDisruptionBudget")}
    assert budgets["prod-scheduler"]["maxUnavailable"] == 1
    assert "prod-dag-processor" not in budgets  # one replica: a PDB would only block drains
    assert "affinity" not in pod_spec(run.one("Deployment", "prod-dag-processor"))


def test_node_placement_applies_to_every_pod():
    placement = {"placement": {"nodeSelector": {"pool": "airflow"},
                               "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "airflow", "effect": "NoSchedule"}]}}
    for name, spec in pod_specs(dev(placement), cronjobs=False).items():
        assert spec["nodeSelector"] == {"pool": "airflow"}, name
        assert spec["tolerations"][0]["key"] == "dedicated", name


def checksums(run):
    return {d.k8s_name: d.inputs["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in run.of_kind("Deployment") if d.k8s_name != "dev-kerberos"}


@pytest.mark.parametrize(
    "change, rolled",
    [
        ({"taskPod": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}}},
         {"dev-scheduler"}),
        ({"auth": {"mode": "simple", "defaultRole": "Viewer"}}, set()),
        ({"instanceTitle": "Team A"}, {f"dev-{c}" for c in LONG_RUNNING}),
        ({"scheduler": {"replicas": 1, "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                                     "limits": {"cpu": "1", "memory": "1Gi"}}}}, set()),
    ],
)
def test_a_config_change_rolls_only_the_pods_that_use_it(change, rolled):
    before = checksums(dev())
    after = checksums(dev(change))
    assert {name for name in before if before[name] != after[name]} == rolled


def test_changing_login_settings_rolls_only_the_api_server():
    oidc = {"auth": {"mode": "oidc", "oidcMetadataUrl": "https://idp/.well-known/openid-configuration",
                     "oidcClientId": "airflow", "roleMapping": {"ops": ["Admin"]}}}
    secrets = {"authOidcClientSecret": "s"}
    before = checksums(dev(oidc, secrets))
    changed = {"auth": {**oidc["auth"], "roleMapping": {"ops": ["Admin"], "analysts": ["Viewer"]}}}
    after = checksums(dev(changed, secrets))
    assert {name for name in before if before[name] != after[name]} == {"dev-api-server"}


# --- DAG delivery --------------------------------------------------------------------------------------------


def test_git_sync_runs_beside_dag_parsers_and_before_each_task():
    run = dev(GIT, {"gitSyncToken": "token"})
    for component in ("dag-processor", "triggerer"):
        containers = pod_spec(run.one("Deployment", f"dev-{component}"))["containers"]
        sidecar = next(c for c in containers if c["name"] == "git-sync")
        assert "--ref=feature/x" in sidecar["args"] and "--period=30s" in sidecar["args"]
        assert "--password-file=/etc/git-secret/token" in sidecar["args"]
    assert [c["name"] for c in pod_spec(run.one("Deployment", "dev-scheduler"))["containers"]] == ["scheduler"]
    init = task_pod_template(run)["spec"]["initContainers"]
    assert init[0]["name"] == "git-sync" and "--one-time" in init[0]["args"]
    assert config_env(run)["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags/repo"
    assert run.one("Secret", "-git-sync").inputs["stringData"] == {"token": "token"}


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
