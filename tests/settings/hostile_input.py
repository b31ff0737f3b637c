"""The machinery of the bad-input tests: the settings, walked from the model's JSON schema; the two doors a value
goes through; hostile values by the kind of setting; and what an accepted value must be and an error must say.

The settings are enumerated from the model's JSON schema, so a setting added to the model is covered without a
new test, and the domain checks read the same schema: minimum and maximum of numbers, maxItems and
maxProperties of collections, maxLength of text, and the marks of components/settings/value_types.py (`freeText`: any
printable text is safe where it goes; `multiLine`; `quantity`, with its maximum). A string setting that is not
`freeText` must refuse shell command substitution and '..' path segments.
"""

from __future__ import annotations

import base64
import copy
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pulumi
import yaml
from hypothesis import HealthCheck, settings, strategies as st
from pydantic import BaseModel, SecretStr

from components.settings import PROJECT, ConfigError, Settings, load_settings
from components.settings.cli import check_stack_file
from components.settings.fields import secret_keys
from components.settings.rules import cpu_cores, memory_bytes
from components.settings.stack_files import config_text

SCHEMA = Settings.model_json_schema(by_alias=True)
SECRET_KEYS = secret_keys()
STACK = "dev"
# Hostile values of secrets carry it, so a test can tell when an error message repeats one.
MARKER = "S3CR3T"
# One property run per setting: about 240 settings, so the whole file stays well under 30 s. derandomize and no
# example database: CI and every developer run the same examples.
EXAMPLES_PER_SETTING = 8
HYPOTHESIS = settings(
    max_examples=EXAMPLES_PER_SETTING,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ---------------------------------------------------------------------------------------------------------
# Valid configurations the hostile values go into: the defaults, and one with every optional part switched on


KEYTAB = base64.b64encode(b"\x05\x02fake-keytab").decode()


EVERYTHING_ON = {
    "kerberos": {"enabled": True, "principal": "airflow/x.example.org@EX.ORG", "realm": "EX.ORG", "kdcs": ["kdc1:88"],
                 "adminServer": "kdc1.example.org"},
    "kerberosKeytab": KEYTAB,
    "gitSync": {"enabled": True, "repo": "https://git.example.org/team/dags.git", "subPath": "dags", "username": "bot",
                "knownHosts": "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"},
    "gitSyncToken": "token",
    "ingress": {"enabled": True, "host": "airflow.example.org", "className": "nginx", "tlsSecretName": "airflow-tls",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}},
    "auth": {"mode": "oidc", "oidcMetadataUrl": "https://idp.example.org/.well-known/openid-configuration",
             "oidcClientId": "airflow", "roleMapping": {"cn=ops,dc=example,dc=org": ["Op"]}, "defaultRole": "Viewer"},
    "authOidcClientSecret": "client-secret",
    "s3": {"endpointUrl": "https://s3.example.org", "podEndpointUrl": "http://minio.minio.svc:9000",
           "logPrincipal": "arn:aws:iam::123456789012:user/logs", "backupPrincipal": "arn:aws:iam::123456789012:user/b",
           "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
    "s3AccessKeyId": "AKIAPROVISION", "s3SecretAccessKey": "provision-secret",
    "s3LogAccessKeyId": "AKIALOG", "s3LogSecretAccessKey": "log-secret",
    "s3BackupAccessKeyId": "AKIABACKUP", "s3BackupSecretAccessKey": "backup-secret",
    "postgres": {"image": "ghcr.io/cloudnative-pg/postgresql:17.6", "storageClass": "fast",
                 "backups": {"serverName": "dev-pg-2"},
                 "restore": {"source": STACK, "targetTime": "2024-05-01T10:00:00Z", "serverName": "dev-pg",
                             "bucket": "other-bucket", "prefix": "postgres"}},
    "metrics": {"prometheusOperator": True, "monitorLabels": {"release": "kube-prometheus-stack"},
                "runbookUrl": "https://runbooks.example.org/airflow"},
    "placement": {"nodeSelector": {"pool": "airflow"},
                  "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "airflow", "effect": "NoSchedule"}]},
    "quota": {"pods": 400},
    "dbCleanup": {"tables": ["task_instance", "xcom"]},
    "airflowConnections": '{"warehouse": {"conn_type": "postgres", "login": "etl"}}',
}


BASES = {"defaults": {}, "everything on": EVERYTHING_ON}


def _merged(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return copy.deepcopy(over)


DEFAULTS = Settings.model_validate({"instance": STACK}).model_dump(by_alias=True, mode="json")


# Where a hostile value goes in, its parents come from the base's own picture (what the stack would read), or
# from the one with everything on where the base has none (no restore, no toleration): only the value is wrong.
EXAMPLE = _merged(DEFAULTS, EVERYTHING_ON)


# ---------------------------------------------------------------------------------------------------------
# The settings, from the model's JSON schema


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _non_null(node: dict) -> tuple[dict, bool]:
    node = _resolve(node)
    options = [_resolve(option) for option in node.get("anyOf", [node])]
    real = [option for option in options if option.get("type") != "null"]
    return (real[0] if real else node), len(real) < len(options)


@dataclass(frozen=True)
class Setting:
    path: tuple  # field names as written in the stack file; 0 for the item of a list of objects

    @property
    def key(self) -> str:
        return ".".join(str(part) for part in self.path)

    @property
    def schema(self) -> dict:
        return _schema_at(self.path)[0]

    @property
    def nullable(self) -> bool:
        return _schema_at(self.path)[1]

    @property
    def secret(self) -> bool:
        return self.path[0] in SECRET_KEYS

    @property
    def kind(self) -> str:
        return kind_of(self.schema)


def kind_of(schema: dict) -> str:
    if "properties" in schema:
        return "object"
    if "enum" in schema:
        return "enum"
    if schema.get("type") == "object":
        return "map"
    return schema.get("type", "any")


def _schema_at(path: tuple) -> tuple[dict, bool]:
    node, nullable = SCHEMA, False
    for part in path:
        if isinstance(part, int):
            node, nullable = _non_null(node["items"])
        else:
            node, nullable = _non_null(node["properties"][part])
    return node, nullable


def _settings_under(node: dict, path: tuple = ()):
    node, _ = _non_null(node)
    if path:
        yield Setting(path)
    if "properties" in node:
        for name, child in node["properties"].items():
            yield from _settings_under(child, (*path, name))
    elif node.get("type") == "array" and "properties" in _non_null(node["items"])[0]:
        yield from _settings_under(node["items"], (*path, 0))


SETTINGS = list(_settings_under(SCHEMA))


# ---------------------------------------------------------------------------------------------------------
# The doors


def read_as_pulumi_up(config: dict[str, Any]) -> Settings:
    """`load_settings` on config set as the engine sets it: every value text, secrets marked secret. A None at the
    top level is a key the stack file does not set."""
    present = {key: value for key, value in config.items() if value is not None}
    pulumi.runtime.reset_options(project=PROJECT, stack=STACK)
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{key}": config_text(value) for key, value in present.items()},
        [f"{PROJECT}:{key}" for key in present if key in SECRET_KEYS],
    )
    return load_settings()


def read_as_check(config: dict[str, Any], path) -> list[str]:
    """`check_stack_file` on the same config written as a stack file, secrets encrypted as the CLI writes them."""
    document = {"config": {
        f"{PROJECT}:{key}": {"secure": "v1:AAAA"} if key in SECRET_KEYS else value
        for key, value in config.items()
        if value is not None
    }}
    path.write_text(yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    return check_stack_file(path)


def with_value(base: dict, setting: Setting, value: Any) -> dict:
    config = copy.deepcopy(base)
    node, own, example = config, _merged(DEFAULTS, base), EXAMPLE
    for part in setting.path[:-1]:
        own, example = _child(own, part), example[part]
        parent = own if own not in (None, [], {}) else example
        if isinstance(part, int):
            while len(node) <= part:
                node.append(copy.deepcopy(parent))
        elif not isinstance(node.get(part), (dict, list)):
            node[part] = copy.deepcopy(parent)
        node = node[part]
    last = setting.path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value
    return config


def _child(node: Any, part: Any) -> Any:
    try:
        return node[part]
    except (KeyError, IndexError, TypeError):
        return None


def example_value(setting: Setting) -> Any:
    node = EXAMPLE
    for part in setting.path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


# ---------------------------------------------------------------------------------------------------------
# Hostile values, by the kind of setting


CONTROL = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff"]


NASTY_TEXT = [
    "", " ", "\n", "..", "../../../etc/passwd", "dags/../../..", "$(rm -rf /)", "`reboot`", "${HOME}", "x; rm -rf / #",
    "--upload-pack=touch /tmp/pwned", "http://h:99999", "http://[::1", "https://", "ftp://example.org", "not a url",
    "1e99", "9" * 400, "-1", "0", "-5s", "NaN", "Infinity", "null", "true", "{}", "[1]", "{{ .Values }}", "%s%n",
    "\u202eevil", "\x1b[2J", "a" * 5000, "é" * 300, "🙂", "100000Pi", "1000000Ti", "-1Gi", "1e3", "0.0001m",
    "2024-13-45T99:99:99Z", "9999-12-31T23:59:59+00:00", "[" * 5000, '{"a": ' * 3000,
]


HUGE_NUMBERS = [10**9, 10**12, 10**18, 2**31, 2**63, 2**64, 10**400, -(10**400), -1, 0]


def _mutations(valid: str) -> list[str]:
    return [
        *(valid + c for c in CONTROL), *(c + valid for c in ("\n", " ", "-", "/")), valid + " ", valid + "/../../x",
        "../" + valid, valid * (5000 // max(len(valid), 1) + 1), valid + "$(id)", valid + ":99999", valid.upper(),
    ]


def wrong_types(nullable: bool) -> st.SearchStrategy:
    options = [
        st.booleans(),
        st.sampled_from(HUGE_NUMBERS),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
        st.just(["x"] * 5000),
    ]
    if not nullable:
        options.append(st.none())
    return st.one_of(options)


def hostile_text(valid: Any = None) -> st.SearchStrategy:
    options = [st.sampled_from(NASTY_TEXT), st.text(max_size=40)]
    if isinstance(valid, str) and valid:
        options.append(st.sampled_from(_mutations(valid)))
    return st.one_of(options)


def hostile(schema: dict, nullable: bool, valid: Any = None, depth: int = 0) -> st.SearchStrategy:
    kind = kind_of(schema)
    if kind in ("string", "enum", "any"):
        options = [hostile_text(valid)]
        if kind == "enum":
            options.append(st.sampled_from([v.upper() for v in schema["enum"]] + [v + "\n" for v in schema["enum"]]))
    elif kind in ("integer", "number"):
        options = [st.sampled_from(["1e99", " 3", "3\n", "0x10", "١٢", "ten", "", "NaN"]), st.floats()]
    elif kind == "boolean":
        options = [st.sampled_from(["maybe", "yes\n", " true", 2, -1, 0.5, "", "TRUE "]), st.text(max_size=8)]
    elif kind == "object":
        options = [st.sampled_from([{"noSuchKey": 1}, {"": 1}, {"\n": 1}, "[" * 5000, "{" * 5000]), st.text(max_size=10)]
    elif kind == "map":
        items = _non_null(schema.get("additionalProperties", {}))[0]
        element = hostile(items, False, None, depth + 1) if depth < 2 else st.none()
        sample = next(iter(valid.items())) if isinstance(valid, dict) and valid else ("k", "v")
        options = [
            st.dictionaries(hostile_text(sample[0]), st.just(sample[1]), min_size=1, max_size=3),
            st.dictionaries(st.just(sample[0]), element, min_size=1, max_size=1),
            st.just({f"k{i}": sample[1] for i in range(5000)}),
        ]
    elif kind == "array":
        items, _ = _non_null(schema.get("items", {}))
        sample = valid[0] if isinstance(valid, list) and valid else None
        element = hostile(items, False, sample, depth + 1) if depth < 2 else st.none()
        options = [st.lists(element, min_size=1, max_size=3), st.just([sample if sample is not None else "x"] * 5000)]
    else:
        options = []
    return st.one_of([*options, wrong_types(nullable)])


def hostile_value(setting: Setting) -> st.SearchStrategy:
    values = hostile(setting.schema, setting.nullable, example_value(setting))
    if setting.secret:
        return values.map(lambda value: f"{MARKER}{value}" if isinstance(value, str) else value)
    return values


# ---------------------------------------------------------------------------------------------------------
# What an accepted value must be, and what an error must say


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_UNPRINTABLE_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_SHELL = re.compile(r"\$\(|\$\{|`")


_UP = re.compile(r"(^|/)\.\.(/|$)")


_PROBLEM_KEY = re.compile(rf"^{re.escape(PROJECT)}:(\S+?)(?: = |: |$)")


def _at(settings_object: Settings, path: tuple) -> Any:
    node: Any = settings_object
    for part in path:
        if isinstance(node, BaseModel):
            node = getattr(node, next(n for n, f in type(node).model_fields.items() if (f.alias or n) == part))
        else:
            node = node[part]
    return node


def assert_in_domain(value: Any, schema: dict, key: str) -> None:
    schema, _ = _non_null(schema)
    if value is None:
        return
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            alias = field.alias or name
            assert_in_domain(getattr(value, name), schema["properties"][alias], f"{key}.{alias}")
    elif isinstance(value, dict):
        assert len(value) <= schema["maxProperties"], f"{key}: {len(value)} entries accepted"
        for k, v in value.items():
            assert_text_in_domain(k, schema.get("propertyNames", {}), f"{key} (a key)")
            assert_in_domain(v, schema.get("additionalProperties", {}), f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        assert len(value) <= schema["maxItems"], f"{key}: {len(value)} items accepted"
        for i, item in enumerate(value):
            assert_in_domain(item, schema.get("items", {}), f"{key}.{i}")
    elif isinstance(value, bool):
        assert schema.get("type") == "boolean", f"{key}: accepted {value!r}"
    elif isinstance(value, (int, float)):
        assert math.isfinite(value), f"{key}: accepted {value!r}"
        assert schema["minimum"] <= value <= schema["maximum"], f"{key}: accepted {value!r}"
    elif isinstance(value, str):
        assert_text_in_domain(value, schema, key)
    else:
        assert isinstance(value, datetime), f"{key}: accepted {value!r}"


def assert_text_in_domain(value: str, schema: dict, key: str) -> None:
    lines, free = schema.get("multiLine"), schema.get("freeText")
    assert not (_UNPRINTABLE_IN_TEXT if lines else _UNPRINTABLE).search(value), f"{key}: accepted {value!r}"
    limit = schema.get("maxLength", 1024 * 1024 if lines else 4096)
    assert len(value) <= limit, f"{key}: accepted {len(value)} characters"
    if not free:
        assert not _SHELL.search(value), f"{key}: accepted shell text {value!r} but is not marked freeText"
        assert not _UP.search(value), f"{key}: accepted a '..' segment {value!r} but is not marked freeText"
        if "://" in value:
            url = urlsplit(value)
            try:
                port = url.port
            except ValueError:
                port = -1
            assert url.hostname and (port is None or 0 < port <= 65535), f"{key}: accepted the URL {value!r}"
    if quantity := schema.get("quantity"):
        amount = (cpu_cores if quantity["unit"] == "cores" else memory_bytes)(value)
        assert 0 <= amount <= quantity["maximum"], f"{key}: accepted {value!r}"


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def assert_names_the_setting(error: ConfigError, setting: Setting) -> None:
    problems, key = error.problems, setting.key
    assert problems, "a ConfigError without problems"
    for problem in problems:
        assert not _UNPRINTABLE.search(problem), f"a problem is not one printable line: {problem!r}"
        assert len(problem) <= 2000, f"a problem of {len(problem)} characters: {problem[:200]!r}..."
    leaf = _words(next(str(part) for part in reversed(setting.path) if isinstance(part, str)))

    def names(problem: str) -> bool:
        match = _PROBLEM_KEY.match(problem)
        named = match.group(1) if match else ""
        if named == key or named.startswith(key + "."):
            return True
        if named and key.startswith(named + "."):  # a rule of the section: it must say which of its keys
            return leaf in _words(problem[match.end():])
        return key in problem  # a rule across settings names every key it concerns

    naming = [problem for problem in problems if names(problem)]
    assert naming, f"no problem names {key}: {problems}"
    # What is allowed: more than the key and the value shown.
    assert any(len(_PROBLEM_KEY.sub("", problem).split(": ", 1)[-1]) >= 10 for problem in naming), naming
    if setting.secret:
        assert MARKER not in str(error), f"the error repeats the secret {key}"


def check_one(setting: Setting, base: dict, value: Any, stack_file) -> None:
    config = with_value(base, setting, value)
    try:
        accepted = read_as_pulumi_up(config)
    except ConfigError as error:
        assert_names_the_setting(error, setting)
        problems = error.problems
    else:
        assert_in_domain(_at(accepted, setting.path), setting.schema, setting.key)
        problems = []
    if stack_file is not None and not setting.secret:  # the stack file check stands in for secrets it cannot decrypt
        assert read_as_check(config, stack_file) == problems, "check and pulumi up disagree"
