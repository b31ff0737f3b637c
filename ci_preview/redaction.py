"""What never reaches a comment or the job log: the stack's secret config values, the values of secret-looking
environment variables, PEM private keys, passwords in URLs and long base64/hex blobs."""

from __future__ import annotations

import json
import re
from typing import Iterable

# Environment variables whose values never appear in a comment, by name and by what a name looks like.
ENV_DENYLIST = {
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_BACKEND_URL",
    "GITLAB_TOKEN",
    "GITHUB_TOKEN",
    "CI_JOB_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID",
    "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY",
    "AIRFLOW_PLATFORM_GIT_SYNC_TOKEN",
    "AIRFLOW_PLATFORM_GIT_SYNC_SSH_KEY",
}
_SECRET_ENV_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSPHRASE|PRIVATE|CREDENTIAL|ACCESS_KEY|_KEY$")
MIN_SECRET_LENGTH = 6  # shorter values ("true", "1") would blank out ordinary words; secrets are longer

REDACTED = "[redacted]"
_PEM_PRIVATE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)", re.DOTALL
)
_URL_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.IGNORECASE)
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[A-Za-z])[A-Za-z0-9+/]{40,}={0,2}")
_HEX_BLOB = re.compile(r"\b[0-9a-fA-F]{32,}\b")


def env_secret_values(env: dict[str, str]) -> list[str]:
    return [value for name, value in env.items() if name in ENV_DENYLIST or _SECRET_ENV_NAME.search(name.upper())]


def secret_config_values(config_json: str) -> list[str]:
    """The secret values in `pulumi config --show-secrets --json` output."""
    values = []
    for entry in json.loads(config_json or "{}").values():
        if isinstance(entry, dict) and entry.get("secret"):
            value = entry.get("value")
            values.append(value if isinstance(value, str) else json.dumps(value))
    return values


def _variants(value: str) -> set[str]:
    """A secret as it may be printed: as is, JSON-escaped, and each long line of a multi-line value."""
    variants = {value, json.dumps(value)[1:-1]}
    variants |= {line.strip() for line in value.splitlines()}
    return {v for v in variants if len(v) >= MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any of `secrets` and without anything that looks like a credential."""
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants |= _variants(secret)
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    text = _PEM_PRIVATE.sub("[redacted private key]", text)
    text = _URL_PASSWORD.sub(lambda match: f"{match.group(1)}{REDACTED}@", text)
    text = _BASE64_BLOB.sub("[redacted blob]", text)
    text = _HEX_BLOB.sub("[redacted blob]", text)
    return text
