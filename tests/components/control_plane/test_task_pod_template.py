"""The task pod template (the ConfigMap the KubernetesExecutor reads): what a task pod carries and what it does not."""

import json

from testbed.runs import config_env, dev, pod_spec, task_pod_template


def test_task_pods_carry_no_database_credentials_no_secrets_and_no_token():
    run = dev()
    template = task_pod_template(run)
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "dev-task"
    base = spec["containers"][0]
    assert base["envFrom"] == [{"configMapRef": {"name": "dev-config"}}]
    assert "SQL_ALCHEMY_CONN" not in json.dumps(template)
    assert "FERNET" not in json.dumps(template) and "JWT" not in json.dumps(template)
    assert "SQL_ALCHEMY_CONN" not in json.dumps(config_env(run))


def test_task_pods_get_a_token_only_when_the_stack_opts_in():
    spec = task_pod_template(dev({"taskPod": {"kubernetesApiAccess": True}}))["spec"]
    assert spec["automountServiceAccountToken"] is True


def test_task_pod_template_is_what_the_kubernetes_executor_expects():
    run = dev({"team": "growth"})
    template = task_pod_template(run)
    spec = template["spec"]
    assert spec["containers"][0]["name"] == "base" and spec["containers"][0]["image"] == "apache/airflow:3.3.2-python3.12"
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "256Mi"},
        "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "4Gi"},
    }
    labels = template["metadata"]["labels"]
    assert labels["airflow-platform/team"] == "growth" and labels["app.kubernetes.io/instance"] == "dev"
    # the executor adds dag_id / task_id labels itself; the template must not claim those keys
    assert not {"dag_id", "task_id"} & set(labels)
    env = config_env(run)
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] == "/opt/airflow/pod-templates/pod_template.yaml"
    mounts = pod_spec(run.one("Deployment", "dev-scheduler"))["containers"][0]["volumeMounts"]
    assert {"name": "pod-template", "mountPath": "/opt/airflow/pod-templates", "readOnly": True} in mounts


def test_task_pods_reach_the_execution_api_through_the_api_server_service():
    run = dev()
    assert config_env(run)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://dev-api-server.airflow-dev.svc:8080/execution/"
    )
    service = run.one("Service", "dev-api-server").inputs["spec"]
    assert service["ports"][0]["port"] == 8080
    assert service["selector"]["app.kubernetes.io/component"] == "api-server"
