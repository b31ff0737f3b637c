"""Builds the container images of the one-node test cluster (tests/node/) without a registry or a daemon. This
module is the run of scripts/build-node-images (`python -m images`): the build loop, images.json, the lock and the
command line.

Each image becomes a docker-archive tar (the `docker save` format: layer tars, a config JSON and a manifest.json
whose RepoTags hold the reference) that `ctr -n k8s.io images import` takes, tagged with exactly the reference the
program renders for a stack with the stand-in settings (images/standins.py), so the program runs unchanged on the
node. The references are read from the program's own code (components.images and the settings model), never
repeated here.

How an image is made:
- a base root filesystem per Debian suite (bookworm; trixie for PostgreSQL, PgBouncer and the Barman Cloud
  plugin's sidecar): `debootstrap --variant=minbase` plus python3, python3-venv, ca-certificates and tini, upgraded
  from the suite's updates and security archive, without apt lists, docs, man pages or translations; one layer,
  shared (same digest) by every image derived from it, so containerd stores and unpacks it once;
- a derived image: an overlay mount over the base, a script run by `chroot` in it (apt-get, pip), and files
  copied in; its own layer is the overlay's upper directory (deletions become whiteouts);
- the images that need no operating system (pause, statsd_exporter, the CloudNativePG operator, CoreDNS, the
  Barman Cloud plugin) are one small layer of their files.

Every image is cached under its key, a hash of everything that makes it (its recipe, files, the base's key, the
binaries it packs), so a warm run writes nothing. The cache lives outside the repository
(`$AIRFLOW_PLATFORM_CACHE/node-images`); the archives are in its `images/` folder, with `images.json`.

Building needs root (debootstrap, mount, chroot), the Debian mirror and PyPI; apt's lists and packages and pip's
cache are kept between builds. Nothing mounted is left behind, also when a step fails or the build is stopped.

The parts: images/common.py (paths, the cache location, errors), images/archive.py (layers and docker-archives),
images/chroot.py (mounts, running in a chroot), images/base.py (the debootstrap base per Debian suite, the apt and
pip caches), images/specs.py (the images, their references and cache keys). The names other code uses from here
(specs, program_refs, normalized, mount_points_below, unmount_below) are re-exported.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

from images.archive import Layer, LayerWriter, write_archive
from images.base import Base, apt_archives, ensure_base, host_ca_bundle, pip_cache, strip_rootfs
from images.chroot import chroot_mounts, mount, mount_points_below, run_in_chroot, unmount_below
from images.common import HERE, ROOT, BuildError, out_dir, say, store
from images.specs import IMAGE_NAMES, Spec, Tools, image_key, normalized, program_refs, specs

# What other code (tests/node/test_images.py, images/__main__.py) takes from here.
__all__ = ["BuildError", "build", "main", "mount_points_below", "normalized", "program_refs", "specs", "unmount_below"]


# --- building one image ----------------------------------------------------------------------------------------


def build_derived(spec: Spec, base: Base, tools: Tools, work: Path) -> Layer:
    upper, overlay_work, merged = work / "upper", work / "overlay-work", work / "merged"
    for path in (upper, overlay_work, merged):
        path.mkdir(parents=True)
    log = work / "build.log"
    mount("-t", "overlay", "overlay", "-o",
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
                        help=f"build NAME again even if cached ({', '.join(IMAGE_NAMES)}, or all); repeatable")
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
