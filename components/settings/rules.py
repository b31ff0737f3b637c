"""The rules each setting's value must follow, as functions that say what is wrong with a value (None:
nothing): Kubernetes quantities, names and label values, image references, URLs, git values, S3 key prefixes
and names, ARNs, regions and CIDRs. Kerberos values, schedules and identifiers are in service_rules.py; the
pydantic types built from both are in value_types.py.

A value outside the domain of what it becomes (a Kubernetes field, an argument of git-sync, a bucket policy) is
refused when the config is read, with what is allowed: not by the API server or a pod half-way through
`pulumi up`, and never with a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AnyUrl, SecretStr, TypeAdapter, UrlConstraints
from pydantic import ValidationError as _ValidationError

from components.log_bucket_props import bucket_name_errors

# Characters no single-line setting may hold: C0 and C1 controls and DEL, and the Unicode line separators and
# bidirectional overrides, which change how a value reads in a terminal or a review without being seen.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Multi-line text (PEM, known_hosts, annotation values) may also hold tabs and line breaks.
CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def control_character_problem(value: str, lines: bool = False) -> str | None:
    if (CONTROL_IN_TEXT if lines else CONTROL).search(value):
        if lines:
            return "must be printable text: tabs and line breaks are allowed, other control characters are not"
        return "must be one line of printable text (no line breaks or other control characters)"
    return None


def shown(value: str, limit: int = 60) -> str:
    """A value quoted inside a message: control characters escaped, a long one cut."""
    shown = repr(value)[1:-1]
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------
# Kubernetes quantities

_CPU = re.compile(r"([0-9]+(\.[0-9]+)?)(m)?")
_MEMORY = re.compile(r"([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
_MEMORY_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}

# One container: more than any node offers, so a pod asking for more could never be scheduled.
MAX_CONTAINER_CORES = 4096
MAX_CONTAINER_MEMORY = 64 * 2**40
# One volume: the largest disk the common provisioners create (EBS io2, Persistent Disk, Ultra Disk: 64 TiB).
MAX_VOLUME_BYTES = 64 * 2**40
# A namespace's quota: what a Kubernetes quantity holds (int64 milli-cores, int64 bytes); the API server
# silently caps a larger one, so the quota would not be the one the stack says.
MAX_QUOTA_CORES = (2**63 - 1) // 1000
MAX_QUOTA_MEMORY = 2**63 - 1


def cpu_cores(quantity: str) -> float:
    match = _CPU.fullmatch(quantity)
    if not match:
        raise ValueError(
            f"'{shown(quantity)}' is not a CPU quantity; use cores like '1', '0.5' or millicores like '500m'"
        )
    value = float(match.group(1))
    return value / 1000 if match.group(3) else value


def memory_bytes(quantity: str) -> float:
    match = _MEMORY.fullmatch(quantity)
    if not match:
        raise ValueError(f"'{shown(quantity)}' is not a memory quantity; use e.g. '512Mi', '2Gi'")
    return float(match.group(1)) * _MEMORY_FACTORS[match.group(3)]


# ---------------------------------------------------------------------------------------------------------
# Kubernetes names, labels and annotations

# The API server's own rules (k8s.io/apimachinery/pkg/util/validation) for what a setting becomes, checked when
# the config is read: a value the cluster would refuse must not stop `pulumi up` half-way through.
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def dns1123_subdomain_problem(value: str) -> str | None:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            f"'{shown(value)}' is not a DNS-1123 subdomain: use at most 253 lower-case letters, digits, '-' and '.', "
            "each dot-separated part starting and ending with a letter or digit"
        )
    return None


def qualified_name_problem(value: str) -> str | None:
    """A label or annotation key: `[<DNS-1123 subdomain>/]<name>`, the name at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if (slash and dns1123_subdomain_problem(prefix)) or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"'{shown(value)}' is not a Kubernetes label or annotation key: an optional DNS subdomain and '/', then "
            "at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )
    return None


# The Ingress path rules of the API server for pathType Prefix (k8s.io/kubernetes/pkg/apis/networking/validation),
# and the characters ingress-nginx's strict path validation lets through.
_INGRESS_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_INGRESS_PATH_SEQUENCES = ("//", "/./", "/../")


def ingress_path_problem(value: str) -> str | None:
    if (
        len(value) > 512
        or not _INGRESS_PATH.fullmatch(value)
        or any(seq in value for seq in _INGRESS_PATH_SEQUENCES)
        or value.endswith(("/..", "/."))
    ):
        return (
            f"'{shown(value)}' is not an ingress path: an absolute URL path of at most 512 letters, digits and "
            "'-._~/', without '//', '/./' or '/../' segments, e.g. '/' or '/airflow'"
        )
    return None


# The image reference grammar of container runtimes (github.com/distribution/reference): a kubelet refuses
# anything else as InvalidImageName, after the API server has accepted the pod.
_IMAGE_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_IMAGE_REPOSITORY = re.compile(rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}")
_IMAGE_REFERENCE = re.compile(
    rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}(?::[\w][\w.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?",
    re.ASCII,
)


def image_reference_problem(value: str, repository_only: bool = False) -> str | None:
    pattern = _IMAGE_REPOSITORY if repository_only else _IMAGE_REFERENCE
    if len(value) > 255 or not pattern.fullmatch(value):
        what = "an image repository like 'registry.example.org/team/airflow'" if repository_only else (
            "an image reference like 'registry.k8s.io/git-sync/git-sync:v4.4.2'")
        return f"'{shown(value)}' is not {what} (lower-case path, no spaces)"
    return None


# ---------------------------------------------------------------------------------------------------------
# URLs


_URL_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")  # a trailing dot: fully qualified


def _url_checker(schemes: tuple[str, ...], example: str):
    adapter = TypeAdapter(Annotated[AnyUrl, UrlConstraints(allowed_schemes=list(schemes), host_required=True)])
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)

    def problem(value: str) -> str | None:
        # The URL parser drops tabs and line breaks and escapes spaces and the characters RFC 3986 has no place
        # for; a URL a program is given holds none of them, nor shell command substitution.
        if len(value) > 2048 or CONTROL.search(value) or re.search(r"[\s<>\"{}|\\^`]|\$\(", value):
            return (
                f"'{shown(value)}' must be an {wanted} URL of at most 2048 characters, without spaces, quotes, "
                f"'<>{{}}|\\^`' or '$(', e.g. '{example}'"
            )
        # The parser resolves '.' and '..' segments, so the URL used would not be the one written.
        path = re.split(r"[?#]", value.split("://", 1)[-1], maxsplit=1)[0]
        if any(part in (".", "..") for part in path.split("/")[1:]):
            return f"'{shown(value)}' must be an {wanted} URL without '.' or '..' path segments, e.g. '{example}'"
        try:
            adapter.validate_python(value)
        except _ValidationError as error:
            reason = error.errors()[0]["msg"].removeprefix("Input should be a valid URL, ")
            return f"'{shown(value)}' must be an {wanted} URL ({reason}), e.g. '{example}'"
        host = urlsplit(value).hostname or ""
        if not (_URL_HOST.fullmatch(host) or ":" in host):  # ':': an IPv6 address, which the parser checked
            return f"'{shown(value)}' must be an {wanted} URL whose host is a DNS name or an IP address, e.g. '{example}'"
        return None

    return problem


http_url_problem = _url_checker(("http", "https"), "https://s3.example.org")
ldap_url_problem = _url_checker(("ldap", "ldaps"), "ldaps://ldap.example.org:636")
_git_url_problem = _url_checker(("https", "http", "ssh", "git"), "https://git.example.org/team/dags.git")
# scp-like `[user@]host:path`, which git reads as SSH.
_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:(?!//)([A-Za-z0-9._~/+-]+)")


def git_repo_problem(value: str) -> str | None:
    scp = _SCP_LIKE.fullmatch(value) if len(value) <= 2048 else None
    if scp and ".." not in scp.group(1).split("/"):
        return None
    problem = _git_url_problem(value)
    return problem and problem.replace("URL", "URL or scp-like 'git@host:path'", 1)


# git check-ref-format: no control characters, '~^:?*[\', '..' or '@{', no component starting with '.' or ending
# with '.lock', nor a leading '-' (git would read an option). A space, which git refuses too, is let through:
# branch environments follow whatever branch CI names.
_GIT_REF_REFUSED = re.compile(r"[~^:?*\[\\]|\.\.|@\{|//")


def git_ref_problem(value: str) -> str | None:
    parts = value.split("/")
    if (
        not value.strip()
        or value != value.strip()
        or len(value) > 255
        or CONTROL.search(value)
        or _GIT_REF_REFUSED.search(value)
        or value.startswith(("-", "/"))
        or value.endswith(("/", ".", ".lock"))
        or value == "@"
        or any(part.startswith(".") or part.endswith(".lock") for part in parts)
    ):
        return (
            f"'{shown(value)}' is not a git branch, tag or commit: at most 255 characters, none of '~^:?*[\\', "
            "'..', '@{', '//' or control characters, not starting with '-', '/' or a space nor ending with '/', '.', "
            "'.lock' or a space"
        )
    return None


def relative_path_problem(value: str) -> str | None:
    """A path inside a checkout: relative, without '..' (it would leave the checkout)."""
    parts = [part for part in value.strip("/").split("/") if part]
    if (
        len(value) > 1024
        or CONTROL.search(value)
        or "\\" in value
        or ".." in parts
        or any(part != part.strip() for part in parts)
    ):
        return (
            f"'{shown(value)}' must be a path inside the repository: at most 1024 characters, no '..' segment, "
            "backslash, control characters or spaces around a part, e.g. 'dags'"
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# S3 key prefixes and names


# AWS's "safe" object key characters: MinIO and Ceph RGW take them too, and MinIO refuses '.' and '..' segments.
_S3_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+")


def s3_prefix_problem(value: str) -> str | None:
    parts = value.split("/")
    if len(value) > 256 or not all(_S3_SEGMENT.fullmatch(part) and part not in (".", "..") for part in parts):
        return (
            f"'{shown(value)}' must be an S3 key prefix: at most 256 letters, digits and \"!_.*'()-\" in "
            "'/'-separated parts, none empty, '.' or '..', without leading or trailing '/', e.g. 'postgres'"
        )
    return None


def s3_name_problem(value: str) -> str | None:
    """One part of an object key, e.g. a Barman server name (the folder of one cluster's archive)."""
    if len(value) > 128 or not _S3_SEGMENT.fullmatch(value) or value in (".", ".."):
        return (
            f"'{shown(value)}' must be at most 128 letters, digits and \"!_.*'()-\" (a folder of the bucket), "
            "e.g. 'prod-pg-2'"
        )
    return None


def bucket_problem(value: str) -> str | None:
    errors = bucket_name_errors(value)
    return "; ".join(errors) if errors else None


# An ARN as IAM (and Ceph RGW, whose tenant users read 'user/tenant$user') takes it in a bucket policy.
_ARN = re.compile(r"arn:[a-z0-9-]+:[a-z0-9-]+:[A-Za-z0-9-]*:[A-Za-z0-9-]*:[^\s]+")


def arn_problem(value: str) -> str | None:
    if len(value) > 2048 or CONTROL.search(value) or not _ARN.fullmatch(value):
        return f"'{shown(value)}' is not an ARN like 'arn:aws:iam::123456789012:user/airflow-logs'"
    return None


def region_problem(value: str) -> str | None:
    if len(value) > 64 or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?", value):
        return f"'{shown(value)}' is not a region name: at most 64 letters, digits, '-' and '_', e.g. 'us-east-1'"
    return None


def cidr_problem(value: str) -> str | None:
    # The API server wants a prefix length (10.0.0.0/8), and the network address itself (no host bits).
    try:
        ipaddress.ip_network(value)
    except ValueError:
        return f"'{shown(value)}' is not a CIDR like 10.0.0.0/8"
    if "/" not in value:
        return f"'{shown(value)}' has no prefix length: write it as a CIDR like 10.0.0.0/8"
    return None


# ---------------------------------------------------------------------------------------------------------
# Airflow connections


def connections_object(secret: SecretStr) -> dict | None:
    """airflowConnections as the JSON object it must be (None: it is not one)."""
    try:
        connections = json.loads(secret.get_secret_value())
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None
    return connections if isinstance(connections, dict) else None
