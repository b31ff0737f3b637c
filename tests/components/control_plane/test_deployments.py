"""The control plane's Deployments (api-server, scheduler, dag-processor, triggerer) and the clean-up Job: resources,
Pod Security, probes, placement, replicas, and which pods a change rolls."""

import pytest

from policy import rules
from testbed.runs import checksums, config_env, containers_of, dev, pod_spec, pod_specs, prod, stack, task_pod_template
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64

GIT = {"gitSync": {"enabled": True, "repo": "https://git.example.org/team/dags.git", "ref": "feature/x", "periodSeconds": 30}}
KNOWN_HOSTS = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
SSH_GIT = {"gitSync": {"enabled": True, "repo": "git@git.example.org:team/dags.git", "knownHosts": KNOWN_HOSTS}}
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer")


# --- resources, Pod Security, probes, placement, rolling ---------------------------------------------------


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
    # under our read-only root that killed every Airflow container at start (tests/airflow/test_command_lines.py shows it).
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
    # tests/airflow/test_migration_on_postgres.py (test_the_job_probes_pass_for_this_pods_live_job_and_fail_without_one).
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


# --- probes, deadlines, ephemeral storage, what the Ingress publishes ----------------------------------------


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
