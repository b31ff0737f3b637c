"""DAG delivery by git-sync: beside the DAG parsers and before each task, from a verified host only."""

import pytest

from components import kube
from testbed.runs import config_env, dev, pod_spec, pod_specs, refused, stack, task_pod_template

GIT = {"gitSync": {"enabled": True, "repo": "https://git.example.org/team/dags.git", "ref": "feature/x", "periodSeconds": 30}}
KNOWN_HOSTS = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


# --- DAG delivery --------------------------------------------------------------------------------------------


def test_git_sync_runs_beside_dag_parsers_and_before_each_task():
    run = dev(GIT, {"gitSyncToken": "token"})
    for component in ("dag-processor", "triggerer"):
        containers = pod_spec(run.one("Deployment", f"dev-{component}"))["containers"]
        sidecar = next(c for c in containers if c["name"] == "git-sync")
        assert "--ref=feature/x" in sidecar["args"] and "--period=30s" in sidecar["args"]
        assert "--password-file=/etc/git-secret/token" in sidecar["args"]
    assert [c["name"] for c in pod_spec(run.one("Deployment", "dev-scheduler"))["containers"]] == ["scheduler"]
    init = task_pod_template(run)["spec"]["initContainers"]
    assert init[0]["name"] == "git-sync" and "--one-time" in init[0]["args"]
    assert config_env(run)["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags/repo"
    assert run.one("Secret", "-git-sync").inputs["stringData"] == {"token": "token"}


# --- only from a verified host ---------------------------------------------------------------------------


def test_git_sync_over_ssh_checks_the_hosts_key():
    run = stack("dev", {"gitSync": {"enabled": True, "repo": "git@git.example.org:t/d.git", "knownHosts": KNOWN_HOSTS}},
                {"gitSyncSshKey": "-----BEGIN KEY-----"})
    for spec in (pod_specs(run)["dev-dag-processor"], pod_specs(run)["task pod"]):
        git = next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "git-sync")
        assert "--ssh-known-hosts=true" in git["args"] and "--ssh-known-hosts=false" not in git["args"]
        assert "--ssh-known-hosts-file=/etc/git-secret/known_hosts" in git["args"]
    assert run.one("Secret", "-git-sync").inputs["stringData"]["known_hosts"] == KNOWN_HOSTS


@pytest.mark.parametrize(
    "git, secrets, problem",
    [
        ({"repo": "git@git.example.org:t/d.git"}, {"gitSyncSshKey": "k"}, "gitSync.knownHosts: an SSH key is set but no known hosts"),
        ({"repo": "git@git.example.org:t/d.git"}, {}, "is an SSH URL but no SSH key is set"),
        ({"repo": "ssh://git@git.example.org/t/d.git"}, {}, "is an SSH URL but no SSH key is set"),
    ],
)
def test_unverifiable_dag_sources_are_refused(git, secrets, problem):
    assert problem in refused({"gitSync": {"enabled": True, **git}}, secrets)


def test_git_sync_sidecars_have_probes_on_their_health_endpoint():
    run = stack("team-search", secrets={"gitSyncToken": "t"})
    for component in ("dag-processor", "triggerer"):
        git = next(c for c in pod_specs(run)[f"team-search-{component}"]["containers"] if c["name"] == "git-sync")
        assert f"--http-bind=:{kube.GIT_SYNC_HTTP_PORT}" in git["args"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert git[probe]["httpGet"] == {"path": "/", "port": kube.GIT_SYNC_HTTP_PORT}
