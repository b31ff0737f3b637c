"""The committed stack files, read as the engine would hand them to the program."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from testbed.harness import PROJECT, ROOT

KEYTAB_B64 = base64.b64encode(b"\x05\x02 a keytab for tests").decode()

# What `pulumi config set --secret` would hold for a stack; the values are distinctive so a test can
# search every rendered object for them.
TEST_SECRETS = {
    "s3AccessKeyId": "AKIA-TEST-ACCESS-KEY",
    "s3SecretAccessKey": "s3-secret-key-must-not-leak",
    # One credential per job: the log key (task pods hold it) and the backup key (PostgreSQL holds it).
    "s3LogAccessKeyId": "AKIA-TEST-LOG-KEY",
    "s3LogSecretAccessKey": "s3-log-secret-must-not-leak",
    "s3BackupAccessKeyId": "AKIA-TEST-BACKUP-KEY",
    "s3BackupSecretAccessKey": "s3-backup-secret-must-not-leak",
    "authOidcClientSecret": "oidc-client-secret-must-not-leak",
}

KERBEROS_CONFIG = {
    "kerberos": {
        "enabled": True,
        "principal": "analytics/airflow-dev.example.org@EXAMPLE.ORG",
        "realm": "EXAMPLE.ORG",
        "kdcs": ["kdc1.example.org", "kdc2.example.org"],
        "adminServer": "kdc1.example.org",
        "ccacheStorageClass": "cephfs",
    }
}


def stack_file_config(stack: str) -> dict:
    """The plain (non-secret) config of `Pulumi.<stack>.yaml`, keys without the project prefix."""
    document = yaml.safe_load(Path(ROOT, f"Pulumi.{stack}.yaml").read_text()) or {}
    config = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and not (isinstance(value, dict) and "secure" in value):
            config[name] = value
    return config
