"""End to end with the real Pulumi engine: the CLI, the kubernetes provider in render mode, our random provider,
the policy pack, and the LogBucket dynamic provider against a real S3 endpoint (moto's server), with the program
run inline exactly as scripts/local-up, `python -m envs` and scripts/ci-preview run it.

Mocks prove what the program asks for; these prove that `up` works: the provider pickles and runs, secrets are
encrypted in state, a second run changes nothing, small changes stay small, and nothing is destroyed by
surprise. Every test makes its own stack, so they share no state and their order does not matter.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from pulumi import automation as auto

import engine
from envs.naming import branch_instance_name
from testbed.harness import ROOT
from testbed.toolchain import pulumi_bin_or_skip

pytestmark = pytest.mark.slow

pulumi_bin_or_skip()

ACCESS_KEY, SECRET_KEY = "e2e-access-key", "e2e-secret-key-must-stay-encrypted"
# One key per job (the provisioning key never reaches a pod); moto accepts any key.
JOB_KEYS = {"s3LogAccessKeyId": "e2e-log-key", "s3LogSecretAccessKey": "e2e-log-secret-must-stay-encrypted",
            "s3BackupAccessKeyId": "e2e-backup-key", "s3BackupSecretAccessKey": "e2e-backup-secret-must-stay-encrypted"}
PASSPHRASE = "e2e-passphrase"
_names = itertools.count()


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project: our Pulumi.yaml, a file backend, and the repository's virtualenv, where the engine
    looks for it (Pulumi.yaml names `.venv` for the dynamic provider)."""
    directory = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
    (directory / ".venv").symlink_to(ROOT / ".venv")
    (directory / "state").mkdir()
    return directory


class Instance:
    """One throw-away stack of the real program."""

    def __init__(self, project: Path, endpoint: str, stack_name: str, config: dict[str, str]):
        self.name = stack_name
        self.bucket = f"{stack_name}-logs"
        self.rendered = project / "rendered" / stack_name
        self.state = project / "state"
        self.backend = engine.Backend(url=f"file://{self.state}", passphrase=PASSPHRASE)
        self.stack = engine.open_stack(stack_name, self.backend, work_dir=project)
        settings = {
            "kubernetesRenderDir": str(self.rendered),
            "s3.endpointUrl": endpoint,
            "s3.bucket": self.bucket,
            "s3.retentionDays": "7",
            "postgres.backups.enabled": "true",
            **config,
        }
        self.stack.set_all_config({key: auto.ConfigValue(value) for key, value in settings.items()}, path=True)
        self.stack.set_config("s3AccessKeyId", auto.ConfigValue(ACCESS_KEY, secret=True))
        self.stack.set_config("s3SecretAccessKey", auto.ConfigValue(SECRET_KEY, secret=True))
        self.stack.set_all_config({key: auto.ConfigValue(value, secret=True) for key, value in JOB_KEYS.items()})

    def up(self) -> auto.UpResult:
        return self.stack.up(color="never")

    def preview(self, **kwargs) -> auto.PreviewResult:
        return engine.preview(self.stack, **kwargs)

    def manifests(self) -> list[dict]:
        return [doc for path in sorted(self.rendered.rglob("*.yaml"))
                for doc in yaml.safe_load_all(path.read_text()) if doc]

    def resource_count(self) -> int:
        return len((self.stack.export_stack().deployment or {}).get("resources") or [])


@pytest.fixture
def instance(project, s3_endpoint):
    """A factory: instance(**config) makes a fresh stack with its own bucket."""
    made = []

    def make(prefix: str = "br-e2e", **config: str) -> Instance:
        # br-*: a disposable (branch-like) stack; every other name is long-lived and must be protected.
        made.append(Instance(project, s3_endpoint, f"{prefix}-{next(_names)}", config))
        return made[-1]

    return make


def expiry_days(s3, bucket: str) -> int:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return next(rule["Expiration"]["Days"] for rule in rules if "Expiration" in rule)


def changes(result) -> dict[str, int]:
    return {op: count for op, count in result.change_summary.items() if op != "same"}


def test_up_renders_every_object_with_its_namespace_and_creates_the_bucket(instance, s3):
    it = instance()
    result = it.up()
    assert result.summary.result == "succeeded"

    manifests = it.manifests()
    kinds = {doc["kind"] for doc in manifests}
    assert {"Deployment", "Cluster", "Pooler", "Job", "CronJob", "ObjectStore", "ScheduledBackup",
            "ResourceQuota", "Secret", "ConfigMap"} <= kinds
    # pulumi-kubernetes before 4.32 may render a custom resource without its namespace when no cluster says
    # the kind is namespaced: every namespaced object must carry the instance's own.
    namespaced = [doc for doc in manifests if doc["kind"] not in ("Namespace", "CustomResourceDefinition")]
    assert {doc["metadata"].get("namespace") for doc in namespaced} == {f"airflow-{it.name}"}

    assert it.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert expiry_days(s3, it.bucket) == 7
    assert result.outputs["logs_url"].value == f"s3://{it.bucket}/logs"
    assert result.outputs["admin_password"].secret


def test_the_kubectl_command_local_up_prints_applies_the_rendered_folder_in_one_pass(instance, kube_api,
                                                                                   kube_apiserver_kubeconfig):
    # The command must name a folder that holds the objects, and in file-name order the Namespace would come
    # after most objects inside it. The stack is a `local-*` copy, as docs/checking-and-rendering-a-stack.md makes one.
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on PATH to run the printed command with")
    sys.path.insert(0, str(ROOT / "scripts"))
    import local_up

    it = instance(prefix="local-e2e")
    assert it.up().summary.result == "succeeded"
    command = local_up.apply_command(it.rendered)
    assert command[:2] == ["kubectl", "apply"]
    namespace = f"airflow-{it.name}"
    try:
        done = subprocess.run([kubectl, "--kubeconfig", str(kube_apiserver_kubeconfig), *command[1:]],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        for doc in it.manifests():
            path = kube_api.resource_path(doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace"))
            assert kube_api.request("GET", f"{path}/{doc['metadata']['name']}").ok, (doc["kind"], doc["metadata"]["name"])
    finally:
        kube_api.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_a_second_preview_changes_nothing_and_runs_the_policy_pack(instance):
    it = instance()
    it.up()
    # Random secrets, the pickled provider and every config checksum must be stable for this to pass.
    preview = it.preview(expect_no_changes=True, diff=True)
    assert changes(preview) == {}
    assert "Policy Packs run" in preview.stdout and str(engine.POLICY_PACK) in preview.stdout


def test_the_policy_pack_runs_when_a_user_asks_the_engine_for_logs_and_traces(instance, tmp_path):
    # The engine then puts its own flags (`--logtostderr -v=3 --tracing URL`) before the policy pack's arguments.
    it = instance()
    it.up()
    preview = it.preview(expect_no_changes=True, log_flow=True, log_verbosity=3, log_to_std_err=True,
                         tracing=f"file:{tmp_path / 'preview.trace'}")
    assert f"airflow-platform@v0.0.1 (local: {engine.POLICY_PACK})" in preview.stdout


def test_a_retention_change_is_one_update_of_the_bucket_and_is_applied(instance, s3):
    it = instance()
    it.up()
    it.stack.set_config("s3.retentionDays", auto.ConfigValue("14"), path=True)
    preview = it.preview(diff=True)
    assert changes(preview) == {"update": 1}, preview.stdout
    assert "retention_days" in preview.stdout and "14" in preview.stdout
    it.up()
    assert expiry_days(s3, it.bucket) == 14
    assert changes(it.preview(expect_no_changes=True)) == {}


def test_an_airflow_upgrade_is_a_new_migration_job_and_going_back_is_refused_before_anything_changes(instance):
    it = instance(airflowVersion="3.2.1")
    it.up()
    it.stack.set_config("airflowVersion", auto.ConfigValue("3.3.2"))
    preview = it.preview(diff=True)
    assert "migrate-3-3-2" in preview.stdout and "delete" not in changes(preview), changes(preview)
    it.up()

    it.stack.set_config("airflowVersion", auto.ConfigValue("3.2.1"))
    def real_resources() -> dict[str, tuple]:
        """What reaches the cluster and the store: not the components that group it, nor the engine's providers
        (the dynamic provider's record holds the stack's config, which the user did change)."""
        resources = it.stack.export_stack().deployment["resources"]
        return {r["urn"]: (r.get("inputs"), r.get("outputs")) for r in resources
                if r.get("custom") and not r["type"].startswith("pulumi:providers:")}

    before = real_resources()
    with pytest.raises(auto.CommandError) as refused:
        it.up()
    message = str(refused.value)
    assert "airflowVersion: 3.2.1 is older than 3.3.2" in message
    assert "airflow db downgrade --to-version 3.2.1" in message
    manifests = {doc["metadata"]["name"] for doc in it.manifests() if doc["kind"] == "Job"}
    assert not any(name.endswith("migrate-3-2-1") for name in manifests), manifests
    assert real_resources() == before


def test_rotating_the_log_key_updates_secrets_in_place_and_rolls_only_their_readers(instance):
    it = instance()
    it.up()
    before = {doc["metadata"]["name"]: doc for doc in it.manifests() if doc["kind"] == "Deployment"}
    it.stack.set_config("s3LogSecretAccessKey", auto.ConfigValue(JOB_KEYS["s3LogSecretAccessKey"] + "-rotated", secret=True))
    preview = it.preview(diff=True)
    assert set(changes(preview)) == {"update"}, preview.stdout  # no replace, no delete, no create
    it.up()
    after = {doc["metadata"]["name"]: doc for doc in it.manifests() if doc["kind"] == "Deployment"}

    def checksum(doc):
        return doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    rolled = {name for name in before if checksum(before[name]) != checksum(after[name])}
    airflow = {name for name, doc in before.items()
               if doc["spec"]["template"]["spec"]["containers"][0]["image"].startswith("apache/airflow:")}
    assert len(airflow) == 4 and rolled == airflow, "every Airflow component reads the log connection; nothing else"
    assert changes(it.preview(expect_no_changes=True)) == {}


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}


def test_the_state_files_hold_no_secret_in_any_encoding(instance):
    it = instance()
    it.up()
    rendered_secrets = {
        key: base64.b64decode(value).decode() if doc.get("data") and key in doc["data"] else value
        for doc in it.manifests() if doc["kind"] == "Secret"
        for key, value in {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.items()
    }
    secrets = {SECRET_KEY, *JOB_KEYS.values(), rendered_secrets["AIRFLOW__CORE__FERNET_KEY"], rendered_secrets["AIRFLOW__API__SECRET_KEY"],
               rendered_secrets["AIRFLOW__API_AUTH__JWT_SECRET"], it.stack.outputs()["admin_password"].value}
    revealed = engine.revealed(it.stack.export_stack().deployment["resources"])
    secrets |= {r["outputs"]["result"] for r in revealed if r["type"] == "random:index/randomPassword:RandomPassword"}
    assert len(secrets) >= 6  # S3 key, Fernet key, API and JWT secrets, admin and database passwords

    raw = "\n".join(path.read_text(errors="replace") for path in it.state.rglob("*") if path.is_file())
    assert it.name in raw  # the raw files were read: this stack's state is among them
    leaked = {secret for secret in secrets for form in _forms(secret) if form in raw}
    assert not leaked


def test_destroy_refuses_a_bucket_with_logs_before_deleting_anything(instance, s3):
    it = instance()
    it.up()
    key = "logs/dag_id=x/run_id=y/task_id=z/attempt=1.log"
    s3.put_object(Bucket=it.bucket, Key=key, Body=b"log")
    resources = it.resource_count()

    with pytest.raises(engine.DestroyRefused, match="forceDestroy"):
        engine.destroy(it.stack)
    assert it.resource_count() == resources, "nothing may be deleted when destroy is refused"
    assert s3.head_object(Bucket=it.bucket, Key=key)

    it.stack.set_config("s3.forceDestroy", auto.ConfigValue("true"), path=True)
    it.up()
    engine.destroy(it.stack)
    assert it.resource_count() == 0
    assert it.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_protected_stack_refuses_destroy_and_keeps_its_data(instance, s3):
    it = instance(protect="true")
    it.up()
    resources = it.resource_count()
    with pytest.raises(engine.DestroyRefused, match="protected"):
        engine.destroy(it.stack)
    assert it.resource_count() == resources, "our destroy deletes nothing when it refuses"

    # A plain `pulumi destroy` deletes what is not protected and then refuses: the data stays.
    with pytest.raises(auto.errors.CommandError, match="protected"):
        it.stack.destroy(color="never")
    kept = {r["type"] for r in it.stack.export_stack().deployment["resources"]}
    assert {engine.BUCKET_TYPE, "kubernetes:postgresql.cnpg.io/v1:Cluster"} <= kept
    assert it.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_the_policy_pack_fails_a_preview_that_breaks_a_mandatory_rule(project, tmp_path):
    """Our config model refuses what the pack checks, so the pack is shown failing another program's preview:
    a ConfigMap holding a password, which every stack of ours must never render."""
    import pulumi
    import pulumi_kubernetes as k8s

    def leaky_program() -> None:
        provider = k8s.Provider("render", render_yaml_to_directory=str(tmp_path / "rendered"))
        k8s.core.v1.ConfigMap("leaky", data={"DB_PASSWORD": "hunter2"}, opts=pulumi.ResourceOptions(provider=provider))

    backend = engine.Backend(url=f"file://{project / 'state'}", passphrase=PASSPHRASE)
    stack = engine.open_stack(f"br-policy-{next(_names)}", backend, work_dir=project, program=leaky_program)
    with pytest.raises(auto.errors.CommandError) as failed:
        engine.preview(stack)
    assert "no-secrets-in-configmaps" in str(failed.value) and "mandatory" in str(failed.value)
    assert changes(engine.preview(stack, policy=False)) == {"create": 3}  # the stack, provider and ConfigMap pass without it


def _envs(*args: str, env: dict[str, str], work_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envs", "--work-dir", str(work_dir), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_branch_environment_is_created_and_destroyed_for_real(project, s3_endpoint, s3):
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{project / 'state'}", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
           "AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID": ACCESS_KEY, "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY": SECRET_KEY}
    branch = "feature/E2E-1_real engine"
    created = _envs("create", branch, "--parent-stack", "", "--dags-repo", "https://git.example.org/dags.git",
                    "--config", f"s3.endpointUrl={s3_endpoint}",
                    "--config", f"kubernetesRenderDir={project / 'rendered' / 'branch'}", env=env, work_dir=project)
    assert created.returncode == 0, created.stdout + created.stderr
    listed = _envs("list", env=env, work_dir=project)
    assert branch_instance_name(branch) in listed.stdout, listed.stdout
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"] if "-br-feature-e2e-1-" in b["Name"]]
    assert buckets

    for _ in range(2):  # a second destroy finds nothing and still succeeds
        destroyed = _envs("destroy", branch, env=env, work_dir=project)
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"] in buckets]
    assert branch_instance_name(branch) not in _envs("list", env=env, work_dir=project).stdout


def test_ci_preview_posts_one_redacted_comment_from_a_real_preview(instance, project, monkeypatch):
    from ci_preview import cli
    from tests.tools.test_ci_comment_http import Forge

    it = instance()
    it.up()
    it.stack.set_config("s3.retentionDays", auto.ConfigValue("21"), path=True)
    with Forge("gitlab", []) as forge:
        for name, value in {"GITLAB_CI": "true", "CI_SERVER_URL": forge.url, "CI_PROJECT_ID": "42",
                            "CI_MERGE_REQUEST_IID": "7", "GITLAB_TOKEN": "glpat-e2e-token"}.items():
            monkeypatch.setenv(name, value)
        for _ in range(2):  # the second pipeline edits the first comment
            assert cli.main(["--stack", it.name],
                           open_stack=lambda name: engine.open_stack(name, it.backend, work_dir=project)) == 0
    writes = [(r["method"], json.loads(r["body"])["body"]) for r in forge.requests if r["method"] in ("POST", "PUT")]
    assert [method for method, _ in writes] == ["POST", "PUT"]
    body = writes[-1][1]
    assert it.name in body and "retention_days" in body and "21" in body
    assert SECRET_KEY not in "".join(r["body"] for r in forge.requests)
