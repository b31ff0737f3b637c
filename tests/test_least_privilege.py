"""Issue 10's guarantees: each credential does one job, the namespace allows only named network paths, DAG
code comes from a verified host, the pooler survives a node drain, images do not float, long-lived stacks
keep their data and a directory login, each component holds only its own secrets, and the quota fits the
control plane plus the tasks it promises."""

import json

import pytest
import yaml

from components import images, kube
from components.settings import ConfigError, capacity, parse_settings
from components.settings.docs import stacks_capacity_markdown
from components.s3_access import bucket_policy, identity_policies
from policy import rules
from testbed.harness import ROOT
from testbed.runs import dev, pod_specs, stack
from testbed.stacks import TEST_SECRETS, stack_file_config

KNOWN_HOSTS = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
STACKS = ("dev", "prod", "team-analytics", "team-search")


def refused(config, secrets=None, name="dev"):
    with pytest.raises(ConfigError) as error:
        stack(name, config, secrets)
    return str(error.value)


def secret_names_read(spec):
    names = set()
    for container in spec.get("initContainers", []) + spec["containers"]:
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
        names |= {e["valueFrom"]["secretKeyRef"]["name"] + ":" + e["valueFrom"]["secretKeyRef"]["key"]
                  for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    return names


# --- 1. one S3 credential per job -------------------------------------------------------------------------


def test_the_provisioning_key_reaches_no_pod_and_each_pod_gets_only_its_jobs_key():
    run = stack("prod")
    in_kubernetes = repr([r.inputs for r in run.resources if r.type.startswith("kubernetes:")])
    assert TEST_SECRETS["s3AccessKeyId"] not in in_kubernetes and TEST_SECRETS["s3SecretAccessKey"] not in in_kubernetes
    connections = json.loads(run.one("Secret", "-connections").inputs["stringData"]["connections.json"])
    assert connections["s3_logs"]["login"] == TEST_SECRETS["s3LogAccessKeyId"]
    assert TEST_SECRETS["s3BackupAccessKeyId"] not in repr(connections)
    backup = run.one("Secret", "-pg-s3").inputs["stringData"]
    assert backup["ACCESS_KEY_ID"] == TEST_SECRETS["s3BackupAccessKeyId"]
    bucket = next(r for r in run.resources if r.kind == "S3Bucket")
    assert bucket.inputs["access_key_id"] == TEST_SECRETS["s3AccessKeyId"]


def test_without_a_log_key_pods_use_the_ambient_chain_never_the_provisioning_key():
    run = dev()
    connections = json.loads(run.one("Secret", "-connections").inputs["stringData"]["connections.json"])
    assert "login" not in connections["s3_logs"] and "password" not in connections["s3_logs"]


@pytest.mark.parametrize(
    "secrets, key",
    [
        ({"s3LogAccessKeyId": TEST_SECRETS["s3AccessKeyId"]}, "s3LogAccessKeyId: is the provisioning key"),
        ({"s3BackupAccessKeyId": TEST_SECRETS["s3AccessKeyId"]}, "s3BackupAccessKeyId: is the provisioning key"),
        ({"s3LogAccessKeyId": TEST_SECRETS["s3BackupAccessKeyId"]}, "s3LogAccessKeyId: is also the backup key"),
        ({"airflowConnections": json.dumps({"x": {"conn_type": "aws", "login": TEST_SECRETS["s3BackupAccessKeyId"]}})},
         "airflowConnections: [secret] a connection logs in with the backup key"),
    ],
)
def test_a_stack_whose_pods_would_hold_the_provisioning_or_backup_key_is_refused(secrets, key):
    assert key in refused({}, secrets, name="prod")


def test_the_bucket_policy_holds_the_log_and_backup_users_to_their_prefixes():
    log, backup = "arn:aws:iam::1:user/logs", "arn:aws:iam::1:user/backups"
    policy = bucket_policy("b", "logs", "postgres", log, backup)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Deny" for s in policy["Statement"])
    assert by_sid["LogCredentialOnlyItsPrefix"]["NotResource"] == "arn:aws:s3:::b/logs/*"
    assert by_sid["LogCredentialOnlyItsPrefix"]["Principal"] == {"AWS": [log]}
    assert by_sid["BackupCredentialOnlyItsPrefix"]["NotResource"] == "arn:aws:s3:::b/postgres/*"
    # The log user can neither delete objects nor touch the bucket's settings or policy.
    allowed_to_log = by_sid["LogCredentialOnlyObjects"]["NotAction"]
    assert "s3:DeleteObject" not in allowed_to_log and not any("Bucket" in a and "Put" in a for a in allowed_to_log)
    assert "s3:DeleteObject" in by_sid["BackupCredentialOnlyObjects"]["NotAction"]  # Barman's retention
    assert bucket_policy("b", "logs", "postgres", None, None) is None


def test_the_stack_puts_the_bucket_policy_when_it_names_the_users():
    run = stack("prod", {"s3": {"logPrincipal": "arn:aws:iam::1:user/logs", "backupPrincipal": "arn:aws:iam::1:user/b"}})
    bucket = next(r for r in run.resources if r.kind == "S3Bucket")
    statements = json.loads(bucket.inputs["bucket_policy"])["Statement"]
    assert {s["Principal"]["AWS"][0] for s in statements} == {"arn:aws:iam::1:user/logs", "arn:aws:iam::1:user/b"}


def test_identity_policies_give_the_log_and_backup_users_only_their_prefix():
    policies = identity_policies("b", "logs", "postgres")
    assert {s["Resource"] for s in policies["log"]["Statement"]} == {"arn:aws:s3:::b/logs/*", "arn:aws:s3:::b"}
    assert {s["Resource"] for s in policies["backup"]["Statement"]} == {"arn:aws:s3:::b/postgres/*", "arn:aws:s3:::b"}


# --- 2. network policies ------------------------------------------------------------------------------------


def policies(run):
    return {p.k8s_name.split("-", 1)[1]: p.inputs["spec"] for p in run.of_kind("NetworkPolicy")}


def test_ingress_is_denied_by_default_and_each_allowed_path_is_one_named_policy():
    found = policies(stack("prod"))
    assert set(found) == {"deny-ingress", "api-from-tasks", "api-from-ingress", "pool-from-airflow",
                          "pg-from-pool", "pg-from-cluster", "pg-from-operator", "task-egress", "statsd-exporter"}
    assert found["deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_task_pods_may_send_statsd_to_the_exporter_and_prometheus_may_scrape_the_database_exporters():
    egress = policies(stack("prod"))["task-egress"]["egress"]
    statsd = [rule for rule in egress if rule.get("ports") == [{"port": 9125, "protocol": "UDP"}]]
    # The same selector the exporter's Deployment selects its pods by.
    assert statsd and statsd[0]["to"] == [{"podSelector": {"matchLabels": kube.selector_labels("prod", "statsd-exporter")}}]
    scraped = policies(stack("prod", {"metrics": {"prometheusOperator": True}}))
    assert scraped["pg-metrics"]["ingress"][0]["ports"] == [{"port": 9187, "protocol": "TCP"}]
    assert scraped["pool-metrics"]["ingress"][0]["ports"] == [{"port": 9127, "protocol": "TCP"}]
    assert "pg-metrics" not in policies(stack("prod"))


def test_prometheus_scrapes_from_any_namespace_but_the_instances_own_where_task_pods_run():
    run = stack("prod", {"metrics": {"prometheusOperator": True}})
    namespace = run.of_kind("Namespace")[0].inputs["metadata"]["name"]
    found = policies(run)
    not_here = {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [namespace]}]}}
    assert found["pg-metrics"]["ingress"][0]["from"] == [not_here]
    assert found["pool-metrics"]["ingress"][0]["from"] == [not_here]
    metrics_port = [rule for rule in found["statsd-exporter"]["ingress"] if rule["ports"][0]["port"] == 9102]
    assert metrics_port[0]["from"] == [not_here]


def test_only_airflow_components_reach_pgbouncer_and_only_pgbouncer_and_the_operator_reach_postgres():
    found = policies(stack("prod"))
    pool = found["pool-from-airflow"]
    assert pool["podSelector"] == {"matchLabels": {"cnpg.io/poolerName": "prod-pgbouncer"}}
    (rule,) = pool["ingress"]
    (expression,) = rule["from"][0]["podSelector"]["matchExpressions"]
    assert "task" not in expression["values"]
    assert set(expression["values"]) == {"api-server", "scheduler", "dag-processor", "triggerer", "migrate", "db-cleanup"}
    postgres = {"cnpg.io/cluster": "prod-pg", "cnpg.io/podRole": "instance"}
    assert found["pg-from-pool"]["podSelector"]["matchLabels"] == postgres
    assert found["pg-from-pool"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"cnpg.io/poolerName": "prod-pgbouncer"}}}]
    assert found["pg-from-operator"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cnpg-system"}}}
    ]


def test_task_pods_reach_the_execution_api_dns_and_allowed_egress_but_not_the_metadata_service():
    run = stack("prod")
    found = policies(run)
    assert found["api-from-tasks"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "task"
    egress = found["task-egress"]
    assert egress["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "task"
    dns, api, outside, statsd = egress["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api-server"
    assert outside["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]
    # The labels the policies select by are the labels the pods carry.
    api_labels = run.one("Deployment", "prod-api-server").inputs["spec"]["template"]["metadata"]["labels"]
    assert found["api-from-tasks"]["podSelector"]["matchLabels"].items() <= api_labels.items()
    task_labels = yaml.safe_load(run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])["metadata"]["labels"]
    assert egress["podSelector"]["matchLabels"].items() <= task_labels.items()


def test_the_ingress_controller_reaches_the_api_server_only_when_there_is_an_ingress():
    assert "api-from-ingress" not in policies(stack("dev"))
    assert policies(stack("prod", {"network": {"ingressControllerNamespace": "traefik"}}))["api-from-ingress"]["ingress"][0][
        "from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}]


def test_network_policies_can_be_switched_off_for_clusters_without_an_enforcing_cni():
    assert stack("dev", {"network": {"enabled": False}}).of_kind("NetworkPolicy") == []


# --- 3. verified DAG sources --------------------------------------------------------------------------------


def test_git_sync_over_ssh_checks_the_hosts_key():
    run = stack("dev", {"gitSync": {"enabled": True, "repo": "git@git.example.org:t/d.git", "knownHosts": KNOWN_HOSTS}},
                {"gitSyncSshKey": "-----BEGIN KEY-----"})
    for spec in (pod_specs(run)["dev-dag-processor"], pod_specs(run)["task pod"]):
        git = next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "git-sync")
        assert "--ssh-known-hosts=true" in git["args"] and "--ssh-known-hosts=false" not in git["args"]
        assert "--ssh-known-hosts-file=/etc/git-secret/known_hosts" in git["args"]
    assert run.one("Secret", "-git-sync").inputs["stringData"]["known_hosts"] == KNOWN_HOSTS


@pytest.mark.parametrize(
    "git, secrets, problem",
    [
        ({"repo": "git@git.example.org:t/d.git"}, {"gitSyncSshKey": "k"}, "gitSync.knownHosts: an SSH key is set but no known hosts"),
        ({"repo": "git@git.example.org:t/d.git"}, {}, "is an SSH URL but no SSH key is set"),
        ({"repo": "ssh://git@git.example.org/t/d.git"}, {}, "is an SSH URL but no SSH key is set"),
    ],
)
def test_unverifiable_dag_sources_are_refused(git, secrets, problem):
    assert problem in refused({"gitSync": {"enabled": True, **git}}, secrets)


def test_git_sync_sidecars_have_probes_on_their_health_endpoint():
    run = stack("team-search", secrets={"gitSyncToken": "t"})
    for component in ("dag-processor", "triggerer"):
        git = next(c for c in pod_specs(run)[f"team-search-{component}"]["containers"] if c["name"] == "git-sync")
        assert f"--http-bind=:{kube.GIT_SYNC_HTTP_PORT}" in git["args"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert git[probe]["httpGet"] == {"path": "/", "port": kube.GIT_SYNC_HTTP_PORT}


# --- 4. the pooler --------------------------------------------------------------------------------------------


def test_prods_two_pgbouncers_are_sized_spread_and_budgeted():
    run = stack("prod")
    template = run.one("Pooler").inputs["spec"]["template"]["spec"]
    (container,) = template["containers"]
    assert container["name"] == "pgbouncer" and {"cpu", "memory"} <= set(container["resources"]["limits"])
    term = template["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"] == {"matchLabels": {"cnpg.io/poolerName": "prod-pgbouncer"}}
    budget = run.one("PodDisruptionBudget", "prod-pgbouncer").inputs["spec"]
    assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"] == {"cnpg.io/poolerName": "prod-pgbouncer"}


def test_a_single_pgbouncer_gets_no_budget_that_would_block_every_drain():
    assert [p.k8s_name for p in stack("dev").of_kind("PodDisruptionBudget")] == []


# --- 5. pinned images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STACKS)
def test_every_image_is_an_exact_version(name):
    run = stack(name)
    checked = [rules.Checked(r.type, r.inputs, name, r.protect, r.name) for r in run.resources]
    assert [p for c in checked for p in rules.pinned_image_tags(c)] == []
    assert run.one("Cluster").inputs["spec"]["imageName"] == images.postgres(17)


def test_floating_images_are_refused_by_the_pack_and_at_config_time():
    cluster = rules.Checked("kubernetes:postgresql.cnpg.io/v1:Cluster", {"spec": {"imageName": "ghcr.io/cloudnative-pg/postgresql:17"}})
    assert "floating tag '17'" in rules.pinned_image_tags(cluster)[0]
    assert "postgres.image" in refused({"postgres": {"image": "ghcr.io/cloudnative-pg/postgresql:17"}})
    digest = "ghcr.io/cloudnative-pg/postgresql@sha256:" + "a" * 64
    assert stack("dev", {"postgres": {"image": digest}}).one("Cluster").inputs["spec"]["imageName"] == digest


# --- 6 and 7. long-lived stacks ----------------------------------------------------------------------------------


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


# --- 8. each component only its own secrets ----------------------------------------------------------------------


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


# --- 9. quota and executor ---------------------------------------------------------------------------------------


def test_a_pod_refused_by_the_quota_waits_instead_of_failing_its_task():
    env = stack("dev").one("ConfigMap", "-config").inputs["data"]
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__TASK_PUBLISH_MAX_RETRIES"] == "-1"


def rendered_need(run):
    """The quota-relevant requests of what the program renders, counted independently of capacity.py."""
    from components.settings.rules import cpu_cores, memory_bytes

    def pod_need(spec, replicas):
        def total(items):
            return (sum(cpu_cores(c["resources"]["requests"]["cpu"]) for c in items),
                    sum(memory_bytes(c["resources"]["requests"]["memory"]) for c in items))
        cpu, mem = total(spec["containers"])
        for init in spec.get("initContainers", []):
            icpu, imem = total([init])
            cpu, mem = max(cpu, icpu), max(mem, imem)
        return cpu * replicas, mem * replicas

    needs = []
    for d in run.of_kind("Deployment"):
        needs.append(pod_need(d.inputs["spec"]["template"]["spec"], d.inputs["spec"]["replicas"] + 1))
    for job in run.of_kind("Job"):
        needs.append(pod_need(job.inputs["spec"]["template"]["spec"], 1))
    for cron in run.of_kind("CronJob"):
        needs.append(pod_need(cron.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"], 1))
    cluster = run.one("Cluster").inputs["spec"]
    sidecar = [run.one("ObjectStore").inputs["spec"]["instanceSidecarConfiguration"]] if run.of_kind("ObjectStore") else []
    needs.append(pod_need({"containers": [cluster, *sidecar]}, cluster["instances"]))
    pooler = run.one("Pooler").inputs["spec"]
    needs.append(pod_need(pooler["template"]["spec"], pooler["instances"] + 1))
    return sum(n[0] for n in needs), sum(n[1] for n in needs)


@pytest.mark.parametrize("name", STACKS)
def test_the_capacity_model_counts_exactly_the_pods_the_program_renders(name):
    settings = parse_settings({"instance": name, **stack_file_config(name), **TEST_SECRETS}, stack=name)
    need = capacity.control_plane(settings)
    cpu, memory = rendered_need(stack(name))
    assert need.requests_cpu == pytest.approx(cpu) and need.requests_memory == pytest.approx(memory)


def test_the_default_quota_holds_the_control_plane_plus_the_stated_concurrent_tasks():
    settings = parse_settings({"instance": "dev", "quota": {"concurrentTasks": 10}}, stack="dev")
    assert capacity.task_pods_that_fit(settings) == 10


def test_a_quota_that_cannot_hold_the_control_plane_and_one_task_is_refused():
    message = refused({"quota": {"requestsCpu": "2"}})
    assert "quota: cannot hold the control plane" in message and "requests.cpu 2 <" in message


def test_the_capacity_page_shows_each_stacks_capacity():
    assert stacks_capacity_markdown() in (ROOT / "docs" / "capacity-and-cost.md").read_text(), (
        "run: scripts/gen-docs"
    )


# --- 10. smaller items -------------------------------------------------------------------------------------------


def test_every_long_running_component_has_a_readiness_probe():
    specs = pod_specs(stack("dev"))
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert "readinessProbe" in specs[f"dev-{component}"]["containers"][0], component


def test_the_clean_up_job_has_a_deadline():
    cron = stack("dev").one("CronJob").inputs["spec"]["jobTemplate"]["spec"]
    assert cron["activeDeadlineSeconds"] == 3600


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_container_requests_and_limits_ephemeral_storage(name):
    for pod, spec in pod_specs(stack(name)).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container["resources"]
            assert "ephemeral-storage" in resources["requests"] and "ephemeral-storage" in resources["limits"], (pod, container["name"])


def test_the_execution_api_is_not_published_through_the_ingress():
    run = stack("prod")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in run.one("Ingress").inputs["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/"] == "prod-api-server"
    assert paths["/execution"] == "prod-closed"
    assert "selector" not in run.one("Service", "prod-closed").inputs["spec"]
