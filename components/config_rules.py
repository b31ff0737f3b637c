"""The value types of the settings, as pydantic `Annotated` types: Kubernetes quantities, names and label
values, image references, URLs, git and Kerberos values, cron schedules, S3 key prefixes, CSS colours,
base64 secrets and text.

Every string type bounds its length and refuses control characters; every number has a ceiling. A value
outside the domain of what it becomes (a Kubernetes field, a line of krb5.conf, an argument of git-sync, a
shell word of the clean-up job) is refused here, when the config is read, with what is allowed: not by the
API server or a pod half-way through `pulumi up`, and never with a traceback.

`components.config` is the model's entry point: the rest of the project imports what it uses of this module
from there.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, AnyUrl, Field, SecretStr, StringConstraints, TypeAdapter, UrlConstraints
from pydantic import ValidationError as _ValidationError

from components import images, kube

# Characters no single-line setting may hold: C0 and C1 controls and DEL, and the Unicode line separators and
# bidirectional overrides, which change how a value reads in a terminal or a review without being seen.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Multi-line text (PEM, known_hosts, annotation values) may also hold tabs and line breaks.
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def control_character_problem(value: str, lines: bool = False) -> str | None:
    if (_CONTROL_IN_TEXT if lines else _CONTROL).search(value):
        if lines:
            return "must be printable text: tabs and line breaks are allowed, other control characters are not"
        return "must be one line of printable text (no line breaks or other control characters)"
    return None


def _printable(value: str) -> str:
    if problem := control_character_problem(value):
        raise ValueError(problem)
    # A space at either end is invisible in the stack file, and becomes part of a name, an ID or a path.
    if value != value.strip():
        raise ValueError("must not start or end with a space")
    return value


def _printable_lines(value: str) -> str:
    if problem := control_character_problem(value, lines=True):
        raise ValueError(problem)
    return value


def text(max_length: int, *, free: bool = False, lines: bool = False, min_length: int = 1) -> Any:
    """A string of at most `max_length` characters and no control characters (tabs and line breaks too when
    `lines`). `free`: any such text is in the domain, because the program passes it on as one quoted value (a
    Python literal, an argument, a YAML string) and never through a shell or into a path; the JSON schema
    says so, and tests/test_config_bad_input.py holds every other string setting to refusing shell text."""
    extra: dict[str, Any] = {}
    if free:
        extra["freeText"] = True
    if lines:
        extra["multiLine"] = True
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        Field(json_schema_extra=extra or None),
        AfterValidator(_printable_lines if lines else _printable),
    ]


def _refusing(problem_of):
    """A pydantic validator from a function that says what is wrong with a value (None: nothing)."""

    def validate(value):
        if problem := problem_of(value):
            raise ValueError(problem)
        return value

    return validate


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


def _quantity(measure, maximum: float, shown_maximum: str, why: str, positive: bool = False, unit: str = "") -> Any:
    def validate(value: str) -> str:
        amount = measure(value)
        if amount > maximum:
            raise ValueError(f"'{shown(value)}' is more than {shown_maximum}: {why}")
        if positive and amount <= 0:
            raise ValueError(f"'{value}' must be more than 0")
        return value

    return Annotated[
        str,
        Field(json_schema_extra={"quantity": {"unit": unit, "maximum": maximum}}),
        AfterValidator(validate),
    ]


_NODE = "more than any node offers, so no pod asking for it could be scheduled"
CpuQuantity = _quantity(cpu_cores, MAX_CONTAINER_CORES, f"{MAX_CONTAINER_CORES} cores", _NODE, unit="cores")
MemoryQuantity = _quantity(memory_bytes, MAX_CONTAINER_MEMORY, "64Ti", _NODE, unit="bytes")
StorageQuantity = _quantity(
    memory_bytes, MAX_VOLUME_BYTES, "64Ti", "no provisioner creates a larger volume", positive=True, unit="bytes"
)
QuotaCpuQuantity = _quantity(
    cpu_cores, MAX_QUOTA_CORES, f"{MAX_QUOTA_CORES} cores", "a Kubernetes quantity holds no more", unit="cores"
)
QuotaMemoryQuantity = _quantity(memory_bytes, MAX_QUOTA_MEMORY, "8Ei", "a Kubernetes quantity holds no more", unit="bytes")


# ---------------------------------------------------------------------------------------------------------
# Kubernetes names, labels and annotations

# The API server's own rules (k8s.io/apimachinery/pkg/util/validation) for what a setting becomes, checked when
# the config is read: a value the cluster would refuse must not stop `pulumi up` half-way through.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _dns1123_label(value: str) -> str:
    if not (_DNS1123_LABEL.fullmatch(value) and kube.is_dns1123_label(value)):
        raise ValueError(
            f"'{shown(value)}' is not a DNS-1123 label: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"'{shown(value)}' is not a Kubernetes label value: use at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


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


def _ingress_host(value: str) -> str:
    # The API server takes a DNS name, optionally with a leading '*.' wildcard, and never an IP address.
    if re.fullmatch(r"[0-9.]+", value) or ":" in value:
        raise ValueError(f"'{shown(value)}' is an IP address; an ingress host must be a DNS name")
    if problem := dns1123_subdomain_problem(value.removeprefix("*.")):
        raise ValueError(problem.replace("DNS-1123 subdomain", "host name (a DNS-1123 subdomain, optionally '*.'-prefixed)"))
    return value


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
        if len(value) > 2048 or _CONTROL.search(value) or re.search(r"[\s<>\"{}|\\^`]|\$\(", value):
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
        or _CONTROL.search(value)
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
        or _CONTROL.search(value)
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
    from components.log_bucket_props import bucket_name_errors

    errors = bucket_name_errors(value)
    return "; ".join(errors) if errors else None


# An ARN as IAM (and Ceph RGW, whose tenant users read 'user/tenant$user') takes it in a bucket policy.
_ARN = re.compile(r"arn:[a-z0-9-]+:[a-z0-9-]+:[A-Za-z0-9-]*:[A-Za-z0-9-]*:[^\s]+")


def arn_problem(value: str) -> str | None:
    if len(value) > 2048 or _CONTROL.search(value) or not _ARN.fullmatch(value):
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
# Kerberos: each value becomes a line of krb5.conf, so nothing that would start another line or section


_KRB5_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_KRB5_CLOCK = re.compile(r"([0-9]+):([0-9]{2})(?::([0-9]{2}))?")
# krb5 keeps a duration in a signed 32-bit number of seconds.
MAX_KRB5_SECONDS = 2**31 - 1


def krb5_seconds(value: str) -> int:
    """A krb5.conf duration (`2d`, `10h30m`, `36000`, `10:30`) in seconds."""
    if re.fullmatch(r"[0-9]{1,12}", value):
        return int(value)
    if value and (match := _KRB5_DURATION.fullmatch(value)) and len(value) <= 48:
        d, h, m, s = (int(group or 0) for group in match.groups())
        return ((d * 24 + h) * 60 + m) * 60 + s
    if (match := _KRB5_CLOCK.fullmatch(value)) and len(value) <= 24:
        h, m, s = (int(group or 0) for group in match.groups())
        return (h * 60 + m) * 60 + s
    raise ValueError(f"'{shown(value)}' is not a krb5 duration like '2d', '10h30m', '36000' (seconds) or '10:30'")


def krb5_duration_problem(value: str) -> str | None:
    try:
        seconds = krb5_seconds(value)
    except ValueError as error:
        return str(error)
    if not 1 <= seconds <= MAX_KRB5_SECONDS:
        return f"'{value}' must be between 1 second and {MAX_KRB5_SECONDS} seconds (about 68 years)"
    return None


_HOST_PORT = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::([0-9]{1,5}))?"
)


def host_port_problem(value: str) -> str | None:
    match = _HOST_PORT.fullmatch(value) if len(value) <= 261 else None
    if not match or (match.group(2) is not None and not 1 <= int(match.group(2)) <= 65535):
        return (
            f"'{shown(value)}' is not a host with an optional port (1-65535), like 'kdc1.example.org', "
            "'kdc1.example.org:88' or '[2001:db8::1]:88'"
        )
    return None


_REALM = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_PRINCIPAL_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*"


def realm_problem(value: str) -> str | None:
    if len(value) > 255 or not _REALM.fullmatch(value):
        return f"'{shown(value)}' is not a Kerberos realm: at most 255 letters, digits, '.', '_' and '-', e.g. 'EXAMPLE.ORG'"
    return None


def principal_problem(value: str) -> str | None:
    if len(value) > 512 or not re.fullmatch(rf"{_PRINCIPAL_PART}(?:@{_REALM.pattern})?", value):
        return (
            f"'{shown(value)}' is not a Kerberos principal like 'airflow/host.example.org@EXAMPLE.ORG' "
            "('/'-separated parts of letters, digits, '.', '_' and '-', each starting with a letter or digit, "
            "and an optional '@' realm)"
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# Schedules and durations


_CRON_RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day of month": (1, 31), "month": (1, 12),
                "day of week": (0, 6)}
_CRON_NAMES = {
    "month": {name: i + 1 for i, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    "day of week": {name: i for i, name in enumerate("sun mon tue wed thu fri sat".split())},
}
_CRON_ITEM = re.compile(r"(\*|\?|[0-9A-Za-z]{1,3}(?:-[0-9A-Za-z]{1,3})?)(?:/([0-9]{1,3}))?")


def _cron_field_problem(field: str, what: str) -> str | None:
    low, high = _CRON_RANGES[what]
    names = _CRON_NAMES.get(what, {})

    def number(text: str) -> int | None:
        if text.isdigit():
            value = int(text)
            return value if low <= value <= high else None
        return names.get(text.lower())

    for item in field.split(","):
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            return f"{what} '{shown(item)}' is not '*', a number, a range or a step"
        span, step = match.groups()
        if step is not None and int(step) == 0:
            return f"{what} '{item}' has a step of 0"
        if span in ("*", "?"):
            continue
        ends = [number(end) for end in span.split("-")]
        if None in ends or (len(ends) == 2 and ends[0] > ends[1]):
            return f"{what} '{item}' is outside {low}-{high}"
    return None


def cron_problem(value: str, seconds: bool) -> str | None:
    """The standard cron syntax Kubernetes' CronJob and CloudNativePG's ScheduledBackup (with a seconds field
    first) parse: an expression they refuse would stop `pulumi up`, or silently never back up."""
    fields = value.split(" ")
    wanted = ["second"] * seconds + ["minute", "hour", "day of month", "month", "day of week"]
    example = "'0 0 2 * * *'" if seconds else "'17 3 * * *'"
    fields = [field for field in fields if field]
    if len(fields) != len(wanted) or len(value) > 256 or _CONTROL.search(value) or value != value.strip():
        if seconds:
            return f"'{shown(value)}' must be a 6-field cron expression with seconds first, e.g. {example}"
        return f"'{shown(value)}' must be a 5-field cron expression, e.g. {example}"
    for field, what in zip(fields, wanted):
        if problem := _cron_field_problem(field, what):
            return f"'{shown(value)}': {problem}; e.g. {example}"
    return None


# Prometheus' duration syntax, as the monitoring.coreos.com CRDs check it.
_PROMETHEUS_DURATION = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_PROMETHEUS_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def scrape_interval_problem(value: str) -> str | None:
    match = _PROMETHEUS_DURATION.fullmatch(value) if value and len(value) <= 32 else None
    if not match:
        return f"'{shown(value)}' is not a Prometheus duration like '30s' or '1m'"
    seconds = sum(int(n or 0) * unit for n, unit in zip(match.groups(), _PROMETHEUS_UNITS))
    # Prometheus takes a series as gone after 5 minutes without a sample: a longer interval leaves gaps in every
    # metric, and alerts that never hold.
    if not 1 <= seconds <= 300:
        return f"'{value}' must be between 1s and 5m (Prometheus marks a series stale after 5 minutes without a sample)"
    return None


# ---------------------------------------------------------------------------------------------------------
# Names of things Airflow, PostgreSQL and LDAP know


def identifier_problem(what: str, pattern: str, example: str, max_length: int = 63):
    compiled = re.compile(pattern)

    def problem(value: str) -> str | None:
        if len(value) > max_length or not compiled.fullmatch(value):
            return f"'{shown(value)}' is not {what} (at most {max_length} characters), e.g. '{example}'"
        return None

    return problem


def currency_problem(value: str) -> str | None:
    """An ISO 4217 code or a currency sign: the outputs and `python -m envs list` print it after amounts."""
    if re.fullmatch(r"[A-Z]{3}", value) or (0 < len(value) <= 3 and all(unicodedata.category(c) == "Sc" for c in value)):
        return None
    return f"'{shown(value)}' is not a currency: use an ISO 4217 code like 'USD' or 'EUR', or a sign like '€'"


# ---------------------------------------------------------------------------------------------------------
# CSS colours and secrets


_CSS_HEX = re.compile(r"#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_CSS_FUNCTION = re.compile(r"(rgb|rgba|hsl|hsla)\( *[0-9.]+%? *(, *[0-9.]+%? *){2,3}\)")
_CSS_NAMED = frozenset("""
aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue blueviolet brown burlywood
cadetblue chartreuse chocolate coral cornflowerblue cornsilk crimson cyan darkblue darkcyan darkgoldenrod darkgray
darkgreen darkgrey darkkhaki darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink deepskyblue dimgray dimgrey dodgerblue
firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite gold goldenrod gray green greenyellow grey honeydew
hotpink indianred indigo ivory khaki lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen lightskyblue lightslategray
lightslategrey lightsteelblue lightyellow lime limegreen linen magenta maroon mediumaquamarine mediumblue
mediumorchid mediumpurple mediumseagreen mediumslateblue mediumspringgreen mediumturquoise mediumvioletred
midnightblue mintcream mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid
palegoldenrod palegreen paleturquoise palevioletred papayawhip peachpuff peru pink plum powderblue purple
rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown seagreen seashell sienna silver skyblue
slateblue slategray slategrey snow springgreen steelblue tan teal thistle tomato turquoise violet wheat white
whitesmoke yellow yellowgreen
""".split())


def _css_colour(value: str) -> str:
    if not (_CSS_HEX.fullmatch(value) or _CSS_FUNCTION.fullmatch(value) or value.lower() in _CSS_NAMED):
        raise ValueError(f"'{shown(value)}' is not a CSS colour: use e.g. '#d9534f', 'red' or 'rgb(217, 83, 79)'")
    return value


def _base64(value: SecretStr) -> SecretStr:
    try:
        decoded = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (e.g. `base64 -w0 airflow.keytab`)") from None
    if not decoded:
        raise ValueError("must not be empty")
    if len(decoded) > 768 * 1024:
        raise ValueError("must be at most 768 KiB before base64 (a Kubernetes Secret holds at most 1 MiB)")
    return value


def _secret_line(value: SecretStr) -> SecretStr:
    # Keys, tokens and passwords are written into files and headers as they are: a trailing line break (from
    # `pulumi config set --secret key < file`) would be part of the credential, and the login would fail.
    secret = value.get_secret_value()
    if not secret or len(secret) > 4096 or _CONTROL.search(secret):
        raise ValueError("must be one line of printable text of 1 to 4096 characters (no line break at the end)")
    return value


def _secret_text(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    if not secret or len(secret) > 1024 * 1024 or _CONTROL_IN_TEXT.search(secret):
        raise ValueError("must be printable text of at most 1 MiB (line breaks allowed, other control characters not)")
    return value


def _field(problem_of, **schema: Any) -> Any:
    """A string type from a function that says what is wrong with a value; `schema` goes into its JSON schema."""
    return Annotated[str, Field(json_schema_extra=schema or None), AfterValidator(_refusing(problem_of))]


PinnedImage = Annotated[
    str, AfterValidator(_refusing(image_reference_problem)), AfterValidator(_refusing(images.pinned_image_problem))
]
DnsLabel = Annotated[str, AfterValidator(_dns1123_label)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
QualifiedName = _field(qualified_name_problem)
DnsSubdomain = _field(dns1123_subdomain_problem)
IngressHost = Annotated[str, AfterValidator(_ingress_host)]
IngressPath = _field(ingress_path_problem)
CssColour = Annotated[str, AfterValidator(_css_colour)]
HttpUrl = _field(http_url_problem, format="uri")
LdapUrl = _field(ldap_url_problem, format="uri")
GitRepo = _field(git_repo_problem)
# Handed to git-sync as one argument (`--ref=<ref>`), never to a shell.
GitRef = _field(git_ref_problem, freeText=True)
# It ends the DAGs folder path Airflow is told, never a shell word.
RepoPath = _field(relative_path_problem, freeText=True)
S3Prefix = _field(s3_prefix_problem)
S3Name = _field(s3_name_problem)
BucketName = _field(bucket_problem)
Arn = _field(arn_problem, freeText=True)
Region = _field(region_problem)
Cidr = _field(cidr_problem)
Krb5Duration = _field(krb5_duration_problem)
HostPort = _field(host_port_problem)
Realm = _field(realm_problem)
Principal = _field(principal_problem)
Cron5 = _field(lambda value: cron_problem(value, seconds=False))
Cron6 = _field(lambda value: cron_problem(value, seconds=True))
ScrapeInterval = _field(scrape_interval_problem)
# The table names `airflow db clean --tables` takes; they end up in the clean-up job's shell command.
TableName = _field(identifier_problem("a table name", r"[a-z_][a-z0-9_]*", "task_instance"))
PostgresParameter = _field(identifier_problem("a PostgreSQL parameter name", r"[A-Za-z_][A-Za-z0-9_.]*", "work_mem"))
LdapAttribute = _field(identifier_problem("an LDAP attribute name", r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)*", "uid"))
# It names the provider in login URLs (/auth/oauth-authorized/<name>).
ProviderName = _field(identifier_problem("a provider name of letters, digits, '_' and '-'", r"[A-Za-z0-9_-]+", "oidc"))
Currency = _field(currency_problem)
Base64Secret = Annotated[SecretStr, AfterValidator(_base64)]
# A credential is opaque text, written into a Secret as it is: it never reaches a shell or a path.
SecretLine = Annotated[SecretStr, Field(json_schema_extra={"freeText": True}), AfterValidator(_secret_line)]
SecretText = Annotated[
    SecretStr, Field(json_schema_extra={"freeText": True, "multiLine": True}), AfterValidator(_secret_text)
]
