"""Mounts and chroot for the node-image builder: what is mounted below a folder and unmounting it (deepest first,
lazily where need be; also what a killed build left), the mounts a chroot needs (/proc, /dev, resolv.conf and bind
mounts, all taken away again whatever happens), killing what a package's script left running in the chroot,
and running a script in it (or any command) with its output in a log.

Used by images/base.py and images/build.py; tests/node/test_images.py uses mount_points_below and unmount_below
(through images.build) to check its containerd left nothing mounted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

from images.common import STD_PATH, BuildError, say


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


def mount(*args: str) -> None:
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
        mount("-t", "proc", "proc", str(rootfs / "proc"))
        mount("--bind", "/dev", str(rootfs / "dev"))
        resolv = rootfs / "etc/resolv.conf"
        if resolv.is_symlink() or not resolv.exists():
            resolv.unlink(missing_ok=True)
            resolv.write_text("")
        mount("--bind", "/etc/resolv.conf", str(resolv))
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
            mount("--bind", str(source), str(point))
            if read_only:
                mount("-o", "remount,bind,ro", str(point))
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
