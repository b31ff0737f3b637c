"""The migration Job's command, and the wait and clean-up commands and the Job probes, against a real PostgreSQL
(a throwaway cluster, tests/airflow/conftest.py) with the real Airflow 3.3.2.
"""

from __future__ import annotations

import functools
import subprocess
from urllib.parse import urlsplit

import pytest

from components import kube
from tests.airflow.rendered_stacks import PROBE_TIMEOUT, Rendered
from tests.airflow.venv import _tail

pytestmark = pytest.mark.slow


def workload_container(rendered: Rendered, workload_kind: str, name: str) -> dict:
    workload = rendered.run.one(workload_kind).inputs["spec"]
    template = workload["template"] if "template" in workload else workload["jobTemplate"]["spec"]["template"]
    return next(c for c in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]
                if c["name"] == name)


def airflow_command(env: dict[str, str], argv: list[str]) -> None:
    proc = subprocess.run(["airflow", *argv], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"airflow {' '.join(argv)} failed:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"


@pytest.fixture(scope="module")
def migrated_database(airflow_python, stacks, postgres, tmp_path_factory):
    """prod-oidc's database on the throwaway server, owned by the user its URL names, migrated by the migration
    Job's own command. Yields (the stack's environment pointed at it, run_sql in it)."""
    rendered = stacks["prod-oidc"]
    port, sql = postgres
    # The URL shape we generate, pointed at the throwaway server instead of the pooler Service.
    url = urlsplit(rendered.secret_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (url.scheme, url.username, url.path, url.port) == ("postgresql", "airflow", "/airflow", 5432)
    sql(f"CREATE ROLE {url.username} LOGIN PASSWORD '{url.password}'")
    sql(f"CREATE DATABASE {url.path.lstrip('/')} OWNER {url.username}")
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "PATH": f"{airflow_python.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "LANG": "C.UTF-8",
        **rendered.env,
        "AIRFLOW_CONFIG": kube.AIRFLOW_CONFIG_FILE,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{port}").geturl(),
    }
    airflow_command(env, workload_container(rendered, "Job", "migrate")["args"])  # the migration Job: airflow db migrate
    yield env, lambda statement: sql(statement, database=url.path.lstrip("/"))


def test_the_migration_job_and_the_wait_and_clean_up_commands_work_on_postgres(stacks, migrated_database):
    rendered = stacks["prod-oidc"]
    env, _ = migrated_database  # migrated by the migration Job's command
    airflow = functools.partial(airflow_command, env)
    container = functools.partial(workload_container, rendered)
    wait = next(c for c in rendered.deployment("scheduler")["initContainers"] if c["name"] == "wait-for-migrations")
    airflow(wait["args"])  # every component's init container: returns once the schema is current
    cleanup = rendered.run.of_kind("CronJob")
    if cleanup:  # the db clean-up CronJob's shell command, with `airflow` on PATH
        command = container("CronJob", "db-clean")["command"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command} failed:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"


@pytest.mark.parametrize("component,job_type", [("dag-processor", "DagProcessorJob"), ("triggerer", "TriggererJob")])
def test_the_job_probes_pass_for_this_pods_live_job_and_fail_without_one(airflow_python, stacks, migrated_database,
                                                                       component, job_type):
    # On the first real node these probes were `--local --hostname "$HOSTNAME"`, which Airflow refuses whatever
    # the database holds ("You can't use --hostname and --local at the same time"): the pods never became ready.
    rendered = stacks["prod-oidc"]
    env, sql = migrated_database
    container = rendered.deployment(component)["containers"][0]
    command = container["livenessProbe"]["exec"]["command"]
    assert container["readinessProbe"]["exec"]["command"] == command
    # The hostname a job records and `--local` looks for, as Airflow computes it on this machine (in a pod: the pod's).
    hostname = subprocess.run([str(airflow_python), "-c", "from airflow.utils.net import get_hostname; print(get_hostname())"],
                              env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=True).stdout.splitlines()[-1]
    # The kubelet runs an exec probe inside the container: its environment, HOSTNAME the pod's name.
    probe_env = {**env, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}, "HOSTNAME": hostname}

    def probe() -> subprocess.CompletedProcess:
        return subprocess.run(command, env=probe_env, capture_output=True, text=True, timeout=PROBE_TIMEOUT)

    def only_job(host: str | None, heartbeat_age_seconds: int = 0) -> None:
        sql(f"DELETE FROM job WHERE job_type = '{job_type}'")
        if host is not None:
            sql("INSERT INTO job (job_type, state, hostname, unixname, start_date, latest_heartbeat) VALUES "
                f"('{job_type}', 'running', '{host}', 'airflow', now(), now() - interval '{heartbeat_age_seconds} seconds')")

    only_job(hostname)
    alive = probe()
    assert alive.returncode == 0 and "Found one alive job." in alive.stdout, f"{command}:\n{alive.stdout}\n{alive.stderr}"
    for case, host, age in (("no job", None, 0), ("another pod's job", f"{hostname}-other", 0),
                            ("a job without a heartbeat for a day", hostname, 86400)):
        only_job(host, age)
        dead = probe()
        assert dead.returncode != 0 and "No alive jobs found." in dead.stdout + dead.stderr, (
            f"{case}: {command}:\n{dead.stdout}\n{dead.stderr}")
