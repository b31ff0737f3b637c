"""WorkerRBAC: the Roles, RoleBindings and ServiceAccounts; only the scheduler may launch and delete pods."""

from testbed.runs import dev


def rules_of(run, role_name):
    role = run.one("Role", role_name)
    return {(resource, verb) for rule in role.inputs["rules"] for resource in rule["resources"] for verb in rule["verbs"]}


def binding_subjects(run):
    return {
        binding.inputs["roleRef"]["name"]: [s["name"] for s in binding.inputs["subjects"]]
        for binding in run.of_kind("RoleBinding")
    }


def test_only_the_scheduler_may_launch_and_delete_pods():
    run = dev()
    assert rules_of(run, "dev-scheduler") == {
        ("pods", "create"), ("pods", "get"), ("pods", "list"), ("pods", "watch"), ("pods", "patch"),
        ("pods", "delete"), ("pods/log", "get"), ("events", "list"),
    }
    assert binding_subjects(run)["dev-scheduler"] == ["dev-scheduler"]
    launchers = [r.k8s_name for r in run.of_kind("Role") if ("pods", "create") in rules_of(run, r.k8s_name)]
    assert launchers == ["dev-scheduler"]


def test_api_server_only_reads_pods_and_their_logs():
    run = dev()
    assert rules_of(run, "dev-api-server") == {
        ("pods", "get"), ("pods", "list"), ("pods", "watch"), ("pods/log", "get"),
    }
    assert binding_subjects(run)["dev-api-server"] == ["dev-api-server"]


def test_task_pods_get_no_rights_and_no_token():
    run = dev()
    bound = {name for subjects in binding_subjects(run).values() for name in subjects}
    assert "dev-task" not in bound
    assert run.one("ServiceAccount", "-task").inputs["automountServiceAccountToken"] is False


def test_task_pods_get_pod_rights_only_when_the_stack_opts_in():
    run = dev({"taskPod": {"kubernetesApiAccess": True}})
    assert binding_subjects(run)["dev-task"] == ["dev-task"]
    assert ("pods", "create") in rules_of(run, "dev-task")


def test_no_service_account_mounts_its_token_by_default():
    for account in dev().of_kind("ServiceAccount"):
        assert account.inputs["automountServiceAccountToken"] is False, account.k8s_name


def test_roles_are_namespaced_never_cluster_wide():
    run = dev()
    assert run.of_kind("ClusterRole") == [] and run.of_kind("ClusterRoleBinding") == []
