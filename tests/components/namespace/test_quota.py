"""The ResourceQuota and the executor: a quota that holds the control plane plus the tasks it promises, and the
capacity model that counts exactly the pods the program renders."""

import pytest

from components.settings import capacity, parse_settings
from components.settings.docs import stacks_capacity_markdown
from testbed.harness import ROOT
from testbed.runs import dev, refused, stack
from testbed.stacks import TEST_SECRETS, stack_file_config

STACKS = ("dev", "prod", "team-analytics", "team-search")


def test_a_pod_refused_by_the_quota_waits_instead_of_failing_its_task():
    env = stack("dev").one("ConfigMap", "-config").inputs["data"]
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__TASK_PUBLISH_MAX_RETRIES"] == "-1"


def rendered_need(run):
    """The quota-relevant requests of what the program renders, counted independently of capacity.py."""
    from components.settings.rules import cpu_cores, memory_bytes

    def pod_need(spec, replicas):
        def total(items):
            return (sum(cpu_cores(c["resources"]["requests"]["cpu"]) for c in items),
                    sum(memory_bytes(c["resources"]["requests"]["memory"]) for c in items))
        cpu, mem = total(spec["containers"])
        for init in spec.get("initContainers", []):
            icpu, imem = total([init])
            cpu, mem = max(cpu, icpu), max(mem, imem)
        return cpu * replicas, mem * replicas

    needs = []
    for d in run.of_kind("Deployment"):
        needs.append(pod_need(d.inputs["spec"]["template"]["spec"], d.inputs["spec"]["replicas"] + 1))
    for job in run.of_kind("Job"):
        needs.append(pod_need(job.inputs["spec"]["template"]["spec"], 1))
    for cron in run.of_kind("CronJob"):
        needs.append(pod_need(cron.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"], 1))
    cluster = run.one("Cluster").inputs["spec"]
    sidecar = [run.one("ObjectStore").inputs["spec"]["instanceSidecarConfiguration"]] if run.of_kind("ObjectStore") else []
    needs.append(pod_need({"containers": [cluster, *sidecar]}, cluster["instances"]))
    pooler = run.one("Pooler").inputs["spec"]
    needs.append(pod_need(pooler["template"]["spec"], pooler["instances"] + 1))
    return sum(n[0] for n in needs), sum(n[1] for n in needs)


@pytest.mark.parametrize("name", STACKS)
def test_the_capacity_model_counts_exactly_the_pods_the_program_renders(name):
    settings = parse_settings({"instance": name, **stack_file_config(name), **TEST_SECRETS}, stack=name)
    need = capacity.control_plane(settings)
    cpu, memory = rendered_need(stack(name))
    assert need.requests_cpu == pytest.approx(cpu) and need.requests_memory == pytest.approx(memory)


def test_the_default_quota_holds_the_control_plane_plus_the_stated_concurrent_tasks():
    settings = parse_settings({"instance": "dev", "quota": {"concurrentTasks": 10}}, stack="dev")
    assert capacity.task_pods_that_fit(settings) == 10


def test_a_quota_that_cannot_hold_the_control_plane_and_one_task_is_refused():
    message = refused({"quota": {"requestsCpu": "2"}})
    assert "quota: cannot hold the control plane" in message and "requests.cpu 2 <" in message


def test_the_capacity_page_shows_each_stacks_capacity():
    assert stacks_capacity_markdown() in (ROOT / "docs" / "capacity-and-cost.md").read_text(), (
        "run: scripts/gen-docs"
    )
