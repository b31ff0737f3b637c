"""The Airflow configuration the control plane renders: executor, logging, secrets backend and the connections file."""

import json

from testbed.runs import config_env, dev
from testbed.stacks import TEST_SECRETS

LOG_KEYS = {k: TEST_SECRETS[k] for k in ("s3LogAccessKeyId", "s3LogSecretAccessKey")}


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
