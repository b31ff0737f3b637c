"""Bad input at every door: every setting of the stack config, given values outside its domain, through the
readers the program has.

The doors are `components.settings.load_settings`, which `pulumi up` runs on `pulumi.Config` (values exactly as the
engine hands them over: scalars as text, objects as JSON text), and `check_stack_file`, which
`python -m components.settings check` runs on a `Pulumi.<stack>.yaml`. For every setting and every hostile value
(wrong types; empty, huge and negative values; control characters and line breaks; path traversal; shell text;
non-URLs where a URL goes; numbers and quantities far beyond what the cluster or the service takes) exactly one
thing may happen: the value is accepted and lies within the setting's domain, or the one error is a
`ConfigError` whose problems name the setting's key path, as the user writes it in the stack file, and say what is
allowed. Any other exception is a failure; both doors must agree.

The settings are enumerated from the model's JSON schema, so a setting added to the model is covered without a
new test, and the domain checks read the same schema: minimum and maximum of numbers, maxItems and
maxProperties of collections, maxLength of text, and the marks of components/settings/value_types.py (`freeText`: any
printable text is safe where it goes; `multiLine`; `quantity`, with its maximum). A string setting that is not
`freeText` must refuse shell command substitution and '..' path segments.

The explicit cases at the end pin the defects this test found, one by one.
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
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def test_the_walk_finds_every_setting():
    keys = {setting.key for setting in SETTINGS}
    assert {"instance", "scheduler.resources.limits.cpu", "postgres.restore.targetTime", "placement.tolerations.0.key",
            "auth.roleMapping", "cost.cpuPerCoreMonth", "airflowConnections"} <= keys
    assert len(SETTINGS) > 200


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind in ("integer", "number", "array", "map")], ids=str)
def test_every_number_and_collection_setting_has_bounds(setting):
    """What cannot be enumerated by value must say how far it goes: a number without a maximum accepts 10^18."""
    schema = setting.schema
    if setting.kind in ("integer", "number"):
        assert "minimum" in schema and "maximum" in schema, f"{setting.key}: give it ge= and le="
    else:
        bound = "maxItems" if setting.kind == "array" else "maxProperties"
        assert bound in schema, f"{setting.key}: give it max_length="


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


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    yield tmp_path_factory.mktemp("stack") / f"Pulumi.{STACK}.yaml"
    pulumi.runtime.set_all_config({}, [])


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


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.key)
@HYPOTHESIS
@given(data=st.data())
def test_a_hostile_value_is_refused_by_name_or_accepted_within_its_domain(setting, data, stack_file):
    base = data.draw(st.sampled_from(list(BASES.values())), label="base")
    value = data.draw(hostile_value(setting), label="value")
    check_one(setting, base, value, stack_file)


# The worst of NASTY_TEXT, which every text setting meets for sure (the property test draws only some of it).
SURE_TEXT = ["", " ", "0", "../../../etc/passwd", "$(rm -rf /)", "--upload-pack=touch /tmp/pwned", "http://h:99999",
             "http://[::1", "1e99", "9" * 400, "-5s", "\u202eevil", "a" * 5000, "[" * 5000]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.key)
def test_the_worst_values_meet_every_setting(setting, stack_file):
    """Through `pulumi up`'s door only: the property test holds the two doors to agreeing."""
    valid = example_value(setting)
    if setting.kind in ("string", "enum", "any") or setting.secret:
        values = SURE_TEXT
        mutated = _mutations(valid) if isinstance(valid, str) and valid else []
    else:
        values, mutated = [None, True, "x", 10**400, float("nan"), ["x"], {"noSuchKey": 1}], []
    for base, more in ((BASES["defaults"], mutated), (BASES["everything on"], [])):
        for value in values + more:
            check_one(setting, base, f"{MARKER}{value}" if setting.secret else value, stack_file=None)


# ---------------------------------------------------------------------------------------------------------
# The defects this test found, pinned one by one: (config, the key path a problem must name, words it must say)


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


REFUSED = [
    # Tracebacks before: AttributeError, RecursionError, OverflowError, and a problem naming no key at all.
    ({"airflowConnections": "[]"}, "airflowConnections", "must be a JSON object"),
    ({"airflowConnections": "[" * 100_000}, "airflowConnections", "must be a JSON object"),
    ({"quota": {"requestsCpu": "9" * 400}}, "quota.requestsCpu", "is more than"),
    ({"quota": {"limitsMemory": "9" * 400 + "Pi"}}, "quota.limitsMemory", "is more than 8Ei"),
    ({"s3": {"endpointUrl": "http://[::1"}}, "s3.endpointUrl", "invalid IPv6 address"),
    # A line break let through by `$` in a pattern: the value went on into names, tags and YAML.
    ({"instance": "dev\n"}, "instance", "DNS-1123 label"),
    ({"navbarColor": "#fff\n"}, "navbarColor", "CSS colour"),
    ({"airflowVersion": "3.3.2\n"}, "airflowVersion", "Airflow 3 version"),
    ({"airflowPythonVersion": "3.12\n"}, "airflowPythonVersion", "Python version"),
    ({"scheduler": {"resources": _resources("1\n", "1Gi", "2", "2Gi")}}, "scheduler.resources.requests.cpu", "CPU quantity"),
    ({"gitSync": {"image": "registry.k8s.io/git-sync/git-sync:v4.4.2\n"}}, "gitSync.image", "image reference"),
    # Numbers and quantities no cluster or service takes.
    ({"postgres": {"storageSize": "1000000Ti"}}, "postgres.storageSize", "more than 64Ti"),
    ({"postgres": {"storageSize": "0"}}, "postgres.storageSize", "more than 0"),
    ({"limitRange": {"enabled": False}, "taskPod": {"resources": _resources("1", "1Gi", "5000", "2Gi")}},
     "taskPod.resources.limits.cpu", "more than 4096 cores"),
    ({"scheduler": {"resources": _resources("0", "0", "0", "0")}}, "scheduler.resources", "must be more than 0"),
    ({"postgres": {"resources": _resources("1", "1Gi", "8", "1Gi")}}, "postgres.resources", "exceed limitRange.max"),
    ({"scheduler": {"replicas": True, "resources": _resources("1", "1Gi", "2", "2Gi")}}, "scheduler.replicas",
     "must be a number"),
    ({"executor": {"taskQueuedTimeoutSeconds": 10**12}}, "executor.taskQueuedTimeoutSeconds", "less than or equal"),
    ({"dbCleanup": {"retentionDays": 10**15}}, "dbCleanup.retentionDays", "less than or equal to 36500"),
    ({"postgres": {"poolerMaxClientConn": 10**9}}, "postgres.poolerMaxClientConn", "less than or equal"),
    ({"gitSync": {"depth": 10**12}}, "gitSync.depth", "less than or equal"),
    ({"quota": {"pods": 10**9}}, "quota.pods", "less than or equal to 150000"),
    ({"cost": {"cpuPerCoreMonth": float("inf")}}, "cost.cpuPerCoreMonth", "finite number"),
    ({"kerberos": {"ticketLifetime": "-5s"}}, "kerberos.ticketLifetime", "krb5 duration"),
    ({"kerberos": {"ticketLifetime": "10m"}}, "kerberos", "reinitFrequencySeconds (3600) must be shorter"),
    ({"metrics": {"scrapeInterval": "1h"}}, "metrics.scrapeInterval", "between 1s and 5m"),
    ({"s3": {"endpointUrl": "http://minio:99999"}}, "s3.endpointUrl", "invalid port number"),
    ({"kerberos": {"kdcs": ["kdc1:99999"]}}, "kerberos.kdcs.0", "port (1-65535)"),
    # Shell text, path traversal and option injection where a name, a path or a ref goes.
    ({"dbCleanup": {"tables": ["x; rm -rf /"]}}, "dbCleanup.tables.0", "table name"),
    ({"gitSync": {"subPath": "../../etc"}}, "gitSync.subPath", "no '..' segment"),
    ({"gitSync": {"ref": "--upload-pack=touch /tmp/pwned"}}, "gitSync.ref", "not starting with '-'"),
    ({"gitSync": {"repo": "https://git.example.org/$(id).git"}}, "gitSync.repo", "'$('"),
    ({"network": {"dnsNamespace": "$(rm -rf /)"}}, "network.dnsNamespace", "DNS-1123 label"),
    ({"auth": {"oidcProviderName": "../x"}}, "auth.oidcProviderName", "provider name"),
    ({"ingress": {"path": "airflow"}}, "ingress.path", "absolute URL path"),
    ({"ingress": {"path": "/a/../b"}}, "ingress.path", "'/../'"),
    ({"cost": {"currency": "$(rm -rf /)"}}, "cost.currency", "ISO 4217"),
    # A line break that starts another line of krb5.conf or postgresql.conf.
    ({"kerberos": {"realm": "EX.ORG\n[realms]"}}, "kerberos.realm", "Kerberos realm"),
    ({"postgres": {"parameters": {"max_connections": "200\nfsync = off"}}}, "postgres.parameters.max_connections",
     "one line"),
    ({"kubernetesRenderDir": "/tmp/x\x00y"}, "kubernetesRenderDir", "one line"),
    # Values Kubernetes, CloudNativePG or the identity provider would refuse during `pulumi up`, or never act on.
    ({"postgres": {"backups": {"schedule": "a b c d e f"}}}, "postgres.backups.schedule", "second 'a'"),
    ({"dbCleanup": {"schedule": "99 99 * * *"}}, "dbCleanup.schedule", "minute '99' is outside 0-59"),
    ({"placement": {"nodeSelector": {"bad key": "v"}}}, "placement.nodeSelector.bad key", "the key 'bad key'"),
    ({"placement": {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}}, "placement.tolerations.0",
     "Exists takes no value"),
    ({"network": {"taskPodEgressCidrs": ["10.0.0.0"]}}, "network.taskPodEgressCidrs.0", "prefix length"),
    ({"metrics": {"runbookUrl": "javascript:alert(1)"}}, "metrics.runbookUrl", "http:// or https:// URL"),
    ({"auth": {"mode": "ldap", "ldapUri": "http://ldap.example.org", "ldapSearchBase": "dc=example,dc=org"}},
     "auth.ldapUri", "ldap:// or ldaps:// URL"),
    ({"s3": {"logPrincipal": "logs-user"}}, "s3.logPrincipal", "not an ARN"),
    ({"postgres": {"restore": {"source": STACK, "targetTime": 5}}}, "postgres.restore.targetTime", "RFC 3339"),
    # Backups under the log prefix: the log lifecycle rule would expire them, the log key reach them.
    ({"postgres": {"backups": {"prefix": "logs"}}}, "postgres.backups.prefix", "overlaps s3.logPrefix"),
    ({"postgres": {"backups": {"prefix": ""}}}, "postgres.backups.prefix", "S3 key prefix"),
    # The key of a map is named as written, not camelCased (it was 'postgres.parameters.maxConnections').
    ({"postgres": {"parameters": {"max_connections": 5}}}, "postgres.parameters.max_connections", "valid string"),
    # Secrets: a line break at the end is part of the credential; the error never repeats it.
    ({"gitSyncToken": f"{MARKER}\n"}, "gitSyncToken", "one line"),
    ({"postgres": {"mode": "external"}, "postgresExternalUri": f"postgresql://u:{MARKER}@h:99999/db"},
     "postgresExternalUri", "invalid port number"),
]


@pytest.mark.parametrize("config, key, says", REFUSED, ids=[f"{key}-{i}" for i, (_, key, _) in enumerate(REFUSED)])
def test_each_defect_found_is_refused_with_the_setting_named(config, key, says):
    with pytest.raises(ConfigError) as caught:
        read_as_pulumi_up(config)
    named = [p for p in caught.value.problems if re.match(rf"{re.escape(PROJECT)}:{re.escape(key)}(?: = |: )", p)]
    assert named and says in named[0], caught.value.problems
    assert MARKER not in str(caught.value)
    assert all(not _UNPRINTABLE.search(problem) for problem in caught.value.problems)


def test_a_value_cannot_forge_a_problem_line():
    with pytest.raises(ConfigError) as caught:
        read_as_pulumi_up({"instance": "Dev\n  - airflow-platform:protect: fine"})
    assert "\n  - airflow-platform:protect" not in str(caught.value)
    assert caught.value.problems[0].startswith("airflow-platform:instance = 'Dev\\n  - ")


def test_a_task_pod_that_requests_nothing_still_has_its_quota_sized():
    """It was a ZeroDivisionError: how many task pods fit was divided by the task pod's request."""
    from components.settings import capacity

    settings_object = read_as_pulumi_up({"taskPod": {"resources": _resources("0", "0", "2", "2Gi")}})
    assert capacity.task_pods_that_fit(settings_object) == settings_object.quota.concurrent_tasks


SSH = {"gitSyncSshKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"}
KNOWN_HOSTS = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n"
ACCEPTED = [
    {"gitSync": {"enabled": True, "repo": "git@git.example.org:team/dags.git", "ref": "feature/JIRA-123_Big Thing",
                 "subPath": "/dags/", "knownHosts": KNOWN_HOSTS}, **SSH},
    {"gitSync": {"enabled": True, "repo": "ssh://git@git.example.org:2222/team/dags.git", "ref": "v1.2.3",
                 "knownHosts": KNOWN_HOSTS}, **SSH},
    {"ingress": {"enabled": True, "host": "*.example.org", "path": "/airflow",
                 "annotations": {"nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"A: b\";\n"}}},
    {"kerberos": {"enabled": True, "principal": "airflow@EX.ORG", "realm": "EX.ORG", "kdcs": ["[2001:db8::1]:88", "kdc2"],
                  "ticketLifetime": "10h30m", "renewLifetime": "604800"}, "kerberosKeytab": KEYTAB},
    {"kerberos": {"ticketLifetime": "10:30"}},
    {"postgres": {"parameters": {"shared_preload_libraries": "'$libdir/pg_stat_statements'", "search_path": ""}}},
    {"postgres": {"backups": {"schedule": "0 */30 1-5 ? JAN-MAR MON-FRI", "prefix": "pg/backups"}}},
    {"dbCleanup": {"schedule": "*/15 0-6 * * 1,3,5"}},
    {"placement": {"nodeSelector": {"kubernetes.io/hostname": "node-1"}, "tolerations": [{"operator": "Exists"}]}},
    {"network": {"taskPodEgressCidrs": ["10.0.0.0/8", "2001:db8::/32"]}},
    {"cost": {"currency": "€", "cpuPerCoreMonth": 0}},
    {"s3": {"endpointUrl": "http://127.0.0.1:9000", "podEndpointUrl": "http://[fd00::1]:9000", "region": "garage",
            "logPrincipal": "arn:aws:iam:::user/tenant$logs"}, "kubernetesRenderDir": "../rendered/dev"},
    {"postgres": {"restore": {"source": STACK, "bucket": "other-bucket", "targetTime": "2024-05-01T10:00:00+02:00"}}},
    {"auth": {"mode": "ldap", "ldapUri": "ldaps://ldap.example.org:636", "ldapSearchBase": "ou=people,dc=example,dc=org",
              "ldapBindDn": "cn=airflow,dc=example,dc=org", "ldapUidField": "sAMAccountName"},
     "authLdapBindPassword": "pass word with spaces"},
]


@pytest.mark.parametrize("config", ACCEPTED, ids=lambda config: ",".join(config))
def test_the_tightened_rules_still_take_what_works(config):
    read_as_pulumi_up(config)


# ---------------------------------------------------------------------------------------------------------
# The stack file door's own inputs


def test_check_reads_a_stack_file_as_pulumi_up_does(tmp_path):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    # A scalar is text to the engine: the instance name '0', not the number 0.
    path.write_text(f"config:\n  {PROJECT}:instance: 0\n")
    assert check_stack_file(path) == []
    # Two encrypted S3 keys are not the same key because neither can be read.
    path.write_text(f"config:\n  {PROJECT}:s3AccessKeyId: {{secure: v1:a}}\n  {PROJECT}:s3SecretAccessKey: {{secure: v1:b}}\n"
                    f"  {PROJECT}:s3LogAccessKeyId: {{secure: v1:c}}\n  {PROJECT}:s3LogSecretAccessKey: {{secure: v1:d}}\n")
    assert check_stack_file(path) == []
    # The rules that depend on the stack read the stack's name, not the instance the file sets.
    path.write_text(f"config:\n  {PROJECT}:instance: team-x\n")
    assert check_stack_file(path) == []


@pytest.mark.parametrize("text", ["config: [1, 2\n", "- just\n- a list\n", "config: 5\n", "config:\n  a: {b\n"])
def test_a_stack_file_that_is_not_a_mapping_is_one_problem(tmp_path, text):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    path.write_text(text)
    problems = check_stack_file(path)
    assert problems and all(path.name in problem or problem.startswith(PROJECT) for problem in problems), problems


# ---------------------------------------------------------------------------------------------------------
# Environment variables our tools read into a stack's config (envs: branch environments)


def _env_cases():
    from envs.branch_config import SECRET_ENV

    return [("AIRFLOW_DAGS_REPO", "gitSync.repo"), *((var, key) for key, var in SECRET_ENV.items())]


@pytest.mark.parametrize("variable, key", _env_cases(), ids=[var for var, _ in _env_cases()])
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40)))
def test_a_hostile_environment_variable_is_a_config_problem_by_name(variable, key, value):
    """`python -m envs` reads AIRFLOW_DAGS_REPO and the AIRFLOW_PLATFORM_* secrets into a branch stack's config
    and checks it with the model before any engine runs: a bad value is a problem naming the key it feeds."""
    from envs.branch_config import SECRET_ENV, branch_config, config_problems

    # Every other variable set and valid (one git credential only), so that only this one can be wrong.
    env = {var: f"valid-{var}" for key_, var in SECRET_ENV.items() if key_ != "gitSyncSshKey"}
    env["AIRFLOW_DAGS_REPO"] = "https://git.example.org/team/dags.git"
    if variable == SECRET_ENV["gitSyncSshKey"]:
        del env[SECRET_ENV["gitSyncToken"]]

    def problems_with(text: str) -> list[str]:
        _, plain, secrets = branch_config("feature/x", dags_repo=None, env={**env, variable: text})
        return config_problems(plain, secrets)

    hostile_text = value if key == "gitSync.repo" else f"{MARKER}{value}"
    try:
        problems = problems_with(hostile_text)
    except ValueError as error:  # the CLI prints it: no repository at all
        assert not value and "AIRFLOW_DAGS_REPO" in str(error)
        return
    for problem in problems:
        assert not _UNPRINTABLE.search(problem) and MARKER not in problem, problem
    already = problems_with(env.get(variable, "valid"))
    assert all(problem.startswith(f"{PROJECT}:{key}") for problem in problems if problem not in already), problems
