"""Builds the container images of the one-node test cluster (tests/node/) without a registry or a daemon.

Each image becomes a docker-archive tar (the `docker save` format: layer tars, a config JSON and a manifest.json
whose RepoTags hold the reference) that `ctr -n k8s.io images import` takes, tagged with exactly the reference the
program renders for a stack with the stand-in settings (images/standins.py), so the program runs unchanged on the
node. The references are read from the program's own code (components.images and the settings model), never
repeated here.

How an image is made:
- a base root filesystem: `debootstrap --variant=minbase bookworm` plus python3, python3-venv, ca-certificates
  and tini, upgraded from bookworm-security, without apt lists, docs, man pages or translations; one layer,
  shared (same digest) by every image derived from it, so containerd stores and unpacks it once;
- a derived image: an overlay mount over the base, a script run by `chroot` in it (apt-get, pip), and files
  copied in; its own layer is the overlay's upper directory (deletions become whiteouts);
- the images that need no operating system (pause, statsd_exporter, the CloudNativePG operator) are one small
  layer of their files.

Every image is cached under its key, a hash of everything that makes it (its recipe, files, the base's key, the
binaries it packs), so a warm run writes nothing. The cache lives outside the repository
(`$AIRFLOW_PLATFORM_CACHE/node-images`); the archives are in its `images/` folder, with `images.json`.

Building needs root (debootstrap, mount, chroot), the Debian mirror and PyPI; apt's lists and packages and pip's
cache are kept between builds. Nothing mounted is left behind, also when a step fails or the build is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import inspect
import io
import json
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "images"

# Bump when the way layers or archives are written changes: every image is then rebuilt.
LAYER_FORMAT = 1
# Bump when the steps of ensure_base change (its data, the constants below, are part of the key already).
BASE_RECIPE = 2
# A fixed time for the files of the images made without an operating system.
FILE_MTIME = 1_700_000_000

SUITE = "bookworm"
# PostgreSQL and PgBouncer come from the next release: bookworm's PgBouncer (1.18) predates the `auth_dbname`
# setting CloudNativePG 1.29 writes into every Pooler's configuration, and trixie ships the PgBouncer (1.24.1) and
# the PostgreSQL major (17) the program pins.
NEXT_SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini")
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Run in the fresh debootstrap: the suites to upgrade from, no docs or recommends in any later install, no
# daemon started by a package, and apt's binary caches off (they would land in every derived layer).
BASE_SCRIPT = """
cat > /etc/apt/sources.list <<EOF
deb {MIRROR} {suite} main
deb {MIRROR} {suite}-updates main
deb {SECURITY_MIRROR} {suite}-security main
EOF
cat > /etc/dpkg/dpkg.cfg.d/01-nodoc <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat > /etc/apt/apt.conf.d/90node-image <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
apt-get update -qq
apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade
apt-get -y -qq autoremove
python3 --version
tini --version
"""

# Removed from every root filesystem before its layer is written (globs under the root).
STRIP = (
    "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*", "usr/share/linda/*",
    "var/log/*.log", "var/log/apt/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
    "var/cache/apt/*.bin", "var/cache/ldconfig/aux-cache", "root/.cache", "root/.wget-hsts", "tmp/*", "var/tmp/*",
)
# Not in a layer at all: the runtime mounts its own.
SKIP_CONTENTS = ("dev", "proc", "sys")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BuildError(RuntimeError):
    pass


def cache_root() -> Path:
    if os.environ.get("AIRFLOW_PLATFORM_CACHE"):
        return Path(os.environ["AIRFLOW_PLATFORM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airflow-platform"


def store() -> Path:
    return cache_root() / "node-images"


def out_dir() -> Path:
    """NODE_IMAGES: the folder of archives (every *.tar one image) and images.json."""
    return store() / "images"


def docker_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def normalized(ref: str) -> str:
    """The reference as containerd stores it: `apache/airflow:x` is `docker.io/apache/airflow:x`."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


# --- the references, from the program's own code --------------------------------------------------------------


def program_refs() -> dict[str, str]:
    """Image name -> the reference the program renders for a stack with the stand-in settings (as written
    there, before containerd's normalisation), plus the pause image and the operator's own."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from components import images as program_images
    from components.config import Settings

    from images import standins

    # A disposable stack name, so that the settings model accepts the development login without more config.
    settings = Settings.model_validate({"instance": "dev", "auth": {"mode": "simple"}, **standins.STACK_CONFIG})
    return {
        "pause": "registry.k8s.io/pause:3.10",
        "airflow": settings.image,
        "postgres": settings.postgres.image_name,
        "pgbouncer": program_images.PGBOUNCER,
        "git-sync": settings.git_sync.image,
        "statsd-exporter": settings.metrics.exporter_image,
        "cnpg-operator": standins.CNPG_OPERATOR_IMAGE,
    }


# --- layers ----------------------------------------------------------------------------------------------------


@dataclass
class Layer:
    path: Path
    diff_id: str  # sha256:<hex> of the uncompressed tar
    size: int
    comment: str

    def meta(self) -> dict:
        return {"diff_id": self.diff_id, "size": self.size, "comment": self.comment}

    @classmethod
    def load(cls, path: Path) -> Layer | None:
        meta = path.with_suffix(".json")
        if not path.is_file() or not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        if path.stat().st_size != data["size"]:
            return None
        return cls(path, data["diff_id"], data["size"], data["comment"])


class _HashingFile(io.RawIOBase):
    def __init__(self, target):
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.target.write(data)
        self.size += len(data)
        return len(data)


class LayerWriter:
    """Writes one uncompressed layer tar, hashing it on the way (its diff_id)."""

    def __init__(self, path: Path, comment: str):
        self.path, self.comment = path, comment
        self._tmp = path.with_name(path.name + ".tmp")
        self._file = open(self._tmp, "wb")
        self._hashing = _HashingFile(self._file)
        self.tar = tarfile.open(fileobj=self._hashing, mode="w|", format=tarfile.PAX_FORMAT)
        self._links: dict[tuple[int, int], str] = {}

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)

    def finish(self) -> Layer:
        self.tar.close()
        self._file.close()
        os.replace(self._tmp, self.path)
        layer = Layer(self.path, "sha256:" + self._hashing.sha.hexdigest(), self._hashing.size, self.comment)
        self.path.with_suffix(".json").write_text(json.dumps(layer.meta()))
        return layer

    # Entries made up here (images without an operating system, whiteouts).
    def add_dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def add_host_file(self, name: str, source: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = source.stat().st_size
        with open(source, "rb") as f:
            self.tar.addfile(info, f)

    def add_symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self.tar.addfile(info)

    @staticmethod
    def _info(name: str, type_: bytes, mode: int, uid: int, gid: int, mtime: int = FILE_MTIME) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type, info.mode, info.uid, info.gid, info.mtime = type_, mode, uid, gid, mtime
        info.uname = info.gname = ""
        return info

    # A directory tree (a root filesystem, or an overlay's upper directory).
    def add_tree(self, root: Path, overlay_upper: bool = False) -> None:
        for rel, st in _walk(root):
            path = root / rel
            if overlay_upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                # overlayfs marks a deleted file with a 0/0 character device; an image layer with `.wh.<name>`.
                parent, _, base = rel.rpartition("/")
                self.tar.addfile(self._info(f"{parent}/.wh.{base}" if parent else f".wh.{base}", tarfile.REGTYPE, 0, 0, 0))
                continue
            info = self._info(rel, tarfile.REGTYPE, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                self.tar.addfile(info)
                if overlay_upper and _xattr(path, "trusted.overlay.opaque") == b"y":
                    # A directory that replaced a lower one hides everything below it.
                    self.tar.addfile(self._info(f"{rel}/.wh..wh..opq", tarfile.REGTYPE, 0, 0, 0))
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                self.tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self._links:
                    info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
                    self.tar.addfile(info)
                    continue
                if st.st_nlink > 1:
                    self._links[key] = rel
                capability = _xattr(path, "security.capability")
                if capability is not None:
                    info.pax_headers["SCHILY.xattr.security.capability"] = capability.decode("latin-1")
                info.size = st.st_size
                with open(path, "rb") as f:
                    self.tar.addfile(info, f)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
                self.tar.addfile(info)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                self.tar.addfile(info)
            # Sockets are left out: they mean nothing in an image.


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _walk(root: Path, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything below `root`, sorted, each directory before its contents; the
    contents of /dev, /proc and /sys are left out."""
    with os.scandir(root / rel if rel else root) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        child = f"{rel}/{name}" if rel else name
        st = os.lstat(root / child)
        yield child, st
        if stat.S_ISDIR(st.st_mode) and child not in SKIP_CONTENTS:
            yield from _walk(root, child)


def write_archive(path: Path, ref: str, layers: list[Layer], config: dict) -> int:
    """A docker-archive (`docker save` format) of `layers` tagged `ref`; returns its size."""
    image_config = {
        "architecture": docker_arch(),
        "os": "linux",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": layer.comment} for layer in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [f"{layer.diff_id.split(':', 1)[1]}/layer.tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": layer_names}]
    tmp = path.with_name(path.name + ".tmp")

    def member(name: str, size: int = 0, type_: bytes = tarfile.REGTYPE, mode: int = 0o644) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime = type_, size, mode, FILE_MTIME
        return info

    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
            for layer, name in zip(layers, layer_names):
                archive.addfile(member(name.split("/")[0], type_=tarfile.DIRTYPE, mode=0o755))
                archive.addfile(member(name.split("/")[0] + "/VERSION", 3), io.BytesIO(b"1.0"))
                with open(layer.path, "rb") as f:
                    archive.addfile(member(name, layer.size), f)
            archive.addfile(member(config_name, len(config_bytes)), io.BytesIO(config_bytes))
            manifest_bytes = json.dumps(manifest).encode()
            archive.addfile(member("manifest.json", len(manifest_bytes)), io.BytesIO(manifest_bytes))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


# --- mounts, chroot --------------------------------------------------------------------------------------------


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # Field 5 is the mount point, with spaces and the like octal-escaped.
            points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def mount_points_below(top: Path, include_top: bool = True) -> list[str]:
    """What is mounted below `top` (and at it, with `include_top`), deepest first."""
    prefix = str(top.resolve())
    points = [p for p in _mount_points() if p.startswith(prefix + "/") or (include_top and p == prefix)]
    return sorted(points, key=len, reverse=True)


def unmount_below(top: Path, include_top: bool = True) -> None:
    """Unmounts everything mounted below `top` (and at it), deepest first; lazily where a plain unmount fails."""
    for point in mount_points_below(top, include_top):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    if left := mount_points_below(top, include_top):
        raise BuildError(f"could not unmount {left}")


def _kill_processes_in(root: Path) -> None:
    """Kills what a package's script may have left running inside the chroot (it would hold the mounts)."""
    target = str(root.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "root") == target:
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"mount {' '.join(args)} failed: {proc.stderr.strip()}")


@contextlib.contextmanager
def chroot_mounts(rootfs: Path, binds: list[tuple[Path, str, bool]]) -> Iterator[None]:
    """/proc, /dev, the host's resolv.conf and `binds` ((host dir, path in the chroot, read-only)) mounted
    into `rootfs` for the duration; everything is unmounted afterwards, whatever happened, and the mount-point
    directories this created are removed again (so they leave no trace in an overlay's upper directory)."""
    created: list[Path] = []
    try:
        _mount("-t", "proc", "proc", str(rootfs / "proc"))
        _mount("--bind", "/dev", str(rootfs / "dev"))
        resolv = rootfs / "etc/resolv.conf"
        if resolv.is_symlink() or not resolv.exists():
            resolv.unlink(missing_ok=True)
            resolv.write_text("")
        _mount("--bind", "/etc/resolv.conf", str(resolv))
        for source, target, read_only in binds:
            point = rootfs / target.lstrip("/")
            if not point.exists():
                missing = [p for p in [point, *point.parents] if not p.exists()]
                created.extend(missing)  # deepest first
                if source.is_dir():
                    point.mkdir(parents=True)
                else:
                    point.parent.mkdir(parents=True, exist_ok=True)
                    point.touch()
            _mount("--bind", str(source), str(point))
            if read_only:
                _mount("-o", "remount,bind,ro", str(point))
        yield
    finally:
        _kill_processes_in(rootfs)
        unmount_below(rootfs, include_top=False)
        for path in created:
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


def _passthrough_env() -> dict[str, str]:
    names = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL",
             "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
    return {name: os.environ[name] for name in names if name in os.environ}


def run_logged(argv: list[str], log: Path, env: dict[str, str] | None = None, what: str = "") -> None:
    """Runs `argv` with its output in `log`; on failure, shows the end of the log and raises."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)[:500]}\n".encode())
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        say("\n".join("    " + line for line in tail))
        raise BuildError(f"{what or argv[0]} failed (exit {proc.returncode}); the whole log is {log}")


def run_in_chroot(rootfs: Path, script: str, log: Path, what: str, env: dict[str, str] | None = None) -> None:
    chroot_env = {
        "PATH": STD_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "DEBCONF_NONINTERACTIVE_SEEN": "true",
        **_passthrough_env(),
        **(env or {}),
    }
    run_logged(["chroot", str(rootfs), "/bin/sh", "-euxc", script], log, chroot_env, what)


def strip_rootfs(rootfs: Path) -> None:
    for pattern in STRIP:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for path in doc.rglob("*"):
            if (path.is_file() or path.is_symlink()) and path.name != "copyright":
                path.unlink()
    locale = rootfs / "usr/share/locale"
    if locale.is_dir():
        for path in locale.iterdir():
            if path.name != "locale.alias":
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


# --- the base --------------------------------------------------------------------------------------------------


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def base_script(suite: str) -> str:
    return BASE_SCRIPT.format(MIRROR=MIRROR, SECURITY_MIRROR=SECURITY_MIRROR, suite=suite)


def base_key(suite: str = SUITE) -> str:
    return _digest({"format": LAYER_FORMAT, "suite": suite, "mirror": MIRROR, "security": SECURITY_MIRROR,
                    "packages": BASE_PACKAGES, "script": base_script(suite), "strip": STRIP,
                    "recipe": BASE_RECIPE})[:16]


def base_dir(suite: str) -> Path:
    return store() / f"base-{suite}-{base_key(suite)}"


@dataclass
class Base:
    key: str
    dir: Path

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def apt_lists(self) -> Path:
        return self.dir / "apt-lists"

    @property
    def layer(self) -> Layer | None:
        return Layer.load(self.dir / "layer.tar")


def apt_archives() -> Path:
    path = store() / "apt-archives"
    (path / "partial").mkdir(parents=True, exist_ok=True)
    return path


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's pip trusts. Where the way out re-signs TLS, the package index is reachable only
    with it; it is bind-mounted for pip while building and never becomes part of an image."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def pip_cache() -> Path:
    path = Path(os.environ.get("PIP_CACHE_DIR") or Path.home() / ".cache" / "pip")
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_base(suite: str = SUITE) -> Base:
    base = Base(base_key(suite), base_dir(suite))
    if base.layer is not None and base.rootfs.is_dir():
        return base
    current = {base_dir(s) for s in (SUITE, NEXT_SUITE)}
    for old in store().glob("base-*"):
        if old not in current:
            unmount_below(old)
            shutil.rmtree(old)
    unmount_below(base.dir) if base.dir.exists() else None
    shutil.rmtree(base.dir, ignore_errors=True)
    base.dir.mkdir(parents=True)
    log = base.dir / "build.log"
    started = time.monotonic()
    say(f"==> base: debootstrap --variant=minbase {suite} + {', '.join(BASE_PACKAGES)} (about 3 minutes; log {log})")
    try:
        run_logged(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             f"--cache-dir={apt_archives()}", suite, str(base.rootfs), MIRROR],
            log, {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, "debootstrap",
        )
    finally:
        unmount_below(base.rootfs, include_top=False) if base.rootfs.exists() else None
    base.apt_lists.mkdir()
    with chroot_mounts(base.rootfs, [(base.apt_lists, "/var/lib/apt/lists", False), (apt_archives(), "/var/cache/apt/archives", False)]):
        run_in_chroot(base.rootfs, base_script(suite), log, "upgrading the base")
    # The lists live in apt-lists and the packages in apt-archives (bind-mounted into every chroot): what
    # debootstrap left in the rootfs itself goes.
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/archives/*.deb"):
        for path in base.rootfs.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (base.rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (base.rootfs / "etc/resolv.conf").write_text("")
    strip_rootfs(base.rootfs)
    with LayerWriter(base.dir / "layer.tar", f"debootstrap --variant=minbase {suite} + {' '.join(BASE_PACKAGES)}") as w:
        w.add_tree(base.rootfs)
        layer = w.finish()
    say(f"    base built in {time.monotonic() - started:.0f}s, layer {layer.size / 2**20:.0f} MiB")
    return base


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
    return _digest({
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


SCRATCH_INPUTS: dict[str, Callable[[Tools], object]] = {
    "pause": lambda tools: _file_identity(HERE / "pause" / "pause.c"),
    "statsd-exporter": lambda tools: _file_identity(tools.statsd_exporter),
    "cnpg-operator": lambda tools: _file_identity(tools.node_tools / "manager"),
}

AIRFLOW_SCRIPT = """
echo 'airflow:x:50000:0:airflow:/home/airflow:/bin/bash' >> /etc/passwd
apt-get update -qq
apt-get install -y -qq krb5-user
# The official image's layout: Airflow in /home/airflow/.local (a venv of the system Python here), AIRFLOW_HOME
# /opt/airflow owned by the user and group 0, group-writable.
python3 -m venv /home/airflow/.local
/home/airflow/.local/bin/python -m pip install -q --upgrade pip
/home/airflow/.local/bin/python -m pip install -q -r /tmp/build/airflow/requirements.txt
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
"""

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


IMAGE_NAMES = ("pause", "airflow", "postgres", "pgbouncer", "git-sync", "statsd-exporter", "cnpg-operator")


def specs(refs: dict[str, str]) -> list[Spec]:
    from images import standins

    major = standins.POSTGRES_MAJOR
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
    return [
        Spec("pause", refs["pause"], {"Entrypoint": ["/pause"], "User": "65535:65535"}, derived=False,
             scratch=_pause_layer),
        Spec("airflow", refs["airflow"],
             {"Entrypoint": ["/usr/bin/tini", "--", "/entrypoint"], "Cmd": [], "Env": airflow_env, "User": "50000",
              "WorkingDir": "/opt/airflow"},
             script=AIRFLOW_SCRIPT, inputs=(HERE / "airflow" / "requirements.txt", HERE / "airflow" / "entrypoint")),
        Spec("postgres", refs["postgres"],
             {"Cmd": ["postgres"], "User": "26",
              "Env": [f"PATH=/usr/lib/postgresql/{major}/bin:{STD_PATH}", "LANG=C.UTF-8", "PGDATA=/var/lib/postgresql/data/pgdata"]},
             script=POSTGRES_SCRIPT.format(major=major), suite=NEXT_SUITE),
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
    ]


def build_derived(spec: Spec, base: Base, tools: Tools, work: Path) -> Layer:
    upper, overlay_work, merged = work / "upper", work / "overlay-work", work / "merged"
    for path in (upper, overlay_work, merged):
        path.mkdir(parents=True)
    log = work / "build.log"
    _mount("-t", "overlay", "overlay", "-o",
           f"lowerdir={base.rootfs},upperdir={upper},workdir={overlay_work}", str(merged))
    try:
        binds = [
            (base.apt_lists, "/var/lib/apt/lists", False),
            (apt_archives(), "/var/cache/apt/archives", False),
            (pip_cache(), "/tmp/pip-cache", False),
            (HERE, "/tmp/build", True),
        ]
        env = {"PIP_CACHE_DIR": "/tmp/pip-cache", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
               "PIP_PROGRESS_BAR": "off"}
        if (ca := host_ca_bundle()) is not None:
            binds.append((ca, "/tmp/host-ca.crt", True))
            env["PIP_CERT"] = "/tmp/host-ca.crt"
        with chroot_mounts(merged, binds):
            run_in_chroot(merged, spec.script, log, f"building {spec.name}", env)
        for dest, (source, mode, uid, gid) in spec.files(tools).items():
            target = merged / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            os.chown(target, uid, gid)
            os.chmod(target, mode)
        strip_rootfs(merged)
    finally:
        unmount_below(merged)
    with LayerWriter(work / "layer.tar", f"{spec.name}: {spec.script.strip().splitlines()[0][:200]}") as w:
        w.add_tree(upper, overlay_upper=True)
        return w.finish()


def build_scratch(spec: Spec, tools: Tools, work: Path) -> Layer:
    work.mkdir(parents=True, exist_ok=True)
    with LayerWriter(work / "layer.tar", f"{spec.name}: its files") as w:
        spec.scratch(w, tools, work)
        return w.finish()


# --- the run ---------------------------------------------------------------------------------------------------


def _tools() -> Tools:
    def last_line(script: str) -> str:
        proc = subprocess.run([str(ROOT / "scripts" / script)], stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise BuildError(f"scripts/{script} failed (exit {proc.returncode}; its output is above)")
        return proc.stdout.strip().splitlines()[-1]

    node_tools = last_line("install-node-tools")
    if not node_tools.startswith("NODE_TOOLS="):
        raise BuildError(f"scripts/install-node-tools printed {node_tools!r}, not NODE_TOOLS=<dir>")
    return Tools(Path(node_tools.split("=", 1)[1]), Path(last_line("install-statsd-exporter")))


def load_index() -> dict[str, dict]:
    try:
        return {entry["name"]: entry for entry in json.loads((out_dir() / "images.json").read_text())["images"]}
    except (OSError, ValueError, KeyError):
        return {}


def build(stamp: str | None, rebuild: set[str]) -> Path:
    if os.geteuid() != 0:
        raise BuildError("building the node images needs root (debootstrap, mount, chroot)")
    for tool in ("debootstrap", "chroot", "mount", "gcc"):
        if shutil.which(tool) is None:
            raise BuildError(f"'{tool}' is not installed (Debian packages: debootstrap, coreutils, mount, gcc)")
    store().mkdir(parents=True, exist_ok=True)
    # A build killed outright (SIGKILL) may have left its mounts: take them away before anything else.
    unmount_below(store())
    out = out_dir()
    out.mkdir(parents=True, exist_ok=True)
    refs = program_refs()
    tools = _tools()
    index = load_index()
    all_specs = specs(refs)
    entries, bases = [], {}
    started = time.monotonic()
    for spec in all_specs:
        key = image_key(spec, tools)
        archive = out / f"{spec.name}.tar"
        old = index.get(spec.name)
        if (spec.name not in rebuild and "all" not in rebuild and old and old.get("key") == key
                and archive.is_file() and archive.stat().st_size == old.get("bytes")):
            entries.append(old)
            continue
        t0 = time.monotonic()
        work = store() / "work" / f"{spec.name}-{key}"
        for stale in [*(store() / "work").glob(f"{spec.name}-*")]:  # this one's, or an older key's, after a failure
            unmount_below(stale)
            shutil.rmtree(stale)
        work.parent.mkdir(parents=True, exist_ok=True)
        say(f"==> {spec.name}: building {spec.tag}")
        if spec.derived:
            if spec.suite not in bases:
                bases[spec.suite] = ensure_base(spec.suite)
            base = bases[spec.suite]
            layers = [base.layer, build_derived(spec, base, tools, work)]
        else:
            layers = [build_scratch(spec, tools, work)]
        size = write_archive(archive, spec.tag, layers, spec.config)
        shutil.rmtree(work)
        layer_sizes = " + ".join(f"{layer.size / 2**20:.1f}" for layer in layers)
        say(f"    {spec.name}: {size / 2**20:.1f} MiB ({layer_sizes} MiB layers) in {time.monotonic() - t0:.0f}s")
        entries.append({"name": spec.name, "ref": spec.tag, "archive": str(archive), "bytes": size, "key": key,
                        "layers": [layer.diff_id for layer in layers]})
        # Written after each image, so a later failure keeps what was built.
        _write_index(entries + [e for n, e in index.items() if n not in {x["name"] for x in entries}], None)
    wanted = {f"{spec.name}.tar" for spec in all_specs}
    for stale in out.glob("*.tar"):
        if stale.name not in wanted:
            stale.unlink()
    shutil.rmtree(store() / "work", ignore_errors=True)
    _write_index(entries, stamp)
    total = sum(entry["bytes"] for entry in entries)
    say(f"==> node images ready in {time.monotonic() - started:.0f}s: {len(entries)} archives, {total / 2**20:.0f} MiB")
    return out


def _write_index(entries: list[dict], stamp: str | None) -> None:
    out = out_dir()
    order = {name: i for i, name in enumerate(IMAGE_NAMES)}
    entries = sorted(entries, key=lambda e: order.get(e["name"], 99))
    tmp = out / "images.json.tmp"
    tmp.write_text(json.dumps({"images": entries}, indent=2) + "\n")
    os.replace(tmp, out / "images.json")
    stamp_file = out / ".stamp"
    if stamp is not None:
        stamp_file.write_text(stamp)
    else:
        stamp_file.unlink(missing_ok=True)


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    store().mkdir(parents=True, exist_ok=True)
    with open(store().with_name("node-images.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("==> another build of the node images is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _stop(signum, frame):
    # Turns SIGTERM/SIGHUP into an exception, so every `finally` unmounts what it mounted.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/build-node-images",
        description="Builds the container images of the one-node test cluster as docker-archive tars, tagged "
        "with the references the program renders (stand-ins: images/standins.py), without a registry or a "
        "daemon. The last line printed is NODE_IMAGES=<dir>; every *.tar there is one image, and images.json "
        "lists them. Cached: a warm run builds nothing.",
    )
    parser.add_argument("--print-dir", action="store_true", help="print the folder only if the images are built; exit 1 otherwise")
    parser.add_argument("--list", action="store_true", help="print the references this would build, one a line, and exit")
    parser.add_argument("--rebuild", action="append", default=[], metavar="NAME",
                        help="build NAME again even if cached (pause, airflow, postgres, pgbouncer, git-sync, "
                        "statsd-exporter, cnpg-operator, or all); repeatable")
    parser.add_argument("--stamp", help=argparse.SUPPRESS)  # from scripts/build-node-images: its inputs' hash
    args = parser.parse_args(argv)

    if args.list:
        for spec in specs(program_refs()):
            print(spec.tag)
        return 0
    if args.print_dir:
        stamp_file = out_dir() / ".stamp"
        if args.stamp and stamp_file.is_file() and stamp_file.read_text() == args.stamp:
            print(out_dir())
            return 0
        return 1
    names = {"all", *IMAGE_NAMES}
    unknown = set(args.rebuild) - names
    if unknown:
        parser.error(f"--rebuild: unknown image {sorted(unknown)} (one of {sorted(names)})")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        with _lock():
            out = build(args.stamp, set(args.rebuild))
    except BuildError as e:
        say(f"build-node-images: error: {e}")
        return 1
    print(f"NODE_IMAGES={out}")
    return 0
