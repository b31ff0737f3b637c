"""The value types of the settings, as pydantic `Annotated` types built from the rules of rules.py and
service_rules.py: every string type bounds its length and refuses control characters; every number has a
ceiling.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, SecretStr, StringConstraints

from components import images, kube
from components.settings.rules import (
    CONTROL, CONTROL_IN_TEXT, MAX_CONTAINER_CORES, MAX_CONTAINER_MEMORY, MAX_QUOTA_CORES, MAX_QUOTA_MEMORY,
    MAX_VOLUME_BYTES, arn_problem, bucket_problem, cidr_problem, control_character_problem, cpu_cores,
    dns1123_subdomain_problem, git_ref_problem, git_repo_problem, http_url_problem, image_reference_problem,
    ingress_path_problem, ldap_url_problem, memory_bytes, qualified_name_problem, region_problem,
    relative_path_problem, s3_name_problem, s3_prefix_problem, shown,
)
from components.settings.service_rules import (
    cron_problem, currency_problem, host_port_problem, identifier_problem, krb5_duration_problem, principal_problem,
    realm_problem, scrape_interval_problem,
)


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
    says so, and tests/settings/test_bad_input_every_setting.py holds every other string setting to refusing shell text."""
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
# Kubernetes names, labels and ingress hosts

# The API server's rules for a name and a label value (k8s.io/apimachinery/pkg/util/validation).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


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


def _ingress_host(value: str) -> str:
    # The API server takes a DNS name, optionally with a leading '*.' wildcard, and never an IP address.
    if re.fullmatch(r"[0-9.]+", value) or ":" in value:
        raise ValueError(f"'{shown(value)}' is an IP address; an ingress host must be a DNS name")
    if problem := dns1123_subdomain_problem(value.removeprefix("*.")):
        raise ValueError(problem.replace("DNS-1123 subdomain", "host name (a DNS-1123 subdomain, optionally '*.'-prefixed)"))
    return value


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
    if not secret or len(secret) > 4096 or CONTROL.search(secret):
        raise ValueError("must be one line of printable text of 1 to 4096 characters (no line break at the end)")
    return value


def _secret_text(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    if not secret or len(secret) > 1024 * 1024 or CONTROL_IN_TEXT.search(secret):
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
