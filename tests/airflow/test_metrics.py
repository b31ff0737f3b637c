"""The metrics path with the real programs: the real Airflow 3.3.2 scheduler, dag-processor and triggerer on a real
PostgreSQL, with the `[metrics]` settings the stack renders, sending StatsD to a real statsd_exporter (built from
its Go module at the version of the exporter image, started with the rendered Deployment's arguments and mapping)
on loopback. The exporter is scraped as Prometheus scrapes it, and every series an alert reads from Airflow must be
there with the labels the alert's expression uses.

Series Airflow only sends on an event (a task stuck in queued, a refused pod) are sent through Airflow's own
`stats` module, initialised as the scheduler initialises it, with the tags the scheduler and the executor pass
(`_emit_ti_metrics`, `kubernetes_executor_utils`): that proves the name and labels, not that the event happens.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from components.metrics import mapping_yaml
from components.metrics_catalog import ALERTS, STATSD_MAPPING
from testbed.harness import ROOT, run_stack
from tests.airflow.venv import _tail

pytestmark = pytest.mark.slow

STATSD_CLIENT = "statsd==4.0.1"  # the client the official image's `statsd` extra installs
START_TIMEOUT = 300
# What Prometheus 2.x/3.x sends: it would take OpenMetrics (and `_total` counter names) if offered.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
)
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

EVENT_ONLY = '''
from airflow._shared.observability.metrics import stats
from airflow.configuration import conf
from airflow.observability.metrics import stats_utils

stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=conf.getboolean("metrics", "legacy_names_on"))
stats.gauge("ti.queued", 2.0, tags={"queue": "default", "dag_id": "etl", "task_id": "load"})
stats.incr("kubernetes_executor.pod_creation_status", tags={"status": "403"})
'''


def _free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache() -> Path:
    return Path(os.environ.get("AIRFLOW_PLATFORM_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "airflow-platform")


@pytest.fixture(scope="module")
def exporter_binary() -> str:
    if os.environ.get("STATSD_EXPORTER"):
        return os.environ["STATSD_EXPORTER"]
    proc = subprocess.run([ROOT / "scripts" / "install-statsd-exporter"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"scripts/install-statsd-exporter failed:\n{_tail(proc.stderr)}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def statsd_client(airflow_python) -> Path:
    """The StatsD client the image carries, next to (not inside) the shared Airflow venv, installed once."""
    target = _cache() / f"airflow-overlay-{STATSD_CLIENT.replace('==', '-')}"
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        proc = subprocess.run([str(airflow_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--target", str(target), STATSD_CLIENT], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"could not install {STATSD_CLIENT}:\n{_tail(proc.stderr)}"
        (target / ".complete").touch()
    return target


@pytest.fixture(scope="module")
def rendered():
    run = run_stack({"metrics": {"prometheusOperator": True}}, {"s3AccessKeyId": "a", "s3SecretAccessKey": "b"})
    return run


@pytest.fixture(scope="module")
def exporter(exporter_binary, rendered, tmp_path_factory):
    """statsd_exporter with the rendered mapping and the Deployment's own arguments, on loopback ports."""
    work = tmp_path_factory.mktemp("statsd-exporter")
    mapping = rendered.by_pulumi_name("ConfigMap", "dev-statsd-mapping").inputs["data"]["mapping.yaml"]
    assert mapping == mapping_yaml()
    (work / "mapping.yaml").write_text(mapping)
    container = rendered.by_pulumi_name("Deployment", "dev-statsd-exporter").inputs["spec"]["template"]["spec"]["containers"][0]
    udp, http = _free_port(socket.SOCK_DGRAM), _free_port()
    loopback = {"--statsd.listen-udp": f"127.0.0.1:{udp}", "--web.listen-address": f"127.0.0.1:{http}",
                "--statsd.mapping-config": str(work / "mapping.yaml")}
    args = [a if a.split("=", 1)[0] not in loopback else f"{a.split('=', 1)[0]}={loopback[a.split('=', 1)[0]]}"
            for a in container["args"]]
    log = open(work / "exporter.log", "w")
    proc = subprocess.Popen([exporter_binary, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/-/ready", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    f"statsd_exporter did not become ready:\n{(work / 'exporter.log').read_text()}")
                time.sleep(0.2)
        yield udp, http
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


def scrape(port: int) -> dict[str, list[dict[str, str]]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    with urllib.request.urlopen(request, timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    # The classic format keeps counter names as sent; OpenMetrics would store them with `_total`.
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    found: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not (match := SERIES.match(line)):
            continue
        labels = dict(LABEL.findall(match.group(3) or ""))
        labels["__value__"] = match.group(4)
        found.setdefault(match.group(1), []).append(labels)
    return found


@pytest.fixture(scope="module")
def airflow_running(airflow_python, statsd_client, postgres, rendered, exporter, tmp_path_factory):  # noqa: F811
    """Migrates a fresh database and runs the scheduler, dag-processor and triggerer with our metrics settings."""
    port, sql = postgres
    udp, _ = exporter
    work = tmp_path_factory.mktemp("airflow-metrics")
    dags = work / "dags"
    dags.mkdir()
    (dags / "ok.py").write_text(
        "import pendulum\nfrom airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('ok', schedule=None, start_date=pendulum.datetime(2026, 1, 1)):\n    EmptyOperator(task_id='t')\n"
    )
    (dags / "broken.py").write_text("from airflow.sdk import DAG\nraise RuntimeError('this DAG file does not import')\n")

    config = rendered.one("ConfigMap", "-config").inputs["data"]
    # The scheduler's view: the shared secrets plus the JWT secret it signs task tokens with.
    secret = {key: value for name in ("-secrets", "-jwt") for key, value in rendered.one("Secret", name).inputs["stringData"].items()}
    metrics_env = {k: v for k, v in config.items() if k.startswith("AIRFLOW__METRICS__")}
    assert metrics_env["AIRFLOW__METRICS__STATSD_HOST"] == "dev-statsd-exporter.airflow-dev.svc"
    url = urlsplit(secret["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    sql("CREATE ROLE metrics LOGIN PASSWORD 'metrics'")
    sql("CREATE DATABASE metrics OWNER metrics")
    env = {
        "PATH": f"{airflow_python.parent}:/usr/bin:/bin",
        "HOME": str(work),
        "AIRFLOW_HOME": str(work),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(statsd_client),
        **metrics_env,
        # Loopback instead of the Service; everything else of [metrics] as rendered.
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(udp),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url._replace(netloc=f"metrics:metrics@127.0.0.1:{port}", path="/metrics").geturl(),
        "AIRFLOW__CORE__FERNET_KEY": secret["AIRFLOW__CORE__FERNET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["AIRFLOW__API_AUTH__JWT_SECRET"],
        # No cluster here: the executor only decides the executor_class_name label, which no alert reads.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__POOL_METRICS_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{_tail(migrate.stdout)}\n{_tail(migrate.stderr)}"

    procs = {}
    try:
        for command in ("scheduler", "dag-processor", "triggerer"):
            log = open(work / f"{command}.log", "w")
            procs[command] = (subprocess.Popen(["airflow", command], env=env, cwd=work, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True), log)
        yield env, work, procs
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()


def _wait_for(exporter_port: int, wanted, procs, work) -> dict:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        series = scrape(exporter_port)
        missing = [name for name, check in wanted.items() if not check(series.get(name, []))]
        if not missing:
            return series
        for command, (proc, _) in procs.items():
            assert proc.poll() is None, f"airflow {command} exited {proc.returncode}:\n{_tail((work / f'{command}.log').read_text())}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c}\n{_tail((work / f'{c}.log').read_text(), 15)}" for c in procs)
            pytest.fail(f"no {missing} on the exporter after {START_TIMEOUT}s; it has {sorted(series)}\n{logs}")
        time.sleep(2)


def test_real_airflow_sends_every_series_the_alerts_read_with_their_labels(airflow_running, exporter, airflow_python):
    env, work, procs = airflow_running
    _, http = exporter
    present = bool
    wanted = {
        "airflow_scheduler_heartbeat": present,
        "airflow_dag_processor_heartbeat": present,
        "airflow_triggerer_heartbeat": present,
        # The broken DAG file: the gauge is there and counts it.
        "airflow_dag_processing_import_errors": lambda s: any(float(x["__value__"]) >= 1 for x in s),
        # Tags became labels (pool metrics come from the scheduler every POOL_METRICS_INTERVAL).
        "airflow_pool_open_slots": lambda s: any(x.get("pool_name") == "default_pool" for x in s),
    }
    _wait_for(http, wanted, procs, work)

    events = subprocess.run([str(airflow_python), "-c", EVENT_ONLY], env=env, cwd=work, capture_output=True, text=True, timeout=120)
    assert events.returncode == 0, _tail(events.stderr)
    series = _wait_for(http, {"airflow_ti_queued": present, "airflow_kubernetes_executor_pod_creation_status": present}, procs, work)

    checked = []
    for alert in ALERTS:
        if alert.source != "airflow":
            continue
        for name, labels in alert.series.items():
            assert name in series, f"{alert.name} reads {name}, which the exporter does not have: {sorted(series)}"
            missing = [label for label in labels if not any(label in s for s in series[name])]
            assert not missing, f"{alert.name} groups {name} by {missing}, which it does not carry: {series[name]}"
            checked.append(name)
        # The series the alert selects really carry the selector's labels once Prometheus adds namespace/job;
        # nothing Airflow sends may collide with them.
        for name in alert.series:
            assert not any({"namespace", "job"} & set(s) for s in series[name]), series[name]
    assert len(checked) >= 6
    # `legacy_names_on = False`: no name carries a DAG, task or pool.
    assert not [name for name in series if re.search(r"default_pool|_etl_|_load$|KubernetesExecutor|LocalExecutor", name)]


def test_the_mapping_gives_job_events_a_label(airflow_running, exporter):
    env, work, procs = airflow_running
    _, http = exporter
    series = _wait_for(http, {"airflow_job_start": bool}, procs, work)
    assert {s.get("job_name") for s in series["airflow_job_start"]} >= {"job"}, series["airflow_job_start"]
    assert any(m["name"] == "airflow_job_start" for m in STATSD_MAPPING["mappings"])
