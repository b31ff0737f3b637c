"""Every command line we give the Airflow image parses with the real `airflow` CLI, and every Airflow container
starts with its home on a read-only root filesystem.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from components import kube
from tests.airflow.rendered_stacks import ALL_STACKS, PROBE_TIMEOUT, Rendered, probed
from tests.airflow.venv import _tail

pytestmark = pytest.mark.slow


# --- command lines ----------------------------------------------------------------------------------------


@ALL_STACKS
def test_every_command_line_we_give_the_airflow_image_parses(probes, stack):
    parsed = probed(probes, stack, "cli")
    failures = [f"{p['where']}: airflow {' '.join(p['argv'])}\n{p['error']}" for p in parsed if not p["ok"]]
    assert not failures, "\n".join(failures)
    by_where = {p["where"]: p for p in parsed}
    assert {p["func"] for p in parsed} >= {"api_server", "scheduler", "dag_processor", "triggerer", "migratedb",
                                           "check_migrations", "check"}
    for where, p in by_where.items():
        if where.endswith("livenessProbe") and "jobs" in p["argv"]:
            # `--local` alone: Airflow refuses it with `--hostname` (the probes run for real further down).
            assert p["args"]["local"] == "True" and p["args"]["hostname"] == "None"
    cleanup = [p for p in parsed if p["argv"][:2] == ["db", "clean"]]
    if cleanup:
        # The shell computed a timestamp Airflow accepts, retention days in the past.
        assert cleanup[0]["args"]["clean_before_timestamp"].startswith(("19", "20"))


# --- a read-only root filesystem ----------------------------------------------------------------------------


def airflow_containers(rendered: Rendered) -> list[tuple[str, dict, dict]]:
    """(where, container, pod spec) for every container of the stack that runs Airflow code: its Deployments',
    Jobs' and CronJobs' containers and init containers, and the task pod template's."""
    image = rendered.pod_template["spec"]["containers"][0]["image"]
    specs = [("task pod", rendered.pod_template["spec"])]
    for workload in [*rendered.run.of_kind("Deployment"), *rendered.run.of_kind("Job"), *rendered.run.of_kind("CronJob")]:
        spec = workload.inputs["spec"]
        specs.append((workload.k8s_name, (spec["template"] if "template" in spec else spec["jobTemplate"]["spec"]["template"])["spec"]))
    found = []
    for name, spec in specs:
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            command = container.get("command") or ["airflow"]  # the image's entrypoint runs `airflow <args>`
            if container.get("image") == image and (command[0] == "airflow" or "exec airflow " in command[-1]):
                found.append((f"{name}/{container['name']}", container, spec))
    return found


def container_environment(rendered: Rendered, container: dict) -> dict[str, str]:
    """The environment the kubelet gives `container`: its ConfigMaps and Secrets whole, then its own env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        env.update(rendered.volume_files({"configMap": {"name": ref["name"]}} if "configMapRef" in source
                                         else {"secret": {"secretName": ref["name"]}}))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = rendered.volume_files({"secret": {"secretName": ref["name"]}})[ref["key"]]
    return env


def run_on_read_only_home(python: Path, work: Path, container: dict, spec: dict, env: dict[str, str],
                          argv: list[str]) -> subprocess.CompletedProcess:
    """`airflow <argv>` with the container's environment, AIRFLOW_HOME on a read-only bind mount as the image's
    /opt/airflow is under readOnlyRootFilesystem, and the container's emptyDirs below it writable. A private mount
    namespace (unshare -m) keeps the mounts from the machine and ends with the command; root is not exempt from a
    read-only mount, as it is from permission bits."""
    home = work / "airflow-home"
    home.mkdir(parents=True)
    empty_dirs = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
    script = [f"mount --bind {home} {home}", f"mount -o remount,bind,ro {home}"]
    for mount in container.get("volumeMounts", []):
        if mount["name"] in empty_dirs and mount["mountPath"].startswith(kube.AIRFLOW_HOME + "/"):
            inside = home / mount["mountPath"][len(kube.AIRFLOW_HOME) + 1:]
            inside.mkdir(parents=True)
            writable = work / "empty-dirs" / mount["name"]
            writable.mkdir(parents=True)
            script.append(f"mount --bind {writable} {inside}")
    script.append('exec "$@"')
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    full_env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", **env,
                "AIRFLOW_HOME": str(home)}
    return subprocess.run([*unshare, "sh", "-c", "\n".join(script), "sh", "airflow", *argv], env=full_env, cwd=work,
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT)


def test_every_airflow_container_starts_with_its_home_on_a_read_only_filesystem(airflow_python, stacks, tmp_path):
    # The first deploy on a real node: every Airflow container exited at start with `OSError: [Errno 30]
    # Read-only file system: '/opt/airflow/airflow.cfg'`, because `airflow` writes a default airflow.cfg before
    # any subcommand but `version` unless AIRFLOW_CONFIG names a file that exists. `config get-value` needs no
    # database and goes through that same start; prod-ldap has every kind of Airflow container (Kerberos on).
    rendered = stacks["prod-ldap"]
    containers = airflow_containers(rendered)
    assert {"task pod/base", "prod-migrate-3-3-2/migrate", "prod-cleanup/db-clean", "prod-kerberos/renewer",
            "prod-scheduler/wait-for-migrations", "prod-api-server/api-server", "prod-triggerer/triggerer"} <= {
        where for where, _, _ in containers}
    argv = ["config", "get-value", "core", "executor"]
    where, container, spec = next(item for item in containers if item[0].endswith("/migrate"))
    env = {k: v for k, v in container_environment(rendered, container).items() if k != "AIRFLOW_CONFIG"}
    before = run_on_read_only_home(airflow_python, tmp_path / "without", container, spec, env, argv)
    assert before.returncode != 0 and "Read-only file system" in before.stderr and "airflow.cfg" in before.stderr, (
        f"without AIRFLOW_CONFIG, {where} should fail as on the node:\n{_tail(before.stdout)}\n{_tail(before.stderr)}")

    # Containers with the same environment and mounts (the init containers, the migration and clean-up jobs)
    # start alike: one run each.
    distinct = {}
    for where, container, spec in containers:
        env = container_environment(rendered, container)
        key = json.dumps([env, container.get("volumeMounts", [])], sort_keys=True)
        distinct.setdefault(key, (where, container, spec, env))

    def run(index: int, item) -> tuple[str, subprocess.CompletedProcess]:
        where, container, spec, env = item
        return where, run_on_read_only_home(airflow_python, tmp_path / str(index), container, spec, env, argv)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(len(distinct)), distinct.values()))
    failures = [f"{where}: exit {proc.returncode}\n{_tail(proc.stderr, 8)}" for where, proc in results if proc.returncode]
    assert not failures, "\n".join(failures)
    # The renewer reads no instance config: the default executor.
    assert {proc.stdout.strip().splitlines()[-1] for _, proc in results} == {"KubernetesExecutor", "LocalExecutor"}
