"""The security rules a stack's settings must pass, checked with every other config rule before anything
is created: who holds which S3 credential, how DAG code is fetched, which stacks may be thrown away, who
may sign in with a development login, whether pods are told an S3 endpoint they can reach, and whether the
quota can hold the instance at all.

Each rule returns (config key, problem) pairs; `Settings` gathers them into its one ConfigError.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic.alias_generators import to_camel

from components.settings import capacity
from components.settings.fields import SettingsFields
from components.settings.rules import connections_object

# scp-like `user@host:path` or an ssh:// URL: fetched over SSH.
_SSH_URL = re.compile(r"^(ssh://|[A-Za-z0-9._-]+@[^:/\s]+:)")


def is_ssh_url(repo: str) -> bool:
    return bool(_SSH_URL.match(repo))


def _key(value) -> str | None:
    return None if value is None else value.get_secret_value()


def _pair(s: SettingsFields, key_id: str, secret: str) -> list[tuple[str, str]]:
    if (getattr(s, key_id) is None) != (getattr(s, secret) is None):
        return [(to_camel(secret), f"set both {to_camel(key_id)} and {to_camel(secret)}, or neither")]
    return []


def credential_problems(s: SettingsFields) -> list[tuple[str, str]]:
    """One S3 credential per job: the provisioning key never reaches a pod, and nothing a task pod holds
    (the log key, the stack's own connections) reaches the database's backups."""
    problems = _pair(s, "s3_log_access_key_id", "s3_log_secret_access_key")
    problems += _pair(s, "s3_backup_access_key_id", "s3_backup_secret_access_key")
    provisioning = _key(s.s3_access_key_id)
    log = _key(s.s3_log_access_key_id)
    backup = _key(s.s3_backup_access_key_id)
    if provisioning is not None and log == provisioning:
        problems.append(("s3LogAccessKeyId", "is the provisioning key (s3AccessKeyId), which must never reach a pod: "
                         "create a key that can only read and write the log prefix"))
    if provisioning is not None and backup == provisioning:
        problems.append(("s3BackupAccessKeyId", "is the provisioning key (s3AccessKeyId), which must never reach a pod: "
                         "create a key that can only read and write the backup prefix"))
    backups = s.postgres.mode == "cnpg" and s.postgres.backups.enabled
    if backups and log is not None and log == backup:
        problems.append(("s3LogAccessKeyId", "is also the backup key: task pods hold the log key, so any DAG could "
                         "read or delete the database's backups; give each job its own key"))
    if s.airflow_connections is not None:
        # One that is not a JSON object is reported by Settings itself.
        connections = connections_object(s.airflow_connections) or {}
        held = {str(c.get("login")) for c in connections.values() if isinstance(c, dict) and c.get("login")}
        for name, key in (("provisioning key (s3AccessKeyId)", provisioning), ("backup key (s3BackupAccessKeyId)", backup)):
            if key is not None and key in held:
                problems.append(("airflowConnections", f"[secret] a connection logs in with the {name}; task pods "
                                 "read every connection, so they would hold it"))
    if s.s3.log_principal and s.s3.log_principal == s.s3.backup_principal:
        problems.append(("s3.backupPrincipal", "is the log principal: the bucket policy cannot keep them apart"))
    return problems


def git_problems(s: SettingsFields) -> list[tuple[str, str]]:
    """DAG code runs with the instance's rights: its source must be the host we think it is."""
    git = s.git_sync
    if not git.enabled or not git.repo:
        return []
    problems = []
    if s.git_sync_ssh_key is not None and not git.known_hosts:
        problems.append(("gitSync.knownHosts", "an SSH key is set but no known hosts: without them a man in the "
                         "middle can serve the DAGs (e.g. `ssh-keyscan git.example.org`, checked out of band)"))
    if is_ssh_url(git.repo) and s.git_sync_ssh_key is None:
        problems.append(("gitSyncSshKey", f"gitSync.repo '{git.repo}' is an SSH URL but no SSH key is set "
                         "(use --secret), or use an https:// URL with gitSyncToken"))
    return problems


def lifecycle_problems(s: SettingsFields) -> list[tuple[str, str]]:
    """Only disposable stacks (dev, local, local-*, branch environments: policy.rules.is_disposable_stack) may drop
    their data or use the development login; a team's stack is as precious as prod."""
    problems = []
    if s.disposable:
        return problems
    if s.protect is False:
        problems.append(("protect", f"stack '{s.stack}' is long-lived: its database and bucket must be protected; "
                         "only dev, local, local-* and branch environments may turn protect off"))
    if s.auth.mode == "simple":
        problems.append(("auth.mode", f"'simple' (SimpleAuthManager) is for development only (dev, local, local-* "
                         f"and branch environments); stack '{s.stack}' needs oidc or ldap"))
    return problems


def is_loopback_host(host: str) -> bool:
    """Whether a URL's host is the machine it is used on: 127.0.0.0/8, ::1 (also IPv4-mapped), the unspecified
    address, localhost and *.localhost. In a pod, that is the pod itself."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    return address.is_loopback or address.is_unspecified


def endpoint_problems(s: SettingsFields) -> list[tuple[str, str]]:
    """Pods are told s3.podEndpointUrl (default s3.endpointUrl) for logs and backups. `pulumi up` may well reach
    the store on this machine's loopback, but a pod given a loopback address reaches itself: refused on a stack
    that deploys to a cluster. Rendering (kubernetesRenderDir) only writes it down; scripts/local-up says so."""
    url = s.s3.pod_endpoint
    if url is None or s.kubernetes_render_dir is not None or not is_loopback_host(urlsplit(url).hostname or ""):
        return []
    where = "" if s.s3.pod_endpoint_url is not None else " (unset, so s3.endpointUrl)"
    return [("s3.podEndpointUrl", f"'{url}'{where} is a loopback address, which in a pod is the pod itself: the log "
             "connection and the database's backups would never reach S3. Set s3.podEndpointUrl to an address pods "
             "reach (a Service such as http://minio.minio.svc:9000, the store's host name, an IP on the cluster "
             "network); loopback (127.0.0.0/8, ::1, localhost) is allowed only when rendering (kubernetesRenderDir)")]


def quota_problems(s: SettingsFields) -> list[tuple[str, str]]:
    if not s.quota.enabled:
        return []
    return [("quota", problem) for problem in capacity.quota_problems(s)]


def security_problems(s: SettingsFields) -> list[tuple[str, str]]:
    return credential_problems(s) + git_problems(s) + lifecycle_problems(s) + endpoint_problems(s) + quota_problems(s)
