"""Airflow's settings: the `AIRFLOW__SECTION__KEY` environment the instance's ConfigMap holds, the paths in
the image where the configuration files are mounted, and the values derived from the stack's Settings.

Pure functions of the Settings; AirflowControlPlane makes the Kubernetes objects that carry them.
"""

from __future__ import annotations

import base64
import hashlib
import json

from components import airflow_auth, kube, metrics_catalog
from components.kerberos_keytab import KerberosMounts
from components.settings import Settings
from components.metrics import exporter_host

POD_TEMPLATE_DIR = f"{kube.AIRFLOW_HOME}/pod-templates"
POD_TEMPLATE_FILE = f"{POD_TEMPLATE_DIR}/pod_template.yaml"
CONNECTIONS_DIR = f"{kube.AIRFLOW_HOME}/secrets"
WEBSERVER_DIR = f"{kube.AIRFLOW_HOME}/webserver"
# SimpleAuthManager opens its passwords file read-write ("a+" at start-up, "r+" at every login), and a Secret
# volume is read-only: the api-server works on a copy in a writable in-memory volume.
SIMPLE_AUTH_DIR = f"{kube.AIRFLOW_HOME}/simple-auth"
SIMPLE_AUTH_PASSWORDS = "simple_auth_manager_passwords.json"
S3_CA_DIR = f"{kube.AIRFLOW_HOME}/s3-ca"
DAGS_DIR = f"{kube.AIRFLOW_HOME}/dags"
# Airflow's default [core] plugins_folder; only the api-server mounts anything there.
PLUGINS_DIR = f"{kube.AIRFLOW_HOME}/plugins"
SECRETS_BACKEND = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
DATABASE_URL_KEY = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def fernet_key_from(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).decode()


def api_service_host(s: Settings) -> str:
    return f"{s.name('api-server')}.{s.kubernetes_namespace}.svc"


def base_url(s: Settings) -> str:
    ingress = s.ingress
    if ingress.enabled:
        scheme = "https" if ingress.tls_secret_name else "http"
        return f"{scheme}://{ingress.host}{ingress.path.rstrip('/')}"
    return f"http://{api_service_host(s)}:{kube.API_SERVER_PORT}"


def dags_folder(s: Settings) -> str:
    git = s.git_sync
    if not git.enabled:
        return DAGS_DIR
    return "/".join(filter(None, [DAGS_DIR, "repo", git.sub_path.strip("/")]))


def airflow_environment(s: Settings, log_connection_id: str, kerberos: KerberosMounts | None) -> dict[str, str]:
    """Every non-secret Airflow setting, as the `AIRFLOW__SECTION__KEY` variables the ConfigMap holds."""
    env = {
        "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": dags_folder(s),
        "AIRFLOW__CORE__AUTH_MANAGER": (
            airflow_auth.FAB_AUTH_MANAGER if airflow_auth.uses_fab(s.auth) else airflow_auth.SIMPLE_AUTH_MANAGER
        ),
        # Task pods reach the Execution API through the Service, not through the public URL.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
            f"http://{api_service_host(s)}:{kube.API_SERVER_PORT}/execution/"
        ),
        "AIRFLOW__API__BASE_URL": base_url(s),
        "AIRFLOW__API__INSTANCE_NAME": s.instance_title or s.instance,
        "AIRFLOW__FAB__NAVBAR_COLOR": s.navbar_color,
        "AIRFLOW__API__WORKERS": str(s.api_server.workers),
        # PgBouncer in transaction mode does the pooling; a second pool in every process only holds
        # server connections hostage.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED": "False",
        "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": s.kubernetes_namespace,
        "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": POD_TEMPLATE_FILE,
        "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY": s.airflow_image,
        "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG": s.image.rsplit(":", 1)[1],
        "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE": str(s.executor.pod_creation_batch_size),
        "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "True",
        # A pod refused because the namespace quota is full waits for room (retried every scheduler loop)
        # instead of failing its task; taskQueuedTimeoutSeconds still bounds the wait.
        "AIRFLOW__KUBERNETES_EXECUTOR__TASK_PUBLISH_MAX_RETRIES": "-1",
        "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS_ON_FAILURE": str(s.executor.delete_worker_pods_on_failure),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": f"{s.executor.task_queued_timeout_seconds}.0",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(kube.SCHEDULER_HEALTH_PORT),
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": log_connection_id,
        "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
        "AIRFLOW__SECRETS__BACKEND": SECRETS_BACKEND,
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
            {
                "connections_file_path": f"{CONNECTIONS_DIR}/connections.json",
                "variables_file_path": f"{CONNECTIONS_DIR}/variables.json",
            }
        ),
        # The image's entrypoint would otherwise poll the database before every command, task pods
        # (which have no database) included; the migration init container does the waiting.
        "CONNECTION_CHECK_MAX_COUNT": "0",
    }
    if airflow_auth.uses_fab(s.auth):
        env["AIRFLOW__FAB__CONFIG_FILE"] = f"{WEBSERVER_DIR}/webserver_config.py"
    else:
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{airflow_auth.ADMIN_USER}:admin"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = f"{SIMPLE_AUTH_DIR}/{SIMPLE_AUTH_PASSWORDS}"
    if s.metrics.enabled:
        env.update(metrics_catalog.airflow_metrics_env(exporter_host(s.instance, s.kubernetes_namespace)))
    if kerberos is not None:
        env["AIRFLOW__CORE__SECURITY"] = "kerberos"
        env["AIRFLOW__KERBEROS__PRINCIPAL"] = kerberos.principal
        env["AIRFLOW__KERBEROS__CCACHE"] = kerberos.ccache_path
    return env

