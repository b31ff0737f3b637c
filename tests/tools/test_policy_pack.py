"""The policy pack's rules on good and bad resources, and our own program passing all of them."""

from __future__ import annotations

import copy
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.settings import ConfigError
from policy import rules
from policy.rules import UNKNOWN, Checked
from testbed.harness import ROOT, run_stack
from testbed.stacks import TEST_SECRETS, stack_file_config

SAFE_CONTAINER = {
    "name": "app",
    "image": "apache/airflow:3.3.2-python3.12",
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def deployment(**pod_changes) -> Checked:
    spec = {"containers": [copy.deepcopy(SAFE_CONTAINER)], **pod_changes}
    return Checked("kubernetes:apps/v1:Deployment", {"metadata": {"name": "web"}, "spec": {"template": {"spec": spec}}})


def cronjob(container: dict) -> Checked:
    spec = {"containers": [container]}
    return Checked("kubernetes:batch/v1:CronJob", {"metadata": {"name": "cleanup"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}})


def with_changes(**changes) -> dict:
    container = copy.deepcopy(SAFE_CONTAINER)
    for key, value in changes.items():
        if value is None:
            container.pop(key, None)
        else:
            container[key] = value
    return container


def test_a_safe_workload_passes_every_rule():
    assert rules.check(deployment()) == {}


# --- resources -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"])
def test_each_missing_request_or_limit_fails(missing):
    container = copy.deepcopy(SAFE_CONTAINER)
    section, quantity = missing.split(".")
    del container["resources"][section][quantity]
    assert rules.container_resources(cronjob(container)) == [f"CronJob 'cleanup': container 'app' has no resources.{missing}"]


def test_init_containers_need_resources_too():
    init = with_changes(name="wait", resources=None)
    problems = rules.container_resources(deployment(initContainers=[init]))
    assert problems == [
        "Deployment 'web': initContainer 'wait' has no resources.requests.cpu, resources.requests.memory, "
        "resources.limits.cpu, resources.limits.memory"
    ]


@pytest.mark.parametrize("type_", ["kubernetes:core/v1:Pod", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job"])
def test_every_workload_kind_is_checked(type_):
    spec = {"containers": [with_changes(resources=None)]}
    props = {"spec": spec} if type_.endswith("Pod") else {"spec": {"template": {"spec": spec}}}
    assert rules.container_resources(Checked(type_, props))


# --- pod security --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "context_change, expected",
    [
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation: false"),
        ({"allowPrivilegeEscalation": None}, "allowPrivilegeEscalation: false"),
        ({"capabilities": {"drop": ["NET_RAW"]}}, "drop ALL capabilities"),
        ({"capabilities": None}, "drop ALL capabilities"),
        ({"runAsNonRoot": False}, "runAsNonRoot: true"),
        ({"runAsNonRoot": None}, "runAsNonRoot: true"),
        ({"runAsUser": 0}, "uid 0"),
        ({"seccompProfile": {"type": "Unconfined"}}, "seccompProfile"),
        ({"seccompProfile": None}, "seccompProfile"),
        ({"privileged": True}, "is privileged"),
    ],
)
def test_each_restricted_requirement_fails_on_its_own(context_change, expected):
    context = copy.deepcopy(SAFE_CONTAINER["securityContext"])
    for key, value in context_change.items():
        if value is None:
            context.pop(key, None)
        else:
            context[key] = value
    problems = rules.pod_security_restricted(deployment(containers=[with_changes(securityContext=context)]))
    assert len(problems) == 1 and expected in problems[0], problems


def test_pod_level_run_as_non_root_and_seccomp_count():
    context = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    pod = {"runAsNonRoot": True, "runAsUser": 50000, "seccompProfile": {"type": "RuntimeDefault"}}
    checked = deployment(containers=[with_changes(securityContext=context)], securityContext=pod)
    assert rules.pod_security_restricted(checked) == []


@pytest.mark.parametrize(
    "pod_change, expected",
    [
        ({"hostNetwork": True}, "hostNetwork is true"),
        ({"hostPID": True}, "hostPID is true"),
        ({"volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]}, "volume 'docker' is a hostPath"),
    ],
)
def test_host_namespaces_and_host_paths_fail(pod_change, expected):
    assert rules.pod_security_restricted(deployment(**pod_change)) == [f"Deployment 'web': {expected}"]


def test_init_container_without_security_context_fails():
    problems = rules.pod_security_restricted(deployment(initContainers=[with_changes(name="init", securityContext=None)]))
    assert problems and all("initContainer 'init'" in p for p in problems)


def test_values_unknown_during_preview_do_not_fail():
    container = with_changes(image=UNKNOWN, resources=UNKNOWN, securityContext=UNKNOWN)
    assert rules.check(deployment(containers=[container])) == {}


# --- images --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, ok",
    [
        ("apache/airflow:3.3.2-python3.12", True),
        ("registry.k8s.io/git-sync/git-sync:v4.4.2", True),
        ("registry.example.org:5000/team/app:1.0", True),
        ("busybox@sha256:" + "a" * 64, True),
        ("apache/airflow:latest", False),
        ("apache/airflow:LATEST", False),
        ("apache/airflow", False),
        ("registry.example.org:5000/team/app", False),
        ("", False),
        (None, False),
    ],
)
def test_images_need_a_pinned_tag_or_digest(image, ok):
    container = with_changes(image=image) if image is not None else with_changes(image=None)
    assert (rules.pinned_image_tags(deployment(containers=[container])) == []) is ok


# --- ConfigMaps ----------------------------------------------------------------------------------------------


def configmap(data: dict) -> Checked:
    return Checked("kubernetes:core/v1:ConfigMap", {"metadata": {"name": "cfg"}, "data": data})


@pytest.mark.parametrize(
    "key",
    [
        "DB_PASSWORD",
        "password",
        "dbPassword",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "github_token",
        "tls.private-key",
        "apiKey",
    ],
)
def test_secret_looking_keys_fail(key):
    assert rules.no_secrets_in_configmaps(configmap({key: "x"})) == [
        f"ConfigMap 'cfg': key '{key}' looks like a secret; put it in a Secret"
    ]


@pytest.mark.parametrize(
    "key",
    [
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "AIRFLOW__SECRETS__BACKEND",
        "AIRFLOW__SECRETS__BACKEND_KWARGS",
        "pod_template.yaml",
        "tokenizer_model",
        "ca-bundle.pem",
    ],
)
def test_keys_that_only_point_at_secrets_pass(key):
    assert rules.no_secrets_in_configmaps(configmap({key: "/path/or/command"})) == []


@pytest.mark.parametrize(
    "value, found",
    [
        ("-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n", "a PEM private key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n", "a PEM private key"),
        ("-----BEGIN RSA PRIVATE KEY-----\n", "a PEM private key"),
        ("postgresql://airflow:hunter2@db:5432/airflow", "a URL with a password"),
        ("conn: redis://default:s3cret@redis:6379/0", "a URL with a password"),
    ],
)
def test_credential_values_fail_under_any_key(value, found):
    assert rules.no_secrets_in_configmaps(configmap({"settings": value})) == [
        f"ConfigMap 'cfg': the value of 'settings' contains {found}; put it in a Secret"
    ]


def test_ca_bundles_and_urls_without_passwords_pass():
    data = {
        "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
        "url": "https://user@git.example.org/dags.git",
        "db": "postgresql://db:5432/airflow",
    }
    assert rules.no_secrets_in_configmaps(configmap(data)) == []


# --- protection on every long-lived stack ---------------------------------------------------------------------

CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
BUCKET = "pulumi-python:dynamic:S3Bucket"
NAMESPACE = "kubernetes:core/v1:Namespace"


@pytest.mark.parametrize("type_", [CLUSTER, BUCKET, NAMESPACE])
@pytest.mark.parametrize(
    "stack, must_protect",
    [("prod", True), ("prod-eu", True), ("team-analytics", True), ("production", True), ("staging", True),
     ("localprod", True), ("dev", False), ("local", False), ("local-search", False), ("br-prod-x-aaaaaa", False)],
)
def test_database_its_namespace_and_bucket_must_be_protected_on_every_stack_but_dev_local_and_branches(type_, stack, must_protect):
    assert rules.stateful_protected(Checked(type_, {}, stack=stack, protect=True, name="x")) == []
    assert bool(rules.stateful_protected(Checked(type_, {}, stack=stack, protect=False, name="x"))) is must_protect


def test_other_resources_need_no_protection():
    assert rules.stateful_protected(Checked("kubernetes:core/v1:ConfigMap", {}, stack="team-search")) == []


def test_branch_environments_are_named_with_the_prefix_the_pack_treats_as_disposable():
    from envs.naming import branch_instance_name

    assert rules.is_disposable_stack(branch_instance_name("feature/x"))


# --- our program passes the pack ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod", "team-analytics", "team-search"])
def test_our_program_passes_every_rule(stack):
    run = run_stack(stack_file_config(stack), TEST_SECRETS, stack=stack)
    checked = [Checked(r.type, r.inputs, rules.stack_of_urn(r.urn), r.protect, r.name) for r in run.resources]
    assert {c.stack for c in checked} == {stack}
    assert {name: found for c in checked if (found := rules.check(c)) for name in [c.name]} == {}
    # The rules actually looked at something: workloads, ConfigMaps and (on prod) protected state.
    assert sum(1 for c in checked if rules.pod_spec(c)) >= 5
    assert any(c.kind == "ConfigMap" for c in checked)
    if stack != "dev":
        stateful = [c for c in checked if c.type in rules.STATEFUL_TYPES]
        assert {c.type for c in stateful} == set(rules.STATEFUL_TYPES) and all(c.protect for c in stateful)


def test_an_unprotected_database_and_bucket_would_be_refused_on_a_team_stack():
    run = run_stack(stack_file_config("dev"), TEST_SECRETS, stack="dev")
    refused = [r.type for r in run.resources if rules.stateful_protected(Checked(r.type, r.inputs, "team-x", r.protect, r.name))]
    assert sorted(refused) == sorted(rules.STATEFUL_TYPES)


@pytest.mark.parametrize("stack", ["prod", "team-analytics", "team-search"])
def test_long_lived_stacks_protect_by_default_and_refuse_to_turn_it_off(stack):
    run = run_stack(stack_file_config(stack), TEST_SECRETS, stack=stack)
    stateful = [r for r in run.resources if r.type in rules.STATEFUL_TYPES]
    assert {r.type for r in stateful} == set(rules.STATEFUL_TYPES)
    assert all(r.protect and r.retain_on_delete for r in stateful)
    with pytest.raises(ConfigError, match="protect: stack '.*' is long-lived"):
        run_stack({**stack_file_config(stack), "protect": False}, TEST_SECRETS, stack=stack)


def test_policy_pack_project_runs_python_in_the_project_venv():
    project = yaml.safe_load(Path(ROOT, "policy/PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert (Path(ROOT, "policy") / project["runtime"]["options"]["virtualenv"]).resolve() == Path(ROOT, ".venv").resolve()
    assert "pulumi-policy==" in Path(ROOT, "policy/requirements.txt").read_text()


@pytest.fixture
def pack(monkeypatch):
    """policy/__main__.py run as the engine runs it (the pack's directory on sys.path), with the PolicyPack
    it builds captured instead of served."""
    import pulumi_policy

    built = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    monkeypatch.syspath_prepend(str(ROOT / "policy"))
    monkeypatch.delitem(sys.modules, "rules", raising=False)
    namespace = runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    return SimpleNamespace(**built, plain=namespace["plain"], rules=namespace["rules"])


def validate(policy, type_: str, props: dict, stack: str = "dev", protect: bool = False) -> list[str]:
    """The violations `policy` reports for one resource, given the way the engine gives it."""
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    urn = f"urn:pulumi:{stack}::airflow-platform::{type_}::x"
    opts = PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), urn, "x", opts, None)
    found = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
BAD_RESOURCE = {
    "container-resources": (DEPLOYMENT, {"containers": [with_changes(resources=None)]}, "dev"),
    "pod-security-restricted": (DEPLOYMENT, {"containers": [copy.deepcopy(SAFE_CONTAINER)], "hostPID": True}, "dev"),
    "no-secrets-in-configmaps": ("kubernetes:core/v1:ConfigMap", {"DB_PASSWORD": "x"}, "dev"),
    "stateful-protected": (CLUSTER, {}, "prod"),
    "pinned-image-tags": (DEPLOYMENT, {"containers": [with_changes(image="apache/airflow:latest")]}, "dev"),
}


def props_of(type_: str, content: dict) -> dict:
    if type_ == DEPLOYMENT:
        return {"metadata": {"name": "web"}, "spec": {"template": {"spec": content}}}
    if type_.endswith("ConfigMap"):
        return {"metadata": {"name": "cfg"}, "data": content}
    return {"metadata": {"name": "db"}, "spec": content}


def test_the_pack_registers_every_rule_as_mandatory(pack):
    from pulumi_policy import EnforcementLevel

    assert pack.name == "airflow-platform" and pack.enforcement_level == EnforcementLevel.MANDATORY
    assert [policy.name for policy in pack.policies] == list(rules.RULES)
    assert all(policy.enforcement_level == EnforcementLevel.MANDATORY for policy in pack.policies)


def test_each_policy_of_the_pack_rejects_a_bad_resource_and_passes_a_good_one(pack):
    for policy in pack.policies:
        type_, content, stack = BAD_RESOURCE[policy.name]
        assert validate(policy, type_, props_of(type_, content), stack), policy.name
        good = {"containers": [copy.deepcopy(SAFE_CONTAINER)]} if type_ == DEPLOYMENT else {}
        assert validate(policy, type_, props_of(type_, good), stack, protect=True) == [], policy.name


def test_a_value_unknown_during_preview_fails_no_policy_of_the_pack(pack):
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    unknown = {"containers": [with_changes(image=UNKNOWN_STRING_VALUE, resources=UNKNOWN_STRING_VALUE)]}
    props = props_of(DEPLOYMENT, unknown)
    assert pack.plain(unknown_checking_proxy(props))["spec"]["template"]["spec"]["containers"][0]["image"] is pack.rules.UNKNOWN
    assert {policy.name: validate(policy, DEPLOYMENT, props) for policy in pack.policies} == {name: [] for name in rules.RULES}
