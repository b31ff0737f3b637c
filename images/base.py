"""The base every derived node image is built on, one per Debian suite (bookworm; trixie for PostgreSQL and
PgBouncer): `debootstrap --variant=minbase` plus python3, python3-venv, ca-certificates and tini, upgraded from
the suite's updates and security archive, without apt lists, docs, man pages or translations. It is one layer,
shared (same digest) by every image derived from it, and cached under its key (base_key) in
`node-images/base-<suite>-<key>`.

Also here: what is stripped from every root filesystem before its layer is written (strip_rootfs, used for the
derived images too), and the caches kept between builds and bind-mounted into every chroot: apt's lists (per
base) and packages (apt_archives), pip's cache and the host's CA bundle for pip.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from images.archive import LAYER_FORMAT, Layer, LayerWriter
from images.chroot import chroot_mounts, run_in_chroot, run_logged, unmount_below
from images.common import digest, say, store

# Bump when the steps of ensure_base change (its data, the constants below, are part of the key already).
BASE_RECIPE = 2

SUITE = "bookworm"
# PostgreSQL and PgBouncer come from the next release: bookworm's PgBouncer (1.18) predates the `auth_dbname`
# setting CloudNativePG 1.29 writes into every Pooler's configuration, and trixie ships the PgBouncer (1.24.1) and
# the PostgreSQL major (17) the program pins.
NEXT_SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini")

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


def base_script(suite: str) -> str:
    return BASE_SCRIPT.format(MIRROR=MIRROR, SECURITY_MIRROR=SECURITY_MIRROR, suite=suite)


def base_key(suite: str = SUITE) -> str:
    return digest({"format": LAYER_FORMAT, "suite": suite, "mirror": MIRROR, "security": SECURITY_MIRROR,
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
