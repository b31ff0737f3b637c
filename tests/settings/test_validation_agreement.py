"""Our config validation agrees with the API server's: every setting that becomes a Kubernetes label value,
name, host or image reference is checked when the config is read, by the server's own rules, so a value the
cluster would refuse stops `pulumi up` before anything is created instead of half-way through.

The quick tests pin what config validation says; the slow ones ask a real API server (server-side dry-run):
for each value we accept, the server accepts every object the program renders with it and the object the
value finally lands in; for each value we refuse, the server refuses that object too.
"""

from __future__ import annotations

import pytest

from components.settings import ConfigError, parse_settings
from testbed.harness import run_stack
from testbed.manifests import _integers, manifests, task_pod_template
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS, stack_file_config

INSTANCE = "br-agree-0a1b2c"  # a branch stack: the development login is allowed there
NAMESPACE = f"airflow-{INSTANCE}"
DIGEST = "sha256:" + "a" * 64


def _ingress(**values):
    return {"ingress": {"enabled": True, "host": "airflow.example.org", **values}}


# setting → (config carrying a value, values we accept, values we refuse)
SETTINGS = {
    "team": (lambda v: {"team": v},
             ["analytics", "Data_Eng.2", "a" * 63],
             ["a" * 70, "data eng", "-analytics", "analytics.", "équipe"]),
    "postgres.storageClass": (lambda v: {"postgres": {"storageClass": v}},
                              ["fast-ssd", "ceph.rbd.example"],
                              ["Bad_Class", "fast ssd", "Fast", "a" * 254]),
    "kerberos.ccacheStorageClass": (lambda v: {"kerberos": {**KERBEROS_CONFIG["kerberos"], "ccacheStorageClass": v}},
                                    ["cephfs"],
                                    ["Bad_Class", "ceph fs"]),
    "ingress.host": (lambda v: _ingress(host=v),
                     ["airflow.example.org", "*.example.org", "a" * 63 + ".example.org"],
                     ["air flow.example.org", "Airflow.example.org", "10.0.0.1", "airflow.example.org."]),
    "ingress.className": (lambda v: _ingress(className=v), ["nginx", "nginx.example.org"], ["Nginx", "nginx class"]),
    "ingress.tlsSecretName": (lambda v: _ingress(tlsSecretName=v), ["airflow-tls"], ["airflow_tls", "Airflow-TLS"]),
    "gitSync.image": (lambda v: {"gitSync": {"enabled": True, "repo": "https://git.example.org/dags.git", "image": v}},
                      ["registry.k8s.io/git-sync/git-sync:v4.4.2", f"localhost:5000/git-sync@{DIGEST}"],
                      [" registry.k8s.io/git-sync/git-sync:v4.4.2", "registry.k8s.io/git-sync/git-sync:v4.4.2 "]),
    "airflowImage": (lambda v: {"airflowImage": v},
                     ["apache/airflow", "registry.example.org:5000/team/airflow"],
                     [" apache/airflow"]),
    "postgres.storageSize": (lambda v: {"postgres": {"storageSize": v}},
                             ["5Gi", "1.5Ti", "500M"],
                             ["5 Gi", "5GB", "-5Gi", "five"]),
    "taskPod.resources.requests.cpu": (
        lambda v: {"taskPod": {"resources": {"requests": {"cpu": v, "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}}},
        ["250m", "0.5", "2"],
        ["250 m", "0.5cores", "-1"]),
}
# Refused by the runtime's image-reference grammar (a kubelet reports InvalidImageName), which the API server
# does not apply: config validation refuses them, and the server cannot be asked.
RUNTIME_REFUSED_IMAGES = {
    "gitSync.image": ["registry.k8s.io/git sync:v4", "Registry.k8s.io/Git-Sync:v4"],
    "airflowImage": ["apache/air flow", "Apache/Airflow"],
}
CASES = [(s, v, True) for s, (_, ok, _) in SETTINGS.items() for v in ok]
CASES += [(s, v, False) for s, (_, _, bad) in SETTINGS.items() for v in bad]


def config_for(setting: str, value: str) -> dict:
    return {**stack_file_config("dev"), "instance": INSTANCE, **SETTINGS[setting][0](value)}


def secrets_for(setting: str) -> dict:
    return {**TEST_SECRETS, **({"kerberosKeytab": KEYTAB_B64} if setting.startswith("kerberos") else {})}


def config_accepts(setting: str, value: str) -> bool:
    try:
        parse_settings({**config_for(setting, value), **secrets_for(setting)})
    except ConfigError as error:
        assert any(f"airflow-platform:{setting}" in problem for problem in error.problems), error.problems
        return False
    return True


@pytest.mark.parametrize("setting,value,accepted", CASES + [(s, v, False) for s, vs in RUNTIME_REFUSED_IMAGES.items() for v in vs])
def test_config_validation_judges_each_value(setting, value, accepted):
    assert config_accepts(setting, value) is accepted


@pytest.mark.parametrize("value,accepted", [
    ("#d9534f", True), ("#fff", True), ("red", True), ("RebeccaPurple", True), ("rgb(217, 83, 79)", True),
    ("#ggg", False), ("notacolour", False), ("red; background: url(x)", False), ("", False),
])
def test_navbar_colour_must_be_a_css_colour(value, accepted):
    try:
        parse_settings({"instance": "dev", "navbarColor": value})
    except ConfigError as error:
        assert not accepted and "airflow-platform:navbarColor" in str(error)
    else:
        assert accepted


# --- what the API server says -----------------------------------------------------------------------------------


def landing_objects(setting: str, value: str, pod: dict) -> list[dict]:
    """The object the value finally lands in, where the API server judges it (the storage class of a CNPG
    Cluster reaches the server only in the PVCs the operator makes)."""
    meta = {"name": "probe", "namespace": NAMESPACE}
    if setting == "team":
        return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "labels": {"airflow-platform/team": value}}}]
    if setting.endswith("orageClass") or setting == "postgres.storageSize":
        claim = {"storageClassName": value} if setting.endswith("orageClass") else {}
        size = value if setting == "postgres.storageSize" else "1Gi"
        return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": {
            **claim, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}]
    if setting == "taskPod.resources.requests.cpu":
        container = pod["spec"]["containers"][0]
        resources = {"requests": {"cpu": value, "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
        spec = {**pod["spec"], "containers": [{**container, "resources": resources}]}
        return [{**pod, "metadata": {**pod["metadata"], "name": "probe"}, "spec": spec}]
    backend = {"service": {"name": "probe", "port": {"number": 8080}}}
    if setting == "ingress.host":
        return [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": {
            "tls": [{"hosts": [value], "secretName": "probe"}],
            "rules": [{"host": value, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}}]
    if setting == "ingress.className":
        return [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
                 "spec": {"ingressClassName": value, "defaultBackend": backend}}]
    if setting == "ingress.tlsSecretName":
        return [{"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": value}, "stringData": {"tls.crt": "x"}}]
    image = f"{value}:3.3.2-python3.12" if setting == "airflowImage" else value
    spec = {**pod["spec"], "containers": [{**pod["spec"]["containers"][0], "image": image}]}
    return [{**pod, "metadata": {**pod["metadata"], "name": "probe"}, "spec": spec}]


@pytest.fixture(scope="module")
def agreement_namespace(kube_api):
    run = run_stack(config_for("team", "analytics"), dict(TEST_SECRETS), stack=INSTANCE)
    namespace = next(d for d in manifests(run) if d["kind"] == "Namespace")
    assert kube_api.ensure(namespace).ok
    account = next(d for d in manifests(run) if d["kind"] == "ServiceAccount" and d["metadata"]["name"].endswith("-task"))
    assert kube_api.ensure(account).ok
    return task_pod_template(run)


@pytest.mark.slow
@pytest.mark.parametrize("setting,value,accepted", CASES)
def test_what_config_validation_accepts_the_api_server_accepts_and_what_it_refuses_the_server_refuses(
    kube_api, agreement_namespace, setting, value, accepted
):
    assert config_accepts(setting, value) is accepted
    objects = landing_objects(setting, value, agreement_namespace)
    if accepted:
        # Everything the program renders with the value, then where it lands.
        run = run_stack(config_for(setting, value), secrets_for(setting), stack=INSTANCE)
        # (less the two the fixture created for real: a dry-run create of those says AlreadyExists).
        already = {("Namespace", NAMESPACE), ("ServiceAccount", f"{INSTANCE}-task")}
        objects = [d for d in manifests(run) if (d["kind"], d["metadata"]["name"]) not in already] + objects
    answers = [(d, kube_api.create(_integers(d), dry_run=True)) for d in objects]
    if accepted:
        refused = [f"{d['kind']}/{d['metadata']['name']}: {r.body.get('message')} {r.warnings}"
                   for d, r in answers if not r.ok or r.warnings]
        assert refused == []
    else:
        (document, answer), = answers
        # 422: invalid; 400: not even decodable (a malformed quantity).
        assert answer.status in (400, 422), f"the server did not refuse {setting}={value!r} in {document['kind']}: {answer.body}"
