"""The platform team's rules, as plain functions over one resource.

Each rule takes a `Checked` (the resource's type token, its inputs `props` as the engine passes them, i.e.
camelCase Kubernetes fields, its stack and its `protect` option) and returns the violations it finds, one
message each; an empty list means the resource passes. `__main__.py` wraps every rule in a mandatory
`ResourceValidationPolicy`; the tests call the rules directly and run them over the real program.

A value the engine cannot know yet during a preview arrives as `UNKNOWN`. A rule never fails on it: the same
rule runs again on `pulumi up`, when every value is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass
class Checked:
    type: str
    props: dict[str, Any]
    stack: str = ""
    protect: bool = False
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1] if self.type.startswith("kubernetes:") else ""


def stack_of_urn(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` → `<stack>`."""
    return urn.split("::", 1)[0].removeprefix("urn:pulumi:")


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if value is UNKNOWN:
            return UNKNOWN
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


# ---------------------------------------------------------------------------------------------------------
# Pod specs and containers

WORKLOAD_POD_SPEC = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def pod_spec(resource: Checked) -> Any:
    path = WORKLOAD_POD_SPEC.get(resource.kind)
    return None if path is None else _get(resource.props, *path)


def containers(spec: Any) -> Iterator[tuple[str, dict]]:
    """(`what`, container) for every container of a pod spec, init containers included."""
    if not isinstance(spec, dict):
        return
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        if not isinstance(items, list):
            continue
        for index, container in enumerate(items):
            if isinstance(container, dict):
                label = container.get("name") if isinstance(container.get("name"), str) else f"#{index}"
                yield f"{list_name[:-1]} '{label}'", container


def _workload(resource: Checked) -> str:
    name = _get(resource.props, "metadata", "name")
    return f"{resource.kind} '{name if isinstance(name, str) else resource.name or '?'}'"


def container_resources(resource: Checked) -> list[str]:
    """Every container sets requests and limits for cpu and memory."""
    problems = []
    for what, container in containers(pod_spec(resource)):
        res = container.get("resources")
        if res is UNKNOWN:
            continue
        missing = [
            f"{section}.{quantity}"
            for section in ("requests", "limits")
            for quantity in ("cpu", "memory")
            if _get(res, section, quantity) in (None, "")
        ]
        if missing:
            problems.append(f"{_workload(resource)}: {what} has no resources.{', resources.'.join(missing)}")
    return problems


def pod_security_restricted(resource: Checked) -> list[str]:
    """The Pod Security Standard `restricted`, plus no host paths/network/PID/IPC."""
    spec = pod_spec(resource)
    if not isinstance(spec, dict):
        return []
    where = _workload(resource)
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag) is True:
            problems.append(f"{where}: {flag} is true")
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            problems.append(f"{where}: volume '{volume.get('name')}' is a hostPath")
    pod = spec.get("securityContext") if isinstance(spec.get("securityContext"), dict) else {}
    for what, container in containers(spec):
        context = container.get("securityContext")
        if context is UNKNOWN:
            continue
        context = context if isinstance(context, dict) else {}
        if context.get("privileged") is True:
            problems.append(f"{where}: {what} is privileged")
        if context.get("allowPrivilegeEscalation") not in (False, UNKNOWN):
            problems.append(f"{where}: {what} must set securityContext.allowPrivilegeEscalation: false")
        drop = _get(context, "capabilities", "drop")
        if drop is not UNKNOWN and "ALL" not in (drop or []):
            problems.append(f"{where}: {what} must drop ALL capabilities")
        non_root = context.get("runAsNonRoot", pod.get("runAsNonRoot"))
        if non_root not in (True, UNKNOWN):
            problems.append(f"{where}: {what} must run with runAsNonRoot: true (container or pod)")
        if context.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{where}: {what} runs as uid 0")
        seccomp = _get(context, "seccompProfile", "type") or _get(pod, "seccompProfile", "type")
        if seccomp not in ("RuntimeDefault", "Localhost", UNKNOWN):
            problems.append(f"{where}: {what} needs seccompProfile.type RuntimeDefault (container or pod)")
    return problems


def pinned_image_tags(resource: Checked) -> list[str]:
    """Every container image, and the image a CloudNativePG Cluster or Pooler runs, is an exact version
    (`17.6`, `v4.4.2`, `3.3.2-python3.12`) or a digest: a tag like `17` or `v4` moves under a running stack."""
    images = [(what, container.get("image")) for what, container in containers(pod_spec(resource))]
    if resource.type == "kubernetes:postgresql.cnpg.io/v1:Cluster":
        images.append(("spec.imageName", _get(resource.props, "spec", "imageName")))
    if resource.type == "kubernetes:postgresql.cnpg.io/v1:Pooler":
        template = _get(resource.props, "spec", "template", "spec")
        images += [(what, c.get("image")) for what, c in containers(template) if "image" in c]
    problems = []
    for what, image in images:
        if image is UNKNOWN:
            continue
        problem = image_tag_problem(image)
        if problem:
            problems.append(f"{_workload(resource)}: {what} {problem}")
    return problems


_EXACT_VERSION = re.compile(r"\d+\.\d+")


def image_tag_problem(image: Any) -> str | None:
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@" in image:
        return None  # pinned by digest
    last = image.rsplit("/", 1)[-1]  # a registry port (`host:5000/x`) is not a tag
    if ":" not in last:
        return f"image '{image}' has no tag (that means :latest); pin a version"
    tag = last.rsplit(":", 1)[1]
    if not tag or tag.lower() == "latest":
        return f"image '{image}' uses the tag 'latest'; pin a version"
    if not _EXACT_VERSION.search(tag):
        return f"image '{image}' has the floating tag '{tag}'; pin an exact version (e.g. 17.6) or a digest"
    return None


# ---------------------------------------------------------------------------------------------------------
# ConfigMaps

_SECRET_WORDS = {"password", "passwords", "passwd", "pwd", "secret", "secrets", "token", "tokens", "fernet",
                 "jwt", "apikey", "credential", "credentials", "privatekey"}
_SECRET_PAIRS = {("private", "key"), ("api", "key"), ("secret", "key"), ("access", "token")}
_SQL_CONN = re.compile(r"^AIRFLOW__[A-Z0-9_]*SQL_ALCHEMY_CONN$", re.IGNORECASE)
# These keys name where a secret is, not the secret: Airflow's `_cmd`/`_secret` variants, file paths, and
# the `[secrets]` section that configures the secrets backend.
_POINTER_SUFFIXES = ("_CMD", "_SECRET", "_FILE", "_PATH", "_DIR")
_POINTER_PREFIXES = ("AIRFLOW__SECRETS__",)
# ...except options whose own name ends in `_secret`: `[api_auth] jwt_secret` IS the secret.
_SECRET_OPTIONS = ("__JWT_SECRET",)
_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def _words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word]


def secret_looking_key(key: str) -> bool:
    upper = key.upper()
    if (upper.endswith(_POINTER_SUFFIXES) and not upper.endswith(_SECRET_OPTIONS)) or upper.startswith(_POINTER_PREFIXES):
        return False
    if _SQL_CONN.match(key):
        return True
    words = _words(key)
    return bool(_SECRET_WORDS.intersection(words)) or any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def credential_in_value(value: Any) -> str | None:
    """What credential `value` holds, or None. A certificate (CA bundle) is public and fine."""
    if not isinstance(value, str):
        return None
    if _PEM_PRIVATE_KEY.search(value):
        return "a PEM private key"
    if _URL_PASSWORD.search(value):
        return "a URL with a password"
    return None


def no_secrets_in_configmaps(resource: Checked) -> list[str]:
    """ConfigMaps are readable by anyone who may read the namespace: secrets belong in Secrets."""
    if resource.kind != "ConfigMap":
        return []
    problems = []
    for section in ("data", "binaryData"):
        data = resource.props.get(section)
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if secret_looking_key(key):
                problems.append(f"{_workload(resource)}: key '{key}' looks like a secret; put it in a Secret")
            found = credential_in_value(value)
            if found:
                problems.append(f"{_workload(resource)}: the value of '{key}' contains {found}; put it in a Secret")
    return problems


# ---------------------------------------------------------------------------------------------------------
# Protection of stateful resources on every long-lived stack

STATEFUL_TYPES = {
    "kubernetes:postgresql.cnpg.io/v1:Cluster": "the CloudNativePG database cluster",
    "pulumi-python:dynamic:S3Bucket": "the log bucket",
    # Deleting a namespace deletes everything in it, the database included.
    "kubernetes:core/v1:Namespace": "the namespace holding the database",
}
# The only stacks whose data may be thrown away: a developer's `dev` and `local`, the `local-<name>` copies of a
# stack that scripts/local-up renders (`Pulumi.local-*.yaml`, git-ignored; docs/checking-and-rendering-a-stack.md),
# and branch environments (`br-<slug>-<hash>`). A team's stack is as precious as prod.
# The branch prefix is defined here, where the policy pack can read it (the engine runs the pack with nothing of the
# project importable); envs/naming.py names branch stacks with it and ci_preview/ never deploys them.
DISPOSABLE_STACKS = ("dev", "local")
LOCAL_STACK_PREFIX = "local-"
BRANCH_STACK_PREFIX = "br-"


def is_disposable_stack(stack: str) -> bool:
    return stack in DISPOSABLE_STACKS or stack.startswith((LOCAL_STACK_PREFIX, BRANCH_STACK_PREFIX))


def stateful_protected(resource: Checked) -> list[str]:
    """On every stack but the disposable ones the database, its namespace and the log bucket must be protected."""
    what = STATEFUL_TYPES.get(resource.type)
    if what is None or is_disposable_stack(resource.stack) or resource.protect:
        return []
    return [
        f"{what} '{resource.name}' on long-lived stack '{resource.stack}' must be protected (set protect: true); "
        f"only {', '.join(DISPOSABLE_STACKS)}, {LOCAL_STACK_PREFIX}* and branch environments ({BRANCH_STACK_PREFIX}*) "
        "are disposable"
    ]


RULES: dict[str, tuple[Callable[[Checked], list[str]], str]] = {
    "container-resources": (container_resources, "Every container sets cpu and memory requests and limits."),
    "pod-security-restricted": (
        pod_security_restricted,
        "Pods meet Pod Security 'restricted': non-root, no privilege escalation, capabilities dropped, "
        "seccomp RuntimeDefault, nothing privileged, no host path, network or PID.",
    ),
    "no-secrets-in-configmaps": (
        no_secrets_in_configmaps,
        "ConfigMaps hold no passwords, tokens, keys or credential URLs (CA certificates are fine).",
    ),
    "stateful-protected": (
        stateful_protected,
        "On every stack but dev, local, local-* and branch environments the database cluster, the namespace holding it and "
        "the log bucket are protected against deletion.",
    ),
    "pinned-image-tags": (
        pinned_image_tags,
        "Every container image, and the database's and pooler's, is an exact version or a digest.",
    ),
}


def check(resource: Checked) -> dict[str, list[str]]:
    """Every rule's violations for `resource` (rules without any are left out)."""
    return {name: found for name, (rule, _) in RULES.items() if (found := rule(resource))}
