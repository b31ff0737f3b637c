"""The value types of the settings, as pydantic `Annotated` types: Kubernetes quantities, names and label
values, image references, CSS colours and base64 secrets.

`components.config` is the model's entry point: the rest of the project imports what it uses of this module
from there.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from pydantic import AfterValidator, SecretStr

from components import images, kube

_CPU = re.compile(r"^([0-9]+(\.[0-9]+)?)(m)?$")
_MEMORY = re.compile(r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
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


def cpu_cores(quantity: str) -> float:
    match = _CPU.match(quantity)
    if not match:
        raise ValueError(f"'{quantity}' is not a CPU quantity; use cores like '1', '0.5' or millicores like '500m'")
    value = float(match.group(1))
    return value / 1000 if match.group(3) else value


def memory_bytes(quantity: str) -> float:
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(f"'{quantity}' is not a memory quantity; use e.g. '512Mi', '2Gi'")
    return float(match.group(1)) * _MEMORY_FACTORS[match.group(3)]


def _cpu(value: str) -> str:
    cpu_cores(value)
    return value


def _memory(value: str) -> str:
    memory_bytes(value)
    return value


def _dns1123_label(value: str) -> str:
    if not kube.is_dns1123_label(value):
        raise ValueError(
            f"'{value}' is not a DNS-1123 label: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


# The API server's own rules (k8s.io/apimachinery/pkg/util/validation) for what a setting becomes, checked when
# the config is read: a value the cluster would refuse must not stop `pulumi up` half-way through.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The image reference grammar of container runtimes (github.com/distribution/reference): a kubelet refuses
# anything else as InvalidImageName, after the API server has accepted the pod.
_IMAGE_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_IMAGE_REPOSITORY = re.compile(rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}$")
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH}(?::[\w][\w.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?$"
)
_CSS_HEX = re.compile(r"^#([0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_CSS_FUNCTION = re.compile(r"^(rgb|rgba|hsl|hsla)\(\s*[0-9.]+%?\s*(,\s*[0-9.]+%?\s*){2,3}\)$")
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


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"'{value}' is not a Kubernetes label value: use at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


def dns1123_subdomain_problem(value: str) -> str | None:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        return (
            f"'{value}' is not a DNS-1123 subdomain: use at most 253 lower-case letters, digits, '-' and '.', "
            "each dot-separated part starting and ending with a letter or digit"
        )
    return None


def _refusing(problem_of):
    """A pydantic validator from a function that says what is wrong with a value (None: nothing)."""

    def validate(value: str) -> str:
        if problem := problem_of(value):
            raise ValueError(problem)
        return value

    return validate


def _ingress_host(value: str) -> str:
    # The API server takes a DNS name, optionally with a leading '*.' wildcard, and never an IP address.
    if re.match(r"^[0-9.]+$|:", value):
        raise ValueError(f"'{value}' is an IP address; an ingress host must be a DNS name")
    if problem := dns1123_subdomain_problem(value.removeprefix("*.")):
        raise ValueError(problem.replace("DNS-1123 subdomain", "host name (a DNS-1123 subdomain, optionally '*.'-prefixed)"))
    return value


def image_reference_problem(value: str, repository_only: bool = False) -> str | None:
    pattern = _IMAGE_REPOSITORY if repository_only else _IMAGE_REFERENCE
    if len(value) > 255 or not pattern.match(value):
        what = "an image repository like 'registry.example.org/team/airflow'" if repository_only else (
            "an image reference like 'registry.k8s.io/git-sync/git-sync:v4.4.2'")
        return f"'{value}' is not {what} (lower-case path, no spaces)"
    return None


def _css_colour(value: str) -> str:
    if not (_CSS_HEX.match(value) or _CSS_FUNCTION.match(value) or value.lower() in _CSS_NAMED):
        raise ValueError(f"'{value}' is not a CSS colour: use e.g. '#d9534f', 'red' or 'rgb(217, 83, 79)'")
    return value


def _base64(value: SecretStr) -> SecretStr:
    try:
        decoded = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (e.g. `base64 -w0 airflow.keytab`)") from None
    if not decoded:
        raise ValueError("must not be empty")
    return value


CpuQuantity = Annotated[str, AfterValidator(_cpu)]
PinnedImage = Annotated[
    str, AfterValidator(_refusing(image_reference_problem)), AfterValidator(_refusing(images.pinned_image_problem))
]
MemoryQuantity = Annotated[str, AfterValidator(_memory)]
DnsLabel = Annotated[str, AfterValidator(_dns1123_label)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
DnsSubdomain = Annotated[str, AfterValidator(_refusing(dns1123_subdomain_problem))]
IngressHost = Annotated[str, AfterValidator(_ingress_host)]
CssColour = Annotated[str, AfterValidator(_css_colour)]
Base64Secret = Annotated[SecretStr, AfterValidator(_base64)]
