"""The task pod template goes through the KubernetesExecutor's own loading and reconciling in Airflow 3.3.2, and
comes out as we wrote it.
"""

from __future__ import annotations

import pytest

from tests.airflow.rendered_stacks import ALL_STACKS, probed

pytestmark = pytest.mark.slow


@ALL_STACKS
def test_the_executor_loads_our_pod_template_and_keeps_it_when_building_task_pods(probes, stacks, stack):
    rendered = stacks[stack]
    template = rendered.pod_template
    pods = probed(probes, stack, "pod_template")
    base, ours = pods["base"], template["spec"]["containers"][0]
    assert base["spec"]["containers"][0]["name"] == "base"
    assert base["spec"]["restartPolicy"] == "Never"
    # Nothing of the template was dropped on the way in (the kubernetes client ignores unknown fields).
    assert base["spec"] == template["spec"]
    assert base["metadata"]["labels"] == template["metadata"]["labels"]

    for name in ("plain", "overridden"):
        pod = pods[name]
        spec, container = pod["spec"], pod["spec"]["containers"][0]
        assert pod["metadata"]["labels"].items() >= template["metadata"]["labels"].items()
        assert {"dag_id", "task_id", "try_number", "airflow-worker"} <= pod["metadata"]["labels"].keys()
        assert pod["metadata"]["namespace"] == rendered.run.exports["namespace"]
        assert spec["securityContext"] == template["spec"]["securityContext"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == template["spec"]["serviceAccountName"]
        assert spec["restartPolicy"] == "Never"
        assert spec.get("initContainers") == template["spec"].get("initContainers")
        assert container["name"] == "base" and container["image"] == ours["image"]
        assert container["securityContext"] == ours["securityContext"]
        assert container["envFrom"] == ours["envFrom"]
        assert container["args"][:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
        assert {"name": "AIRFLOW_IS_K8S_EXECUTOR_POD", "value": "True"} in container["env"]
        for item in ours.get("env", []):
            assert item in container["env"]
        assert all(v in spec["volumes"] for v in template["spec"]["volumes"])
        assert all(m in container["volumeMounts"] for m in ours["volumeMounts"])
    overridden = pods["overridden"]["spec"]
    assert {"name": "scratch", "emptyDir": {}} in overridden["volumes"]
    # The executor merges field by field, not deeply: an override's `resources` replaces ours whole, requests
    # included (a team that overrides resources must give requests too).
    assert overridden["containers"][0]["resources"] == {"limits": {"memory": "8Gi"}}
    assert {"name": "scratch", "mountPath": "/scratch"} in overridden["containers"][0]["volumeMounts"]
