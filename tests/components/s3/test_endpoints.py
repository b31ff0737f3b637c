"""Two S3 endpoints: the one `pulumi up` provisions the bucket through (`s3.endpointUrl`) and the one pods are
told (`s3.podEndpointUrl`, default the first): the log connection, the database's backups and restores, and
task pods' egress. A loopback address is fine for provisioning (the embedded default's local S3) but is the pod
itself in a pod: refused on a stack that deploys, allowed when rendering, and scripts/local-up says what the
rendered pods are told."""


import json
import sys

import pytest

from components.settings import ConfigError, parse_settings
from testbed.harness import ROOT, run_stack
from testbed.runs import dev
from testbed.stacks import TEST_SECRETS, stack_file_config

sys.path.insert(0, str(ROOT / "scripts"))
import local_up  # noqa: E402

HOST = "http://127.0.0.1:9000"  # where `pulumi up` reaches the store
POD = "http://10.244.0.1:9000"  # where pods reach it


def dev_with_s3(s3: dict, **config):
    return dev({"s3": {**stack_file_config("dev")["s3"], **s3}, **config}, TEST_SECRETS)


def problems(s3: dict, **config) -> str:
    with pytest.raises(ConfigError) as error:
        parse_settings({"instance": "dev", "s3": s3, **config}, stack="dev")
    return str(error.value)


# --- refused at config time ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000", "http://127.3.2.1", "https://[::1]:9000", "http://localhost:9000",
                                 "http://LOCALHOST.:9000", "http://s3.localhost", "http://0.0.0.0:9000",
                                 "http://[::ffff:127.0.0.1]:9000"])
def test_a_loopback_endpoint_for_pods_is_refused_on_a_stack_that_deploys_naming_the_setting(url):
    inherited = problems({"endpointUrl": url})
    assert f"airflow-platform:s3.podEndpointUrl: '{url}' (unset, so s3.endpointUrl) is a loopback address" in inherited
    assert "loopback (127.0.0.0/8, ::1, localhost) is allowed only when rendering (kubernetesRenderDir)" in inherited
    assert "pulumi config set --path 's3.podEndpointUrl' <value>" in inherited
    assert f"airflow-platform:s3.podEndpointUrl: '{url}' is a loopback address" in problems(
        {"endpointUrl": "https://rgw.example.org", "podEndpointUrl": url})


@pytest.mark.parametrize("s3", [{"endpointUrl": HOST, "podEndpointUrl": POD}, {"endpointUrl": POD},
                                {"endpointUrl": "http://127.example.org"}, {"endpointUrl": "http://minio.minio.svc:9000"}, {}])
def test_an_endpoint_pods_can_reach_is_accepted(s3):
    assert parse_settings({"instance": "dev", "s3": s3}, stack="dev").s3.pod_endpoint == (
        s3.get("podEndpointUrl") or s3.get("endpointUrl"))


def test_rendering_only_writes_the_endpoint_down_so_a_loopback_one_is_accepted():
    settings = parse_settings({"instance": "dev", "s3": {"endpointUrl": HOST}, "kubernetesRenderDir": "/tmp/r"}, stack="dev")
    assert settings.s3.pod_endpoint == HOST


def test_the_pod_endpoint_must_be_a_url():
    assert "airflow-platform:s3.podEndpointUrl = '10.0.0.1:9000': '10.0.0.1:9000' must be an http:// or https:// URL" in (
        problems({"podEndpointUrl": "10.0.0.1:9000"}))


# --- provisioning and pods each get their own ---------------------------------------------------------------


def test_the_bucket_is_provisioned_through_the_endpoint_url_and_pods_are_told_the_pod_endpoint():
    run = dev_with_s3({"endpointUrl": HOST, "podEndpointUrl": POD}, postgres={"backups": {"enabled": True}})
    bucket = next(r for r in run.resources if r.type == "pulumi-python:dynamic:S3Bucket")
    assert bucket.inputs["endpoint_url"] == HOST
    log = json.loads(run.one("Secret", "-connections").inputs["stringData"]["connections.json"])["s3_logs"]
    assert log["extra"]["endpoint_url"] == POD
    (store,) = run.of_kind("ObjectStore")
    assert store.inputs["spec"]["configuration"]["endpointURL"] == POD
    # Task pods upload their logs there, whatever taskPodEgressCidrs allows.
    egress = next(p for p in run.of_kind("NetworkPolicy") if p.k8s_name == "dev-task-egress").inputs["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}], "ports": [{"port": 9000, "protocol": "TCP"}]} in egress
    assert HOST not in json.dumps([r.inputs for r in run.resources if r.type.startswith("kubernetes:")])


def test_a_restore_reads_the_archive_through_the_pod_endpoint():
    run = run_stack({"s3": {"endpointUrl": "https://rgw.example.org", "podEndpointUrl": "http://rgw.rgw.svc"},
                     "postgres": {"backups": {"enabled": False}, "restore": {"source": "prod"}}},
                    dict(TEST_SECRETS), stack="br-feature-x-1a2b3c")
    (store,) = run.of_kind("ObjectStore")
    # prod's own stack file names no endpoint (AWS): the restore reads prod's, not this stack's.
    assert "endpointURL" not in store.inputs["spec"]["configuration"]
    own = run_stack({"s3": {"endpointUrl": "https://rgw.example.org", "podEndpointUrl": "http://rgw.rgw.svc"},
                     "postgres": {"restore": {"source": "br-feature-x-1a2b3c"}, "backups": {"serverName": "b-pg-2"}}},
                    dict(TEST_SECRETS), stack="br-feature-x-1a2b3c")
    assert {s.inputs["spec"]["configuration"]["endpointURL"] for s in own.of_kind("ObjectStore")} == {"http://rgw.rgw.svc"}


def test_without_a_pod_endpoint_pods_are_told_the_endpoint_url():
    run = dev_with_s3({"endpointUrl": "https://rgw.example.org"})
    log = json.loads(run.one("Secret", "-connections").inputs["stringData"]["connections.json"])["s3_logs"]
    assert log["extra"]["endpoint_url"] == "https://rgw.example.org"


@pytest.mark.parametrize("url, rule", [
    ("https://[fd00::5]", {"to": [{"ipBlock": {"cidr": "fd00::5/128"}}], "ports": [{"port": 443, "protocol": "TCP"}]}),
    # A Service's port need not be its pods' (the policy sees the pods'): its namespace, any port.
    ("http://minio.storage.svc.cluster.local:9000",
     {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}]}),
    ("https://s3.eu-west-1.amazonaws.com", None),  # a name outside the cluster: taskPodEgressCidrs alone
])
def test_task_pods_may_reach_the_pod_endpoint_where_a_network_policy_can_name_it(url, rule):
    run = dev_with_s3({"endpointUrl": url}, network={"taskPodEgressCidrs": []}, metrics={"enabled": False})
    egress = next(p for p in run.of_kind("NetworkPolicy") if p.k8s_name == "dev-task-egress").inputs["spec"]["egress"]
    assert len(egress) == (3 if rule else 2)  # DNS, the api-server, (S3)
    if rule:
        assert egress[2] == rule


# --- scripts/local-up says what the pods are told -------------------------------------------------------------


def test_local_up_warns_that_pods_are_told_its_loopback_endpoint_and_says_how_to_change_it():
    notice = local_up.pod_endpoint_notice({"endpointUrl": HOST}, HOST)
    assert notice.startswith(f"WARNING: pods are told S3 is at {HOST} (s3.podEndpointUrl is unset, so s3.endpointUrl)")
    assert "podEndpointUrl: http://<an address pods reach>:<port>" in notice
    assert local_up.pod_endpoint_notice({"endpointUrl": HOST, "podEndpointUrl": POD}, HOST) == (
        f"Pods are told S3 is at {POD} (s3.podEndpointUrl): the log connection and the database's backups.")
