"""The stack's settings: one typed, validated model, and the only reader of `pulumi.Config`.

Every top-level field of `Settings` is one key of the `airflow-platform` config namespace, spelt in
camelCase (`postgres`, `s3AccessKeyId`, ...). Structured keys take YAML objects in `Pulumi.<stack>.yaml`.
Secret keys must be stored with `pulumi config set --secret`; the model keeps them as `SecretStr`, so no
error message, repr or log line can print them, and `secret_output` turns them into `Output` secrets.

All problems are gathered into ONE `ConfigError` that names every bad key, its value and what is allowed,
raised before any resource is registered.

scripts/gen-docs regenerates the `config:` block of `Pulumi.yaml` and the table of keys in docs/settings.md
from this model, so the documentation cannot drift from the code; `python -m components.config check
[<stack>...]` checks stack files with this model, without the engine (components/stack_config.py).

The model's value types are in components/config_rules.py and its sections in components/config_sections.py;
the rest of the project imports them from here.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Literal

import pulumi
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from components import kube
from components.config_rules import (
    Base64Secret, CssColour, DnsLabel, LabelValue, SecretLine, SecretText, cpu_cores, image_reference_problem,
    memory_bytes, shown, text,
)
from components.config_sections import (
    ApiServerSettings, AuthSettings, ComponentSettings, CostSettings, DbCleanupSettings, ExecutorSettings,
    GitSyncSettings, IngressSettings, KerberosSettings, LimitRangeSettings, MetricsSettings, NetworkSettings,
    PlacementSettings, PostgresSettings, QuotaSettings, S3Settings, SettingsModel, TaskPodSettings, resources,
)

PROJECT = kube.PROJECT


def _secret(description: str) -> Any:
    return Field(default=None, description=description, json_schema_extra={"secret": True})


# ---------------------------------------------------------------------------------------------------------
# The stack


class Settings(SettingsModel):
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
        from policy.rules import is_disposable_stack

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

    # --- cross-field rules ---------------------------------------------------------------------------------

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

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Settings:
        from components.log_bucket_props import bucket_name_errors
        from components.stack_rules import security_problems

        self._stack = (info.context or {}).get("stack") or ""
        problems: list[tuple[str, str]] = list(security_problems(self))
        for problem in kube.name_length_problems(self.instance, self.airflow_version):
            problems.append(("instance", problem))
        if self.s3.bucket is None:
            for problem in bucket_name_errors(self.bucket_name):
                problems.append(
                    ("s3.bucket", f"derived bucket name '{self.bucket_name}' (`<namespace>-airflow-logs`, namespace "
                     f"'{self.kubernetes_namespace}'): {problem}; set s3.bucket, or a shorter namespace or instance")
                )
        if self.postgres.mode == "external" and self.postgres_external_uri is None:
            problems.append(("postgresExternalUri", "postgres.mode is external but no URI is set (use --secret)"))
        if self.postgres.mode == "external" and self.postgres_external_uri is not None:
            uri = self.postgres_external_uri.get_secret_value()
            if not re.match(r"^postgres(ql)?(\+[a-z0-9]+)?://", uri):
                problems.append(("postgresExternalUri", "[secret] must start with postgresql://"))
            elif reason := _postgres_uri_problem(uri):
                problems.append(("postgresExternalUri", f"[secret] is not a postgresql:// URI ({reason})"))
        if self.postgres.restore is not None:
            from components.restore_source import restore_problems

            problems += [("postgres.restore", problem) for problem in restore_problems(self)]
        if self.kerberos.enabled and self.kerberos_keytab is None:
            problems.append(("kerberosKeytab", "Kerberos is enabled but no keytab is set (use --secret)"))
        if self.kerberos.api_auth and self.kerberos_api_keytab is None:
            problems.append(("kerberosApiKeytab", "kerberos.apiAuth is on but no HTTP service keytab is set (use --secret)"))
        if self.kerberos.api_auth and self.auth.mode == "simple":
            problems.append(
                ("kerberos.apiAuth", "needs auth.mode oidc or ldap: Kerberos principals map onto FAB users, and "
                 "SimpleAuthManager has no user store")
            )
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            problems.append(("s3SecretAccessKey", "set both s3AccessKeyId and s3SecretAccessKey, or neither"))
        if self.git_sync_ssh_key is not None and self.git_sync_token is not None:
            problems.append(("gitSyncToken", "set gitSyncSshKey or gitSyncToken, not both"))
        if self.auth.mode == "oidc" and self.auth_oidc_client_secret is None:
            problems.append(("authOidcClientSecret", "auth mode oidc needs the client secret (use --secret)"))
        if self.auth.mode == "ldap" and self.auth.ldap_bind_dn and self.auth_ldap_bind_password is None:
            problems.append(("authLdapBindPassword", "auth.ldapBindDn is set but no bind password (use --secret)"))
        if self.limit_range.enabled:
            ceiling = self.limit_range.max
            # Every container of the namespace meets the LimitRange, the operator's and sidecars' too.
            sized = [
                ("taskPod.resources", self.task_pod.resources),
                ("apiServer.resources", self.api_server.resources),
                ("scheduler.resources", self.scheduler.resources),
                ("dagProcessor.resources", self.dag_processor.resources),
                ("triggerer.resources", self.triggerer.resources),
            ]
            if self.postgres.mode == "cnpg":
                sized += [("postgres.resources", self.postgres.resources),
                          ("postgres.poolerResources", self.postgres.pooler_resources)]
            if self.kerberos.enabled:
                sized.append(("kerberos.renewerResources", self.kerberos.renewer_resources))
            if self.metrics.enabled:
                sized.append(("metrics.exporterResources", self.metrics.exporter_resources))
            for key, limits in ((key, resources.limits) for key, resources in sized):
                if cpu_cores(limits.cpu) > cpu_cores(ceiling.cpu) or memory_bytes(limits.memory) > memory_bytes(ceiling.memory):
                    problems.append(
                        (key, f"limits {limits.cpu} CPU / {limits.memory} exceed limitRange.max "
                         f"{ceiling.cpu} / {ceiling.memory}: the namespace would refuse these pods")
                    )
        backups = self.postgres.mode == "cnpg" and self.postgres.backups.enabled
        log_prefix, backup_prefix = self.s3.log_prefix, self.postgres.backups.prefix
        if backups and (f"{log_prefix}/".startswith(f"{backup_prefix}/") or f"{backup_prefix}/".startswith(f"{log_prefix}/")):
            problems.append(
                ("postgres.backups.prefix", f"'{backup_prefix}' overlaps s3.logPrefix '{log_prefix}': the log lifecycle "
                 "rule would expire backups and the log key could read them; give each its own prefix")
            )
        if self.airflow_connections is not None and connections_object(self.airflow_connections) is None:
            problems.append(("airflowConnections", "[secret] must be a JSON object of conn_id → connection"))
        if problems:
            raise _CrossFieldProblems(problems)
        return self


def _postgres_uri_problem(uri: str) -> str | None:
    """Why pydantic's PostgreSQL DSN type refuses `uri`, in words that never quote it (it holds a password)."""
    from pydantic import PostgresDsn, TypeAdapter

    try:
        TypeAdapter(PostgresDsn).validate_python(uri)
    except ValidationError as error:
        return error.errors(include_input=False)[0]["msg"].removeprefix("Input should be a valid URL, ")
    return None


def connections_object(secret: SecretStr) -> dict | None:
    """airflowConnections as the JSON object it must be (None: it is not one)."""
    try:
        connections = json.loads(secret.get_secret_value())
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None
    return connections if isinstance(connections, dict) else None


class _CrossFieldProblems(ValueError):
    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{key}: {text}" for key, text in problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------------------------
# Reading the stack's config


class ConfigError(pulumi.RunError):
    """Every problem with the stack's configuration, in one message a user can act on."""

    def __init__(self, problems: list[str], stack: str | None = None):
        from components.stack_config import fix_commands  # it reads the model defined below

        self.problems = problems = [_one_line(problem) for problem in problems]
        lines = "\n".join(f"  - {problem}" for problem in problems)
        fixes = "\n".join(f"  {command}" for command in fix_commands(problems))
        super().__init__(
            f"invalid configuration for stack '{stack or pulumi.get_stack()}' ({len(problems)} problem(s)):\n{lines}\n"
            + (f"To fix (a value shown is the key's default):\n{fixes}\n" if fixes else "")
        )


def config_keys() -> dict[str, Any]:
    """Config key → model field, for every key the stack may set."""
    return {field.alias: field for field in Settings.model_fields.values()}


def secret_keys() -> set[str]:
    return {key for key, field in config_keys().items() if (field.json_schema_extra or {}).get("secret")}


def _describe(value: Any, secret: bool) -> str:
    if secret:
        return "[secret]"
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


# What a problem line must not carry from a value: line breaks (a forged problem line), terminal escapes and
# bidirectional overrides (text that reads other than it is).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _one_line(text: str) -> str:
    return _UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (itself, optional, or as list items), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if getattr(annotation, "__origin__", None) is list:
        return _model_in(annotation.__args__[0])
    for option in getattr(annotation, "__args__", ()) if getattr(annotation, "__origin__", None) is not dict else ():
        if (model := _model_in(option)) is not None:
            return model
    return None


def _key_path(location: tuple, secret_fields: set[str]) -> tuple[str, bool]:
    """The key path as the user writes it in the stack file: field names in camelCase, the keys of a map (node
    selector labels, PostgreSQL parameters) as they are."""
    parts = [part for part in location if not (isinstance(part, str) and part.startswith("function-"))]
    top = str(parts[0]) if parts else ""
    is_secret = top in secret_fields or top in secret_keys()
    names: list[str] = []
    model: type[BaseModel] | None = Settings
    for part in parts:
        if part == "[key]":
            continue
        if model is not None and isinstance(part, str) and part in model.model_fields:
            field = model.model_fields[part]
            names.append(field.alias or part)
            model = _model_in(field.annotation)
        else:
            names.append(str(part))
            if not isinstance(part, int):
                model = None
    return ".".join(names), is_secret


def parse_settings(raw: dict[str, Any], stack: str | None = None) -> Settings:
    """Validate raw config values (key → value as decoded from the stack file) of `stack` (default: the
    instance name); raise one ConfigError."""
    secret_fields = {name for name, field in Settings.model_fields.items() if field.alias in secret_keys()}
    try:
        return Settings.model_validate(raw, context={"stack": stack})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, _CrossFieldProblems):
                problems += [f"{PROJECT}:{key}: {text}" for key, text in cause.problems]
                continue
            key, is_secret = _key_path(item["loc"], secret_fields)
            message = item["msg"].removeprefix("Value error, ")
            if "[key]" in item["loc"]:
                message = f"the key {message}"
            if item["type"] == "extra_forbidden":
                parent = key.rsplit(".", 1)[0]
                message = "unknown key" + _suggestion(key.rsplit(".", 1)[-1], _allowed_under(parent))
                problems.append(f"{PROJECT}:{key}: {message}")
                continue
            if item["type"] == "missing":
                problems.append(f"{PROJECT}:{key}: is required")
                continue
            value = _describe(item.get("input"), is_secret)
            problems.append(f"{PROJECT}:{key} = {value}: {message}")
        raise ConfigError(problems) from None


def _allowed_under(path: str) -> list[str]:
    model: type[BaseModel] = Settings
    for part in path.split("."):
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias for field in model.model_fields.values()]


def _suggestion(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} allowed: {', '.join(allowed)}" if allowed else hint


def _decode(key: str, value: str) -> Any:
    """Pulumi hands structured config to the program as JSON text, and scalars as plain strings (which
    pydantic coerces: "true" → True, "3" → 3). Secret values stay text."""
    if key not in secret_keys() and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            return value
    return value


def config_text(value: Any) -> str:
    """A config value as the engine hands it to a program (the inverse of `_decode`): structured values as
    JSON text, booleans as true/false, everything else as a string."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_settings(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the stack's config. The only function in the project that touches pulumi.Config."""
    config = config or pulumi.Config(PROJECT)
    keys = config_keys()
    raw: dict[str, Any] = {"instance": pulumi.get_stack()}
    problems: list[str] = []
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if key in secret_keys() and not pulumi.runtime.is_config_secret(config.full_key(key)):
            from components.stack_config import plaintext_secret_problem

            problems.append(plaintext_secret_problem(key))
        raw[key] = _decode(key, value)
    for full_key in sorted(_all_config_keys()):
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT and key not in keys:
            problems.append(f"{full_key}: unknown key{_suggestion(key, sorted(keys))}")
    try:
        settings = parse_settings(raw, stack=pulumi.get_stack())
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems)
    return settings


def _all_config_keys() -> set[str]:
    return set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())


def secret_output(value: SecretStr | None) -> pulumi.Output[str] | None:
    """The Output secret for a secret setting: exactly what `Config.get_secret` returns for it."""
    return None if value is None else pulumi.Output.secret(value.get_secret_value())


# ---------------------------------------------------------------------------------------------------------
# Generated documentation: Pulumi.yaml's `config:` block and the table of keys in docs/settings.md


_SCALAR_TYPES = {str: "string", int: "integer", bool: "boolean", SecretStr: "string"}


def _scalar_type(annotation: Any) -> str | None:
    """The Pulumi project type of a field, or None for a structured (object) key, which Pulumi.yaml cannot
    declare: its schema allows only string, integer, boolean and array."""
    options = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
    for option in options:
        option = getattr(option, "__origin__", option)
        if option in _SCALAR_TYPES:
            return _SCALAR_TYPES[option]
        if option is Literal or str(option).startswith("typing.Literal"):
            return "string"
    return None


def project_config_declarations() -> dict[str, dict[str, Any]]:
    """The scalar keys that have a default. The engine treats a declared key without a default as required
    and refuses to run a stack that does not set it, so optional keys (and secrets, which never have a
    default) are left out; docs/settings.md's table documents every key, and the model validates them all."""
    declarations: dict[str, dict[str, Any]] = {}
    for key, field in config_keys().items():
        kind = _scalar_type(field.annotation)
        if kind is None or key in secret_keys() or field.is_required() or field.default is None:
            continue
        declarations[key] = {"type": kind, "description": field.description or key, "default": field.default}
    return declarations


def config_reference_markdown() -> str:
    """A table of every key: its type, default and meaning, straight from the model."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, field in config_keys().items():
        kind = _scalar_type(field.annotation) or "object"
        if key in secret_keys():
            kind += " (secret)"
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(by_alias=True, mode="json")
        shown = "" if default is None else f"`{json.dumps(default)}`"
        rows.append(f"| `{key}` | {kind} | {shown} | {(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)


def pulumi_yaml(text: str) -> str:
    """The project file `text` with its `config:` block declaring what `project_config_declarations` says."""
    import yaml

    project = yaml.safe_load(text)
    project["config"] = {f"{PROJECT}:{k}": v for k, v in project_config_declarations().items()}
    return yaml.safe_dump(project, sort_keys=False, width=110)


def main(argv: list[str] | None = None) -> int:
    """`python -m components.config check`: read stack files."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m components.config",
        description="Check stack files with the settings model. scripts/gen-docs regenerates what is generated "
        "from the model (Pulumi.yaml's config declarations and the tables of docs/).",
    )
    commands = parser.add_subparsers(dest="command", metavar="{check}", required=True)
    check_cmd = commands.add_parser(
        "check", help="report what `pulumi up` would refuse in stack files, writing nothing (exit 1 on a problem)",
        description="Report what `pulumi up` would refuse in each stack file, writing nothing (exit 1 on a problem).",
    )
    check_cmd.add_argument("stacks", nargs="*", metavar="STACK",
                           help="a stack name or a Pulumi.<stack>.yaml path (default: every Pulumi.*.yaml)")
    arguments = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    from components.stack_config import check

    return check(arguments.stacks, root)


if __name__ == "__main__":
    import sys

    sys.exit(main())
