"""Every key of the stack's settings: its type, default and meaning, the rules that concern one key alone, and
the facts derived from the keys (namespace, image, bucket name, whether the stack is disposable).

Every top-level field is one key of the `airflow-platform` config namespace, spelt in camelCase (`postgres`,
`s3AccessKeyId`, ...). Structured keys take YAML objects in `Pulumi.<stack>.yaml`. Secret keys must be stored
with `pulumi config set --secret`; the model keeps them as `SecretStr`, so no error message, repr or log line can
print them.

`Settings` (model.py) adds the rules across keys, which call the stack rules, the quota's sizing and the restore
source; those read these fields, so the fields are a model of their own that they import instead of `Settings`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from components import kube
from components.settings.namespace_sections import (
    CostSettings, DbCleanupSettings, LimitRangeSettings, MetricsSettings, NetworkSettings, PlacementSettings,
    QuotaSettings,
)
from components.settings.rules import image_reference_problem, shown
from components.settings.sections import (
    ApiServerSettings, AuthSettings, ComponentSettings, ExecutorSettings, GitSyncSettings, IngressSettings,
    KerberosSettings, PostgresSettings, S3Settings, SettingsModel, TaskPodSettings, resources,
)
from components.settings.value_types import Base64Secret, CssColour, DnsLabel, LabelValue, SecretLine, SecretText, text
from policy.rules import is_disposable_stack

PROJECT = kube.PROJECT


def _secret(description: str) -> Any:
    return Field(default=None, description=description, json_schema_extra={"secret": True})


class SettingsFields(SettingsModel):
    """The keys and what follows from them; `Settings` (model.py) is this with the rules across keys."""

    instance: DnsLabel = Field(description="instance name; defaults to the stack name")
    namespace: DnsLabel | None = Field(None, description="defaults to `airflow-<instance>`")
    create_namespace: bool = Field(True, description="create the namespace (false: it already exists)")
    team: LabelValue | None = Field(None, description="owning team, put on every pod as a cost-attribution label")
    # A directory on the machine that runs `pulumi up`, chosen by its user: a relative path may well go up.
    kubernetes_render_dir: text(4096, free=True) | None = Field(
        None, description="render every object as YAML into this directory instead of applying it to a cluster"
    )
    kubernetes_context: text(1024, free=True) | None = Field(
        None, description="kubeconfig context to deploy to (default: current)"
    )
    protect: bool | None = Field(
        None,
        description="protect and retain the database and the log bucket; unset: on every stack but dev, local, "
        "local-* and branch environments, and only those may turn it off",
    )

    airflow_image: str = Field("apache/airflow", description="image repository")
    airflow_version: str = Field("3.3.2", description="Airflow version (image tag prefix)")
    airflow_python_version: str = Field("3.12", description="Python of the image tag")
    image_pull_policy: Literal["IfNotPresent", "Always"] = "IfNotPresent"
    instance_title: text(200, free=True) | None = Field(None, description="shown in the UI; defaults to the instance name")
    navbar_color: CssColour = Field("#fff", description="navbar colour of the FAB login pages, e.g. red for prod")

    # The api-server used 0.02-0.03 cores idle and during a task on the test node (bench/node.md); its limit takes
    # the bursts of the UI.
    api_server: ApiServerSettings = Field(
        default_factory=lambda: ApiServerSettings(resources=resources("100m", "1Gi", "1", "2Gi"))
    )
    scheduler: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(resources=resources("500m", "1Gi", "2", "2Gi"))
    )
    # Requests from what the test node measured (bench/node.md): the dag-processor used 192-314 MiB with its
    # git-sync sidecar, and the triggerer about 0.2 cores while idle; the limits leave room for bigger DAG folders.
    dag_processor: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(resources=resources("250m", "512Mi", "1", "2Gi"))
    )
    triggerer: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(resources=resources("200m", "384Mi", "1", "1Gi"))
    )
    task_pod: TaskPodSettings = Field(default_factory=TaskPodSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    postgres_external_uri: SecretLine | None = _secret("database URI when postgres.mode is external")

    s3: S3Settings = Field(
        default_factory=S3Settings,
        description="the log bucket (and the database's backups): `pulumi up` provisions it through endpointUrl; pods "
        "are told podEndpointUrl (default endpointUrl), never a loopback address on a deployed stack",
    )
    s3_access_key_id: SecretLine | None = _secret(
        "S3 key that provisions the bucket, used by `pulumi up` only (unset: the ambient AWS credential chain)"
    )
    s3_secret_access_key: SecretLine | None = _secret("secret of s3AccessKeyId")
    s3_log_access_key_id: SecretLine | None = _secret(
        "S3 key that reads and writes the log prefix only; Airflow and task pods hold it (unset: ambient chain)"
    )
    s3_log_secret_access_key: SecretLine | None = _secret("secret of s3LogAccessKeyId")
    s3_backup_access_key_id: SecretLine | None = _secret(
        "S3 key that reads and writes the backup prefix only; PostgreSQL holds it (unset: ambient chain)"
    )
    s3_backup_secret_access_key: SecretLine | None = _secret("secret of s3BackupAccessKeyId")

    kerberos: KerberosSettings = Field(default_factory=KerberosSettings)
    kerberos_keytab: Base64Secret | None = _secret("the instance's keytab, base64")
    kerberos_api_keytab: Base64Secret | None = _secret(
        "the api-server's HTTP/<host> service keytab, base64 (kerberos.apiAuth)"
    )

    git_sync: GitSyncSettings = Field(default_factory=GitSyncSettings)
    git_sync_ssh_key: SecretText | None = _secret("private SSH key for the DAG repository")
    git_sync_token: SecretLine | None = _secret("HTTPS token for the DAG repository")

    ingress: IngressSettings = Field(default_factory=IngressSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    auth_oidc_client_secret: SecretLine | None = _secret("OIDC client secret")
    auth_ldap_bind_password: SecretLine | None = _secret("LDAP bind password")

    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    limit_range: LimitRangeSettings = Field(default_factory=LimitRangeSettings)
    db_cleanup: DbCleanupSettings = Field(default_factory=DbCleanupSettings)
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="StatsD to a statsd_exporter; monitors and alerts (docs/metrics-and-alerts.md)"
    )
    cost: CostSettings = Field(default_factory=CostSettings)
    airflow_connections: SecretText | None = _secret(
        "JSON object of extra Airflow connections (conn_id → connection), served by the secrets backend"
    )

    # The stack this config belongs to: protection and login rules depend on it, not on the instance name.
    _stack: str = PrivateAttr("")

    # --- derived facts -------------------------------------------------------------------------------------

    @property
    def stack(self) -> str:
        return self._stack or self.instance

    @property
    def disposable(self) -> bool:
        return is_disposable_stack(self.stack)

    @property
    def protected(self) -> bool:
        return self.protect if self.protect is not None else not self.disposable

    @property
    def kubernetes_namespace(self) -> str:
        return self.namespace or f"airflow-{self.instance}"

    @property
    def image(self) -> str:
        return f"{self.airflow_image}:{self.airflow_version}-python{self.airflow_python_version}"

    @property
    def bucket_name(self) -> str:
        return self.s3.bucket or f"{self.kubernetes_namespace}-airflow-logs"

    def name(self, role: str) -> str:
        return kube.resource_name(self.instance, role)

    # --- rules of one key -----------------------------------------------------------------------------------

    @field_validator("airflow_version")
    @classmethod
    def _airflow_3(cls, value: str) -> str:
        # It starts the image tag, which holds at most 128 characters.
        if len(value) > 64 or not re.fullmatch(r"3\.[0-9]+\.[0-9]+([a-z0-9.]*)", value):
            raise ValueError(f"'{shown(value)}' is not an Airflow 3 version like '3.3.2'")
        return value

    @field_validator("airflow_python_version")
    @classmethod
    def _python_3(cls, value: str) -> str:
        # It ends the image tag: anything but a version would make an image reference no runtime can pull.
        if not re.fullmatch(r"3\.[0-9]{1,3}", value):
            raise ValueError(f"'{shown(value)}' is not a Python version like '3.12'")
        return value

    @field_validator("airflow_image")
    @classmethod
    def _untagged(cls, value: str) -> str:
        if ":" in value.rsplit("/", 1)[-1] or "@" in value:
            raise ValueError(f"'{shown(value)}' must be a repository without a tag; the tag comes from airflowVersion")
        if problem := image_reference_problem(value, repository_only=True):
            raise ValueError(problem)
        return value


def config_keys() -> dict[str, Any]:
    """Config key → model field, for every key the stack may set."""
    return {field.alias: field for field in SettingsFields.model_fields.values()}


def secret_keys() -> set[str]:
    return {key for key, field in config_keys().items() if (field.json_schema_extra or {}).get("secret")}
