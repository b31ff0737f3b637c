"""End to end with the real Pulumi engine: the CLI, the Python language host, the kubernetes provider in
render mode, pulumi_random, and the LogBucket dynamic provider against a real S3 endpoint (moto's server).

Mocks prove what the program asks for; these prove that `pulumi up` works: the provider pickles and runs,
secrets are encrypted in state, a second run changes nothing, and nothing is destroyed by surprise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

pytestmark = pytest.mark.slow
from moto.server import ThreadedMotoServer

from tests.harness import ROOT

PULUMI = shutil.which("pulumi")
if PULUMI is None:
    reason = os.environ.get("AIRFLOW_PLATFORM_TOOLCHAIN_MISSING", "the pulumi CLI is not on PATH (scripts/test installs it)")
    if os.environ.get("AIRFLOW_PLATFORM_E2E") == "require":
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)

ACCESS_KEY, SECRET_KEY = "e2e-access-key", "e2e-secret-key-must-stay-encrypted"


class Project:
    """A copy of the program in a temp dir with its own file backend, so tests touch nothing of the repo."""

    def __init__(self, workdir: Path, endpoint: str):
        self.dir = workdir
        self.endpoint = endpoint
        for name in ("__main__.py", "Pulumi.yaml", "components"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
        (workdir / ".venv").symlink_to(ROOT / ".venv")
        (workdir / "state").mkdir()
        self.env = {
            **os.environ,
            "PULUMI_BACKEND_URL": f"file://{workdir / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "e2e-passphrase",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_HOME": str(Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))),
        }

    def pulumi(self, *args: str, stack: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [PULUMI, *args, "--stack", stack, "--non-interactive", "--color", "never"],
            cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def init(self, stack: str, bucket: str, **config: str) -> None:
        subprocess.run([PULUMI, "stack", "init", stack, "--non-interactive"], cwd=self.dir, env=self.env,
                       check=True, capture_output=True)
        settings = {
            "kubernetesRenderDir": str(self.dir / "rendered" / stack),
            "s3.endpointUrl": self.endpoint,
            "s3.bucket": bucket,
            "s3.retentionDays": "7",
            "postgres.backups.enabled": "true",
            **config,
        }
        for key, value in settings.items():
            self.pulumi("config", "set", "--path", key, value, stack=stack)
        self.pulumi("config", "set", "--secret", "s3AccessKeyId", ACCESS_KEY, stack=stack)
        self.pulumi("config", "set", "--secret", "s3SecretAccessKey", SECRET_KEY, stack=stack)


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory, s3_endpoint):
    return Project(tmp_path_factory.mktemp("engine"), s3_endpoint)


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def expiry_days(s3, bucket: str) -> int:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return next(rule["Expiration"]["Days"] for rule in rules if "Expiration" in rule)


@pytest.fixture(scope="module")
def deployed(project, s3):
    project.init("e2e", bucket="e2e-airflow-logs")
    up = project.pulumi("up", "--yes", "--skip-preview", stack="e2e")
    return up


def test_up_renders_every_object_and_creates_the_bucket(project, deployed, s3):
    rendered = project.dir / "rendered" / "e2e"
    manifests = "\n".join(p.read_text() for p in rendered.rglob("*.yaml"))
    for kind in ("kind: Deployment", "kind: Cluster", "kind: Pooler", "kind: Job", "kind: CronJob",
                 "kind: ObjectStore", "kind: ResourceQuota"):
        assert kind in manifests, kind
    assert "e2e-airflow-logs" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert expiry_days(s3, "e2e-airflow-logs") == 7
    outputs = json.loads(project.pulumi("stack", "output", "--json", stack="e2e").stdout)
    assert outputs["logs_url"] == "s3://e2e-airflow-logs/logs"
    assert outputs["admin_password"] == "[secret]"


def test_a_second_run_changes_nothing(project, deployed):
    project.pulumi("preview", "--expect-no-changes", stack="e2e")


def test_a_retention_change_is_exactly_one_update_applied_to_the_bucket(project, deployed, s3):
    project.pulumi("config", "set", "--path", "s3.retentionDays", "14", stack="e2e")
    preview = project.pulumi("preview", "--diff", stack="e2e").stdout
    assert re.search(r"~ 1 to update", preview), preview
    assert re.search(r"retention_days\s*:\s*7\s*=>\s*14", preview), preview
    assert "to create" not in preview and "to delete" not in preview and "to replace" not in preview
    project.pulumi("up", "--yes", "--skip-preview", stack="e2e")
    assert expiry_days(s3, "e2e-airflow-logs") == 14
    project.pulumi("preview", "--expect-no-changes", stack="e2e")


def test_state_holds_no_secret_in_plain_text(project, deployed):
    plain = project.pulumi("stack", "export", stack="e2e").stdout
    revealed = json.loads(project.pulumi("stack", "export", "--show-secrets", stack="e2e").stdout)
    secrets = [SECRET_KEY]
    for resource in revealed["deployment"]["resources"]:
        outputs = resource.get("outputs", {})
        if resource["type"] == "random:index/randomPassword:RandomPassword":
            secrets.append(outputs["result"])
        if resource["type"] == "random:index/randomBytes:RandomBytes":
            secrets.append(outputs["base64"])
    assert len(secrets) >= 5  # S3 key, DB, API, JWT, admin passwords, Fernet bytes
    for secret in secrets:
        assert secret not in plain


def test_destroy_refuses_a_bucket_that_holds_logs_until_forced(project, deployed, s3):
    s3.put_object(Bucket="e2e-airflow-logs", Key="logs/dag_id=x/run_id=y/task_id=z/attempt=1.log", Body=b"log")
    refused = project.pulumi("destroy", "--yes", stack="e2e", check=False)
    assert refused.returncode != 0
    assert "forceDestroy" in refused.stdout + refused.stderr
    assert s3.head_object(Bucket="e2e-airflow-logs", Key="logs/dag_id=x/run_id=y/task_id=z/attempt=1.log")

    project.pulumi("config", "set", "--path", "s3.forceDestroy", "true", stack="e2e")
    project.pulumi("up", "--yes", "--skip-preview", stack="e2e")
    project.pulumi("destroy", "--yes", stack="e2e")
    assert "e2e-airflow-logs" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_protected_prod_like_stack_refuses_destroy(project, s3):
    project.init("e2e-prod", bucket="e2e-prod-airflow-logs", protect="true")
    project.pulumi("up", "--yes", "--skip-preview", stack="e2e-prod")
    refused = project.pulumi("destroy", "--yes", stack="e2e-prod", check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    assert "e2e-prod-airflow-logs" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
