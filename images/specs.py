"""The node images themselves: the reference each is tagged with, read from the program's own code for a stack
with the stand-in settings (program_refs; images/standins.py), and each image's spec: its config (entrypoint,
user, environment), the script run in its chroot over the base (Airflow, the current and the previous one;
PostgreSQL, PgBouncer, git-sync, the Barman Cloud plugin's sidecar) or the function that writes its one layer
(pause, statsd_exporter, the CloudNativePG operator, CoreDNS, the Barman Cloud plugin), and the files it packs.

image_key is each image's cache key: a hash of everything that makes it (its recipe, files, the base's key, the
source of its layer function and the binaries it packs). images/build.py builds the specs;
tests/node/test_images.py checks their references (through images.build).
"""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from images.archive import LAYER_FORMAT, LayerWriter, docker_arch
from images.base import MIRROR, NEXT_SUITE, SECURITY_MIRROR, SUITE, base_key
from images.common import HERE, ROOT, STD_PATH, BuildError, digest


# --- the references, from the program's own code --------------------------------------------------------------


def program_refs() -> dict[str, str]:
    """Image name -> the reference the program renders for a stack with the stand-in settings (as written
    there, before containerd's normalisation), plus the images of the node itself: pause, the operator's own, the
    cluster DNS and the Barman Cloud plugin's two (its operator part and the sidecar it injects)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from components import images as program_images
    from components.settings import Settings

    from images import standins

    # A disposable stack name, so that the settings model accepts the development login without more config.
    settings = Settings.model_validate({"instance": "dev", "auth": {"mode": "simple"}, **standins.STACK_CONFIG})
    # The upgrade test's starting point (tests/node/test_upgrade.py): the same stack at the previous Airflow.
    previous = Settings.model_validate({"instance": "dev", "auth": {"mode": "simple"}, **standins.STACK_CONFIG,
                                        "airflowVersion": standins.PREVIOUS_AIRFLOW_VERSION})
    # The PostgreSQL upgrade test's starting point (tests/node/test_postgres_upgrade.py): the previous major.
    previous_pg = Settings.model_validate({"instance": "dev", "auth": {"mode": "simple"}, **standins.STACK_CONFIG,
                                           "postgres": {"version": standins.PREVIOUS_POSTGRES_MAJOR}})
    return {
        "pause": "registry.k8s.io/pause:3.10",
        "airflow": settings.image,
        "airflow-previous": previous.image,
        "postgres": settings.postgres.image_name,
        "postgres-previous": previous_pg.postgres.image_name,
        "pgbouncer": program_images.PGBOUNCER,
        "git-sync": settings.git_sync.image,
        "statsd-exporter": settings.metrics.exporter_image,
        "cnpg-operator": standins.CNPG_OPERATOR_IMAGE,
        "coredns": standins.COREDNS_IMAGE,
        "barman-cloud-plugin": standins.BARMAN_CLOUD_PLUGIN_IMAGE,
        "barman-cloud-sidecar": standins.BARMAN_CLOUD_SIDECAR_IMAGE,
    }


def normalized(ref: str) -> str:
    """The reference as containerd stores it: `apache/airflow:x` is `docker.io/apache/airflow:x`."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


# --- the images ------------------------------------------------------------------------------------------------


@dataclass
class Tools:
    """The Go-built binaries the images pack: scripts/install-node-tools and scripts/install-statsd-exporter."""

    node_tools: Path
    statsd_exporter: Path


@dataclass
class Spec:
    name: str
    ref: str  # as the program renders it
    config: dict  # the image config: Entrypoint, Cmd, Env, User, WorkingDir
    derived: bool = True  # on the base (else: only its own files)
    suite: str = SUITE  # the Debian release of that base
    script: str = ""  # run by chroot in the derived image, with images/ read-only at /tmp/build
    inputs: tuple[Path, ...] = ()  # the files of images/ the script reads (part of the key)
    # Files copied in after the script: path in the image -> (host file, mode, uid, gid).
    files: Callable[[Tools], dict[str, tuple[Path, int, int, int]]] = lambda tools: {}
    # For images without an operating system: writes the whole layer.
    scratch: Callable[[LayerWriter, Tools, Path], None] | None = None

    @property
    def tag(self) -> str:
        return normalized(self.ref)


def _file_identity(path: Path) -> str:
    """What makes a file part of a key: its bytes (a rebuilt binary that came out the same changes nothing)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def image_key(spec: Spec, tools: Tools) -> str:
    files = {dest: [_file_identity(src), mode, uid, gid] for dest, (src, mode, uid, gid) in spec.files(tools).items()}
    scratch = None
    if spec.scratch is not None:
        # The writer's own source is part of what makes the image.
        scratch = inspect.getsource(spec.scratch)
    return digest({
        "format": LAYER_FORMAT, "ref": spec.tag, "config": spec.config, "script": spec.script, "files": files,
        "inputs": {str(path.relative_to(HERE)): _file_identity(path) for path in spec.inputs},
        "base": base_key(spec.suite) if spec.derived else None, "scratch": scratch,
        "scratch_inputs": SCRATCH_INPUTS.get(spec.name, lambda tools: None)(tools),
    })[:16]


def _passwd(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _pause_layer(w: LayerWriter, tools: Tools, work: Path) -> None:
    binary = work / "pause"
    source = HERE / "pause" / "pause.c"
    proc = subprocess.run(["gcc", "-static", "-Os", "-Wall", "-o", str(binary), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"gcc could not build {source}:\n{proc.stderr}")
    subprocess.run(["strip", str(binary)], check=True)
    w.add_host_file("pause", binary, 0o755)


def _statsd_exporter_layer(w: LayerWriter, tools: Tools, work: Path) -> None:
    # As upstream: the binary in /bin, running as nobody; it writes nothing.
    w.add_dir("bin")
    w.add_host_file("bin/statsd_exporter", tools.statsd_exporter, 0o755)
    w.add_dir("etc")
    w.add_bytes("etc/passwd", _passwd("root:x:0:0:root:/root:/sbin/nologin", "nobody:x:65534:65534:nobody:/home:/sbin/nologin"))
    w.add_bytes("etc/group", _passwd("root:x:0:", "nogroup:x:65534:"))
    w.add_dir("tmp", 0o1777)


def _cnpg_operator_layer(w: LayerWriter, tools: Tools, work: Path) -> None:
    # As upstream (distroless static, nonroot): /operator/manager_<arch>, /manager a link to it (the operator
    # globs operator/manager_* from / to learn its architectures), and user 65532.
    w.add_dir("operator")
    w.add_host_file(f"operator/manager_{docker_arch()}", tools.node_tools / "manager", 0o755, 65532, 65532)
    w.add_symlink("manager", f"operator/manager_{docker_arch()}")
    w.add_dir("etc")
    w.add_bytes("etc/passwd", _passwd("root:x:0:0:root:/root:/sbin/nologin", "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"))
    w.add_bytes("etc/group", _passwd("root:x:0:", "nonroot:x:65532:"))
    w.add_dir("home")
    w.add_dir("home/nonroot", 0o700, 65532, 65532)
    w.add_dir("tmp", 0o1777)


def _coredns_layer(w: LayerWriter, tools: Tools, work: Path) -> None:
    # As upstream (distroless static): /coredns, run as nonroot 65532, writing nothing. Upstream's binary carries
    # the NET_BIND_SERVICE file capability for port 53; the layer writer sets no xattrs, so the pod lowers
    # net.ipv4.ip_unprivileged_port_start instead (testbed/node/cluster.py).
    w.add_host_file("coredns", tools.node_tools / "coredns", 0o755)
    w.add_dir("etc")
    w.add_bytes("etc/passwd", _passwd("root:x:0:0:root:/root:/sbin/nologin", "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"))
    w.add_bytes("etc/group", _passwd("root:x:0:", "nonroot:x:65532:"))
    w.add_dir("tmp", 0o1777)


def _barman_cloud_plugin_layer(w: LayerWriter, tools: Tools, work: Path) -> None:
    # As upstream's plugin image: the binary alone at /manager (`/manager operator`). Upstream's is UBI micro; the
    # binary needs none of it (static). The user is the one upstream's Deployment runs it as (10001:10001).
    w.add_host_file("manager", tools.node_tools / "barman-cloud-manager", 0o755)
    w.add_dir("etc")
    w.add_bytes("etc/passwd", _passwd("root:x:0:0:root:/root:/sbin/nologin",
                                      "plugin:x:10001:10001:plugin:/tmp:/sbin/nologin"))
    w.add_bytes("etc/group", _passwd("root:x:0:", "plugin:x:10001:"))
    w.add_dir("tmp", 0o1777)


SCRATCH_INPUTS: dict[str, Callable[[Tools], object]] = {
    "pause": lambda tools: _file_identity(HERE / "pause" / "pause.c"),
    "statsd-exporter": lambda tools: _file_identity(tools.statsd_exporter),
    "cnpg-operator": lambda tools: _file_identity(tools.node_tools / "manager"),
    "coredns": lambda tools: _file_identity(tools.node_tools / "coredns"),
    "barman-cloud-plugin": lambda tools: _file_identity(tools.node_tools / "barman-cloud-manager"),
}

# {requirements}: the pins' file in images/airflow/ (requirements.txt; requirements-3.2.txt for airflow-previous).
AIRFLOW_SCRIPT = """
echo 'airflow:x:50000:0:airflow:/home/airflow:/bin/bash' >> /etc/passwd
apt-get update -qq
apt-get install -y -qq krb5-user
# The official image's layout: Airflow in /home/airflow/.local (a venv of the system Python here), AIRFLOW_HOME
# /opt/airflow owned by the user and group 0, group-writable.
python3 -m venv /home/airflow/.local
/home/airflow/.local/bin/python -m pip install -q --upgrade pip
/home/airflow/.local/bin/python -m pip install -q -r /tmp/build/airflow/{requirements}
/home/airflow/.local/bin/python -m pip check || echo "warning: pip check reports conflicts (above)"
rm -rf /home/airflow/.cache /root/.cache
mkdir -p /opt/airflow
chown 50000:0 /home/airflow /opt/airflow
chmod 775 /home/airflow /opt/airflow
install -m 755 /tmp/build/airflow/entrypoint /entrypoint
AIRFLOW_HOME=/tmp/airflow-check /home/airflow/.local/bin/airflow version
rm -rf /tmp/airflow-check
"""

POSTGRES_SCRIPT = """
# CloudNativePG runs PostgreSQL as 26:26; the package must find that user (initdb needs a passwd entry), so it
# exists before the package creates its own. No cluster is created: the operator runs initdb.
echo 'postgres:x:26:26:PostgreSQL administrator:/var/lib/postgresql:/bin/bash' >> /etc/passwd
echo 'postgres:x:26:' >> /etc/group
mkdir -p /etc/postgresql-common
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
apt-get update -qq
apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql-{major}
test "$(id -u postgres):$(id -g postgres)" = 26:26
test ! -e /var/lib/postgresql/{major}/main
/usr/lib/postgresql/{major}/bin/postgres --version
locale -a | grep -qix 'C.utf8'
{old_major_libraries}"""

# Appended to the current major's script: CloudNativePG's in-place major upgrade runs the previous major's binaries
# (copied from the previous image, which is bookworm's) in this image, so the bookworm libraries they link that
# trixie lacks come from bookworm's archive, pinned low so that nothing else is taken from it. The check: every
# shared library of bookworm's postgresql-{old_major} (its binaries and modules; not the LLVM JIT, which pg_upgrade
# never loads) resolves here. images/standins.py says why the images are not on one release.
OLD_MAJOR_LIBRARIES_SCRIPT = """
for archive in "{MIRROR} {old_suite}" "{MIRROR} {old_suite}-updates" "{SECURITY_MIRROR} {old_suite}-security"; do
  echo "deb $archive main"
done > /etc/apt/sources.list.d/{old_suite}.list
for release in {old_suite} {old_suite}-updates {old_suite}-security; do
  printf 'Package: *\\nPin: release n=%s\\nPin-Priority: 100\\n\\n' "$release"
done > /etc/apt/preferences.d/{old_suite}
apt-get update -qq
apt-get install -y -qq {libraries}
rm -rf /tmp/old-pg && mkdir /tmp/old-pg && cd /tmp/old-pg
apt-get download -qq postgresql-{old_major}
dpkg-deb -x postgresql-{old_major}_*.deb root
missing=$(find root/usr/lib/postgresql/{old_major}/bin root/usr/lib/postgresql/{old_major}/lib -type f \\( -perm -u+x -o -name '*.so' \\) \\
  ! -name 'llvmjit*' -exec ldd {{}} + 2>&1 | grep 'not found' | sort -u || true)
[ -z "$missing" ] || {{ echo "postgresql-{old_major}'s binaries would not run here: $missing"; exit 1; }}
echo "every shared library of postgresql-{old_major}'s binaries and modules resolves here"
cd / && rm -rf /tmp/old-pg /etc/apt/sources.list.d/{old_suite}.list /etc/apt/preferences.d/{old_suite}
"""
# What bookworm's postgresql-15 links that trixie does not ship (trixie has libicu76 and libldap2).
OLD_MAJOR_LIBRARIES = ("libicu72", "libldap-2.5-0")


def postgres_script(major: int, previous: int | None = None) -> str:
    """The PostgreSQL image's script; with `previous`, one that also runs that major's binaries (bookworm's)."""
    extra = "" if previous is None else OLD_MAJOR_LIBRARIES_SCRIPT.format(
        MIRROR=MIRROR, SECURITY_MIRROR=SECURITY_MIRROR, old_suite=SUITE, old_major=previous,
        libraries=" ".join(OLD_MAJOR_LIBRARIES))
    return POSTGRES_SCRIPT.format(major=major, old_major_libraries=extra)

PGBOUNCER_SCRIPT = """
# The upstream image's user (CloudNativePG runs the Pooler's pods as 998:996).
echo 'pgbouncer:x:996:' >> /etc/group
echo 'pgbouncer:x:998:996:PgBouncer:/var/lib/pgbouncer:/usr/sbin/nologin' >> /etc/passwd
apt-get update -qq
apt-get install -y -qq -o Dpkg::Options::=--force-confold pgbouncer
# CloudNativePG's instance manager starts /usr/bin/pgbouncer; Debian installs it in /usr/sbin.
[ -e /usr/bin/pgbouncer ] || ln -s ../sbin/pgbouncer /usr/bin/pgbouncer
/usr/bin/pgbouncer --version
"""

GIT_SYNC_SCRIPT = """
echo 'git-sync:x:65533:65533:git-sync:/tmp:/usr/sbin/nologin' >> /etc/passwd
echo 'git-sync:x:65533:' >> /etc/group
apt-get update -qq
apt-get install -y -qq git openssh-client
git --version
"""

# What the Barman Cloud plugin injects into every PostgreSQL pod and recovery Job (`/manager instance`, `/manager
# restore`), which runs barman-cloud-* from /venv/bin: upstream's debian13 sidecar is trixie's Python 3.13 with
# containers/sidecar-requirements.in installed in /venv, run as 26:26. psycopg2 is Debian's (the venv sees the
# system's packages), so nothing is compiled; barman[cloud] brings boto3 for S3. The sidecar runs with a read-only
# root, so everything is byte-compiled here.
BARMAN_CLOUD_SIDECAR_SCRIPT = """
echo 'postgres:x:26:26:PostgreSQL administrator:/var/lib/postgresql:/bin/sh' >> /etc/passwd
echo 'postgres:x:26:' >> /etc/group
apt-get update -qq
apt-get install -y -qq python3-venv python3-psycopg2
python3 -m venv --system-site-packages /venv
/venv/bin/python -m pip install -q 'barman[cloud]==3.19.1'
/venv/bin/python -m pip check || echo "warning: pip check reports conflicts (above)"
/venv/bin/barman-cloud-wal-archive --version
/venv/bin/python -c 'import psycopg2, boto3; print("psycopg2", psycopg2.__version__, "boto3", boto3.__version__)'
/venv/bin/python -c "import compileall, sys, sysconfig; sys.exit(not compileall.compile_dir(sysconfig.get_path('stdlib'), quiet=1))"
/venv/bin/python -m compileall -q /venv
rm -rf /root/.cache
"""


IMAGE_NAMES = ("pause", "airflow", "airflow-previous", "postgres", "postgres-previous", "pgbouncer", "git-sync", "statsd-exporter",
               "cnpg-operator", "coredns", "barman-cloud-plugin", "barman-cloud-sidecar")


def _postgres_config(major: int) -> dict:
    # pg_config on PATH is the major's: CloudNativePG's upgrade `prepare` asks it where the binaries are.
    return {"Cmd": ["postgres"], "User": "26",
            "Env": [f"PATH=/usr/lib/postgresql/{major}/bin:{STD_PATH}", "LANG=C.UTF-8",
                    "PGDATA=/var/lib/postgresql/data/pgdata"]}


def specs(refs: dict[str, str]) -> list[Spec]:
    from images import standins

    major, previous_major = standins.POSTGRES_MAJOR, standins.PREVIOUS_POSTGRES_MAJOR
    airflow_env = [
        "PATH=/home/airflow/.local/bin:" + STD_PATH,
        "AIRFLOW_HOME=/opt/airflow",
        "AIRFLOW_UID=50000",
        "AIRFLOW_USER_HOME_DIR=/home/airflow",
        "HOME=/home/airflow",
        "LANG=C.UTF-8",
        "LC_ALL=C.UTF-8",
        "PYTHONUNBUFFERED=1",
    ]
    airflow_config = {"Entrypoint": ["/usr/bin/tini", "--", "/entrypoint"], "Cmd": [], "Env": airflow_env,
                      "User": "50000", "WorkingDir": "/opt/airflow"}
    return [
        Spec("pause", refs["pause"], {"Entrypoint": ["/pause"], "User": "65535:65535"}, derived=False,
             scratch=_pause_layer),
        *(Spec(name, refs[name], airflow_config, script=AIRFLOW_SCRIPT.format(requirements=requirements.name),
               inputs=(requirements, HERE / "airflow" / "entrypoint"))
          for name, requirements in (("airflow", HERE / "airflow" / "requirements.txt"),
                                     ("airflow-previous", standins.PREVIOUS_AIRFLOW_REQUIREMENTS))),
        Spec("postgres", refs["postgres"], _postgres_config(major), script=postgres_script(major, previous_major),
             suite=NEXT_SUITE),
        # The previous major on the bookworm base, bookworm's own (images/standins.py).
        Spec("postgres-previous", refs["postgres-previous"], _postgres_config(previous_major),
             script=postgres_script(previous_major), suite=SUITE),
        Spec("pgbouncer", refs["pgbouncer"], {"Cmd": ["/usr/bin/pgbouncer", "--help"], "User": "998", "Env": [f"PATH={STD_PATH}"]},
             script=PGBOUNCER_SCRIPT, suite=NEXT_SUITE),
        Spec("git-sync", refs["git-sync"],
             {"Entrypoint": ["/git-sync"], "User": "65533:65533", "Env": [f"PATH={STD_PATH}", "HOME=/tmp"], "WorkingDir": "/tmp"},
             script=GIT_SYNC_SCRIPT,
             # Our stand-in (the module proxy serves no k8s.io/git-sync): python3 from the base, git from Debian.
             files=lambda tools: {"/git-sync": (HERE / "git-sync" / "git_sync.py", 0o755, 0, 0)}),
        Spec("statsd-exporter", refs["statsd-exporter"], {"Entrypoint": ["/bin/statsd_exporter"], "User": "65534"},
             derived=False, scratch=_statsd_exporter_layer),
        Spec("cnpg-operator", refs["cnpg-operator"], {"Entrypoint": ["/manager"], "User": "65532:65532", "WorkingDir": "/"},
             derived=False, scratch=_cnpg_operator_layer),
        Spec("coredns", refs["coredns"], {"Entrypoint": ["/coredns"], "User": "65532:65532", "WorkingDir": "/"},
             derived=False, scratch=_coredns_layer),
        Spec("barman-cloud-plugin", refs["barman-cloud-plugin"],
             {"Entrypoint": ["/manager"], "User": "10001:10001", "WorkingDir": "/"},
             derived=False, scratch=_barman_cloud_plugin_layer),
        Spec("barman-cloud-sidecar", refs["barman-cloud-sidecar"],
             {"Entrypoint": ["/manager"], "User": "26:26", "Env": [f"PATH=/venv/bin:{STD_PATH}"], "WorkingDir": "/"},
             script=BARMAN_CLOUD_SIDECAR_SCRIPT, suite=NEXT_SUITE,
             files=lambda tools: {"/manager": (tools.node_tools / "barman-cloud-manager", 0o755, 0, 0)}),
    ]
