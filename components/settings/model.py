"""The stack's settings: one typed, validated model. `Settings` is every key (fields.py) with the rules across
keys and sections: the stack's security rules (stack_rules.py), the quota's room (capacity.py), the source of a
restore (restore_source.py), and what one key asks of another.

All of them are gathered into one list of (key, problem) pairs, raised as one error the reader turns into the
`ConfigError` that names every bad key (reader.py).
"""

from __future__ import annotations

import re

from pydantic import PostgresDsn, TypeAdapter, ValidationError, ValidationInfo, model_validator

from components import kube
from components.log_bucket_props import bucket_name_errors
from components.settings.fields import SettingsFields
from components.settings.restore_source import restore_problems
from components.settings.rules import connections_object, cpu_cores, memory_bytes
from components.settings.stack_rules import security_problems


# The settings as every component reads them; a model docstring would become the JSON schema's description.
class Settings(SettingsFields):
    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Settings:
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
            raise CrossFieldProblems(problems)
        return self


def _postgres_uri_problem(uri: str) -> str | None:
    """Why pydantic's PostgreSQL DSN type refuses `uri`, in words that never quote it (it holds a password)."""
    try:
        TypeAdapter(PostgresDsn).validate_python(uri)
    except ValidationError as error:
        return error.errors(include_input=False)[0]["msg"].removeprefix("Input should be a valid URL, ")
    return None


class CrossFieldProblems(ValueError):
    """The problems of the rules across keys, as (key, problem) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{key}: {text}" for key, text in problems))
        self.problems = problems
