"""The plugin processes (providers, the dynamic-provider host) a killed engine leaves running, found and stopped."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable


_PLUGIN = re.compile(r"pulumi-(?:resource|analyzer)-|-m pulumi\.dynamic\b|pulumi[-_]policy")


def _proc(pid: int) -> tuple[list[str], int, str] | None:
    """(argv, parent pid, cwd) of a live process, or None."""
    try:
        base = Path(f"/proc/{pid}")
        argv = [a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a]
        fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
        return (argv, int(fields[1]), os.readlink(base / "cwd")) if fields[0] != "Z" else None
    except (OSError, ValueError, IndexError):
        return None


def orphaned_plugins(work_dir: Path) -> list[tuple[int, str]]:
    """The engine's plugin processes (providers, the dynamic-provider host) started in `work_dir` whose engine is
    gone. A killed `pulumi` leaves them running: each serves only its engine, so they do nothing but hold memory,
    or finish a call they were in."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        info = _proc(int(entry.name))
        if info is None or not _PLUGIN.search(" ".join(info[0])) or Path(info[2]) != work_dir.resolve():
            continue
        parent, seen = info[1], 0
        while parent > 1 and seen < 64:
            above = _proc(parent)
            if above is None or (above[0] and Path(above[0][0]).name == "pulumi"):
                break
            parent, seen = above[1], seen + 1
        engine = _proc(parent) if parent > 1 else None
        if engine is None or not engine[0] or Path(engine[0][0]).name != "pulumi":
            found.append((int(entry.name), " ".join(info[0])[:160]))
    return found


def stop_orphaned_plugins(work_dir: Path, out: Callable[[str], None]) -> None:
    import signal
    import time

    orphans = orphaned_plugins(work_dir)
    for pid, _ in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_proc(pid) for pid, _ in orphans):
        time.sleep(0.1)
    for pid, command in orphans:
        if _proc(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out(f"  stopped pid {pid}, an engine plugin the interrupted update left running: {command}")

