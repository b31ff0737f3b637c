"""The test node's images (scripts/build-node-images): tagged with exactly what the program renders, and each one
imported into a real containerd and run the way the cluster runs it.

The quick tests need no build: the references the builder tags are the ones a stack with the stand-in settings
(images/standins.py) renders, the Airflow image carries the Airflow the settings name, and the image's entrypoint
dispatches like the official one. The slow test builds the images (cached) and imports every archive into a
containerd of its own (private root, state and socket under /tmp; CRI off, it is not needed to run a
container), then runs each image's program as the user the cluster runs it as.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from packaging.version import Version

from images import build, standins
from testbed.harness import ROOT, run_stack
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS, stack_file_config

BUILD_TIMEOUT = 3600
AIRFLOW_VERSION_PIN = re.compile(r"^apache-airflow==(\S+)$", re.M)


def _images_in(value) -> set[str]:
    """Every container image named in a resource's inputs (containers' `image`, a Cluster's `imageName`)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("image", "imageName") and isinstance(item, str):
                found.add(item)
            else:
                found |= _images_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= _images_in(item)
    return found


def _stand_in_stack() -> dict:
    """dev's stack with every image-bearing part on (Kerberos renewer, git-sync, metrics) and the stand-ins."""
    config = {**stack_file_config("dev"), **KERBEROS_CONFIG}
    config["gitSync"] = {"enabled": True, "repo": "https://git.example.org/team/dags.git"}
    for key, value in standins.STACK_CONFIG.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def test_built_references_are_the_rendered_ones():
    run = run_stack(_stand_in_stack(), {**TEST_SECRETS, "kerberosKeytab": KEYTAB_B64}, stack="dev")
    rendered = set()
    for resource in run.resources:
        rendered |= _images_in(resource.inputs)
    built = {spec.name: spec.tag for spec in build.specs(build.program_refs())}

    # The node runs only what is built, under the name containerd stores it as; the rest is the node's own.
    node_own = {built[name]
                for name in ("pause", "cnpg-operator", "coredns", "barman-cloud-plugin", "barman-cloud-sidecar")}
    # The images of the upgrade tests' starting points (the previous Airflow, the previous PostgreSQL major) are
    # rendered only by stacks that name them, below.
    previous_images = {built["airflow-previous"], built["postgres-previous"]}
    assert {build.normalized(ref) for ref in rendered} == set(built.values()) - node_own - previous_images
    # The same stack at the previous Airflow (the upgrade test's start) runs the previous image instead.
    previous = run_stack({**_stand_in_stack(), "airflowVersion": standins.PREVIOUS_AIRFLOW_VERSION},
                         {**TEST_SECRETS, "kerberosKeytab": KEYTAB_B64}, stack="dev")
    rendered_previous = set()
    for resource in previous.resources:
        rendered_previous |= _images_in(resource.inputs)
    assert ({build.normalized(ref) for ref in rendered_previous}
            == set(built.values()) - node_own - {built["airflow"], built["postgres-previous"]})
    # The same stack at the previous PostgreSQL major (the PostgreSQL upgrade test's start) runs its image.
    stand_in = _stand_in_stack()
    previous_pg = run_stack({**stand_in, "postgres": {**stand_in.get("postgres", {}),
                                                      "version": standins.PREVIOUS_POSTGRES_MAJOR}},
                            {**TEST_SECRETS, "kerberosKeytab": KEYTAB_B64}, stack="dev")
    rendered_previous_pg = set()
    for resource in previous_pg.resources:
        rendered_previous_pg |= _images_in(resource.inputs)
    assert ({build.normalized(ref) for ref in rendered_previous_pg}
            == set(built.values()) - node_own - {built["airflow-previous"], built["postgres"]})
    assert built["postgres-previous"].startswith(
        f"ghcr.io/cloudnative-pg/postgresql:{standins.PREVIOUS_POSTGRES_MAJOR}.")
    assert built["airflow-previous"] == (f"docker.io/apache/airflow:{standins.PREVIOUS_AIRFLOW_VERSION}"
                                         f"-python{standins.AIRFLOW_PYTHON}")
    assert built["airflow"] == f"docker.io/apache/airflow:3.3.2-python{standins.AIRFLOW_PYTHON}"
    assert built["postgres"].startswith(f"ghcr.io/cloudnative-pg/postgresql:{standins.POSTGRES_MAJOR}.")
    assert built["cnpg-operator"] == standins.CNPG_OPERATOR_IMAGE
    assert built["cnpg-operator"].endswith(":" + standins.cnpg_operator_version())
    version = standins.barman_cloud_plugin_version()
    assert built["barman-cloud-plugin"] == standins.BARMAN_CLOUD_PLUGIN_IMAGE
    assert built["barman-cloud-plugin"] == f"ghcr.io/cloudnative-pg/plugin-barman-cloud:v{version}"
    assert built["barman-cloud-sidecar"] == standins.BARMAN_CLOUD_SIDECAR_IMAGE
    assert built["barman-cloud-sidecar"] == f"ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v{version}"


def test_airflow_image_carries_the_airflow_its_tag_names():
    from components.settings import Settings

    pins = (ROOT / "images" / "airflow" / "requirements.txt").read_text()
    assert AIRFLOW_VERSION_PIN.findall(pins) == [Settings.model_fields["airflow_version"].default]
    assert re.search(r"^statsd==\d+\.\d+\.\d+$", pins, re.M), "the StatsD client is pinned (Airflow drops metrics without it)"

    # The previous image's pins (the upgrade test's start): an older Airflow, and the same providers, so that the
    # upgrade changes Airflow alone.
    previous = standins.PREVIOUS_AIRFLOW_REQUIREMENTS.read_text()
    assert AIRFLOW_VERSION_PIN.findall(previous) == [standins.PREVIOUS_AIRFLOW_VERSION]
    assert Version(standins.PREVIOUS_AIRFLOW_VERSION) < Version(Settings.model_fields["airflow_version"].default)

    def others(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith(("#", "apache-airflow=="))]

    def by_package(text: str) -> dict[str, str]:
        return {re.split(r"[<>=!\[ ]", line, maxsplit=1)[0]: line for line in others(text)}

    current, before = by_package(pins), by_package(previous)
    assert {name: before.get(name) for name in current} == current
    # All the previous file adds are ceilings its Airflow needs (fastapi<0.145 for 3.2.2), never another pin.
    added = [line for name, line in before.items() if name not in current]
    assert all("<" in line and "==" not in line for line in added), added


@pytest.mark.parametrize(
    "args, runs",
    [
        (["scheduler"], "airflow scheduler"),
        (["db", "migrate"], "airflow db migrate"),
        (["kerberos"], "airflow kerberos"),
        (["api-server", "--port", "8080"], "airflow api-server --port 8080"),
        (["airflow", "version"], "airflow version"),
        ([], "airflow --help"),
        (["sh", "-c", "echo shell $0", "x"], "shell x"),
        (["bash", "-c", "echo bash"], "bash"),
        (["python3", "-c", "print('python')"], "python"),
        (["echo", "any", "program"], "any program"),
    ],
)
def test_airflow_entrypoint_dispatch(tmp_path, args, runs):
    fake = tmp_path / "airflow"
    fake.write_text('#!/bin/sh\necho "airflow $*"\n')
    fake.chmod(0o755)
    done = subprocess.run(
        [str(ROOT / "images" / "airflow" / "entrypoint"), *args],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == runs


@pytest.mark.parametrize("script", ["build-node-images", "install-node-tools"])
def test_scripts_answer_help_first_and_refuse_unknown_arguments(script, tmp_path):
    # An empty cache: --help must not build, and --print-* must say "not built".
    env = {**os.environ, "AIRFLOW_PLATFORM_CACHE": str(tmp_path / "cache")}
    path = str(ROOT / "scripts" / script)
    done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and "Usage" in done.stdout, done.stderr
    assert subprocess.run([path, "--no-such-option"], capture_output=True, timeout=60, env=env).returncode == 2
    printing = "--print-dir" if script == "build-node-images" else "--print-bin"
    done = subprocess.run([path, printing], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert not (tmp_path / "cache").exists()


# --- the slow test: import into containerd and run --------------------------------------------------------------


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class Containerd:
    """A containerd of its own under a fresh /tmp folder, with the CRI plugin off."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
        self.socket = self.dir / "containerd.sock"
        self.log = self.dir / "containerd.log"
        self.process: subprocess.Popen | None = None
        # runc's state and the I/O fifos under our folder too (by default they go under /run/containerd).
        self.private_dirs = ["--runc-root", str(self.dir / "runc"), "--fifo-dir", str(self.dir / "fifo")]
        # The shims' sockets always go to /run/containerd/s: those folders are removed again if we made them.
        self.shared_dirs = [d for d in (Path("/run/containerd/s"), Path("/run/containerd")) if not d.exists()]

    def start(self) -> None:
        default = subprocess.run(["containerd", "config", "default"], capture_output=True, text=True, check=True).stdout
        config = _private_config(default, self.dir)
        (self.dir / "config.toml").write_text(config)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(["containerd", "--config", str(self.dir / "config.toml")],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited at start:\n{self.log.read_text()[-3000:]}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"containerd did not answer in 30 s:\n{self.log.read_text()[-3000:]}")

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["ctr", "-a", str(self.socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def run(self, ref: str, *command: str, read_only: bool = False) -> str:
        """Runs `command` in a fresh container of `ref` and returns its output (the container is removed). It
        runs as the image's user: the ctr of containerd 1.6 has no --user, and each image's user is the one the
        cluster runs it as (the test checks the ids where they matter). `read_only`: as our pods run, a read-only
        root with a writable /tmp."""
        # A read-only root gets a writable /tmp, as every pod of ours mounts an emptyDir there.
        tmp = ["--read-only", "--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev:mode=1777"]
        flags = ["--rm", *self.private_dirs] + (tmp if read_only else [])
        name = f"t{time.monotonic_ns()}"
        done = self.ctr("run", *flags, ref, name, *command, check=False, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(command)} in {ref} failed ({done.returncode}):\n{output}"
        return output

    def stop(self) -> list[str]:
        """Stops containerd and removes its folder; returns what was left mounted (nothing, we hope)."""
        if self.process is not None:
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
                self.ctr("tasks", "rm", "-f", task, check=False)
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        left = build.mount_points_below(self.dir)
        build.unmount_below(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        for directory in self.shared_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()
        return left


def _private_config(default: str, root: Path) -> str:
    """`containerd config default` with every path moved under `root`, and the CRI plugin off (`ctr run` does
    not need it; were it on, it would need `restrict_oom_score_adj = true` here, see the research note)."""
    replacements = [
        (r'^root = ".*"$', f'root = "{root}/root"'),
        (r'^state = ".*"$', f'state = "{root}/state"'),
        (r'^disabled_plugins = \[.*\]$', 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'),
        (r'^(\s*)address = "/run/containerd/containerd.sock"$', rf'\1address = "{root}/containerd.sock"'),
        (r'^(\s*)path = "/opt/containerd"$', rf'\1path = "{root}/opt"'),
        (r'^(\s*)restrict_oom_score_adj = false$', r'\1restrict_oom_score_adj = true'),
    ]
    for pattern, replacement in replacements:
        default, count = re.subn(pattern, replacement, default, flags=re.M)
        assert count >= 1, f"containerd's default config has no line matching {pattern}"
    return default


@pytest.fixture(scope="module")
def node_images() -> dict[str, dict]:
    if os.geteuid() != 0:
        _unavailable("building and running the node images needs root")
    missing = [tool for tool in ("containerd", "ctr", "runc", "debootstrap", "gcc") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"the node images need {', '.join(missing)} (Debian packages; scripts/test installs them as root)")
    try:
        done = subprocess.run([str(ROOT / "scripts" / "build-node-images")], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        _unavailable(f"scripts/build-node-images did not finish in {BUILD_TIMEOUT}s")
    if done.returncode != 0:
        _unavailable(f"scripts/build-node-images failed:\n{done.stderr[-3000:]}")
    directory = Path(done.stdout.strip().splitlines()[-1].split("=", 1)[1])
    import json

    entries = json.loads((directory / "images.json").read_text())["images"]
    assert sorted(Path(e["archive"]).name for e in entries) == sorted(p.name for p in directory.glob("*.tar"))
    return {entry["name"]: entry for entry in entries}


@pytest.fixture(scope="module")
def containerd():
    daemon = Containerd()
    try:
        daemon.start()
        yield daemon
    finally:
        left = daemon.stop()
        assert not left, f"containerd left {left} mounted"


@pytest.mark.slow
def test_images_import_and_run(node_images, containerd):
    started = time.monotonic()
    for entry in node_images.values():
        assert os.path.getsize(entry["archive"]) == entry["bytes"]
        containerd.ctr("images", "import", entry["archive"], timeout=600)
    imported = set(containerd.ctr("images", "ls", "-q").stdout.split())
    assert {entry["ref"] for entry in node_images.values()} <= imported
    print(f"imported {len(node_images)} images in {time.monotonic() - started:.1f}s")
    ref = {name: entry["ref"] for name, entry in node_images.items()}

    # Airflow, as the pods run it: uid 50000, group 0, a read-only root; through tini and the entrypoint.
    airflow = ["/usr/bin/tini", "--", "/entrypoint"]
    out = containerd.run(ref["airflow"], *airflow, "version", read_only=True)
    assert "3.3.2" in out
    out = containerd.run(ref["airflow"], *airflow, "python", "-c",
                         "import os, sys, statsd, airflow.providers.cncf.kubernetes, airflow.providers.amazon, "
                         "airflow.providers.fab, airflow.providers.postgres; print(sys.version_info[:2], "
                         "os.environ['AIRFLOW_HOME'], os.environ['HOME'], os.getuid(), os.getgid())", read_only=True)
    assert f"(3, {standins.AIRFLOW_PYTHON.split('.')[1]}) /opt/airflow /home/airflow 50000 0" in out
    # The previous Airflow (the upgrade test's start), built by the same script: its version, the same providers.
    out = containerd.run(ref["airflow-previous"], *airflow, "version", read_only=True)
    assert standins.PREVIOUS_AIRFLOW_VERSION in out.split(), out
    out = containerd.run(ref["airflow-previous"], *airflow, "python", "-c",
                         "import os, statsd, airflow.providers.cncf.kubernetes, airflow.providers.amazon, "
                         "airflow.providers.fab, airflow.providers.postgres; print(os.getuid(), os.getgid())",
                         read_only=True)
    assert "50000 0" in out.splitlines(), out
    out = containerd.run(ref["airflow"], *airflow, "sh", "-c", "stat -c '%u:%g %a' /opt/airflow; command -v kinit; command -v klist")
    assert out.splitlines()[0] == "50000:0 775" and "/usr/bin/klist" in out

    # PostgreSQL as CloudNativePG runs it (26:26): the binaries on PATH, and initdb works (it needs a passwd entry).
    out = containerd.run(ref["postgres"], "sh", "-c", "id -u; id -g; postgres --version && "
                         "initdb -D /tmp/pgdata --encoding=UTF8 --locale=C.UTF-8 >/dev/null && echo initdb-ok")
    assert out.split()[:2] == ["26", "26"], out
    assert f"PostgreSQL) {standins.POSTGRES_MAJOR}." in out and "initdb-ok" in out
    # The previous major (the PostgreSQL upgrade test's start), the same way; its pg_config (which CloudNativePG's
    # upgrade asks where to copy the binaries from) is its own.
    out = containerd.run(ref["postgres-previous"], "sh", "-c", "id -u; id -g; postgres --version && pg_config "
                         "--bindir && initdb -D /tmp/pgdata --encoding=UTF8 --locale=C.UTF-8 >/dev/null && echo initdb-ok")
    assert out.split()[:2] == ["26", "26"], out
    assert f"PostgreSQL) {standins.PREVIOUS_POSTGRES_MAJOR}." in out and "initdb-ok" in out
    assert f"/usr/lib/postgresql/{standins.PREVIOUS_POSTGRES_MAJOR}/bin" in out.split(), out

    # PgBouncer where CloudNativePG's instance manager starts it, as the Pooler's pods run (998:996).
    assert "PgBouncer" in containerd.run(ref["pgbouncer"], "/usr/bin/pgbouncer", "--version", read_only=True)
    assert containerd.run(ref["pgbouncer"], "sh", "-c", "id -u; id -g").split() == ["998", "996"]

    # git-sync and git (HOME=/tmp; the pods mount /tmp over a read-only root).
    assert "git-sync stand-in" in containerd.run(ref["git-sync"], "/git-sync", "--version", read_only=True)
    assert "git version" in containerd.run(ref["git-sync"], "git", "--version", read_only=True)
    assert containerd.run(ref["git-sync"], "sh", "-c", "echo $HOME").strip() == "/tmp"

    # (scripts/install-statsd-exporter sets no version into the binary: it reports an empty one.)
    assert "statsd_exporter, version" in containerd.run(ref["statsd-exporter"], "/bin/statsd_exporter", "--version",
                                                        read_only=True)

    # The operator image as CloudNativePG's init containers use it: `/manager bootstrap <dest>` copies itself.
    containerd.run(ref["cnpg-operator"], "/manager", "bootstrap", "/tmp/manager")
    assert "manager" in containerd.run(ref["cnpg-operator"], "/manager", "--help", read_only=True)

    # The Barman Cloud plugin's operator part, as its Deployment runs it (10001:10001, a read-only root).
    out = containerd.run(ref["barman-cloud-plugin"], "/manager", "--help", read_only=True)
    assert "operator" in out and "instance" in out, out

    # Its sidecar, as the plugin injects it into the PostgreSQL pods (26:26, a read-only root): barman-cloud-* on
    # PATH from /venv with boto3 and Debian's psycopg2, every module byte-compiled, and the same /manager.
    out = containerd.run(ref["barman-cloud-sidecar"], "barman-cloud-wal-archive", "--version", read_only=True)
    assert "3.19.1" in out, out
    out = containerd.run(ref["barman-cloud-sidecar"], "python3", "-c",
                         "import os, sys, json, importlib.util, boto3, psycopg2, barman; print(sys.prefix, "
                         "sys.version_info[:2], os.getuid(), os.getgid(), all(os.path.exists(importlib.util."
                         "cache_from_source(m.__file__)) for m in (json, boto3, barman)))", read_only=True)
    assert "/venv (3, 13) 26 26 True" in out, out
    assert "instance" in containerd.run(ref["barman-cloud-sidecar"], "/manager", "--help", read_only=True)

    # pause: started, it stays up; SIGTERM ends it at once.
    containerd.ctr("run", "-d", *containerd.private_dirs, ref["pause"], "pause-probe")
    time.sleep(0.5)
    assert "RUNNING" in containerd.ctr("tasks", "ls").stdout
    containerd.ctr("tasks", "kill", "-s", "SIGTERM", "pause-probe")
    deadline = time.monotonic() + 10
    while "RUNNING" in containerd.ctr("tasks", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "RUNNING" not in containerd.ctr("tasks", "ls").stdout, "pause ignored SIGTERM"
    containerd.ctr("tasks", "rm", "pause-probe")
    containerd.ctr("containers", "rm", "pause-probe")
