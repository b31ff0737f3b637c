"""A stack's locks: reading them (from a file backend's lock folder, or from the engine's refusal), telling whether
the process that took one still runs, and removing a stale one."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote, urlsplit

from recovery.common import PROJECT, RecoveryRefused, recover_command

if TYPE_CHECKING:
    from pulumi import automation as auto


@dataclass(frozen=True)
class Lock:
    where: str  # the lock file, as a URL
    user: str
    host: str
    pid: int
    since: str

    @property
    def holder(self) -> str:
        """'running': its `pulumi` process is alive on this machine; 'gone': it is not; 'elsewhere': the lock was
        taken on another machine, whose processes this one cannot see."""
        if self.host != socket.gethostname():
            return "elsewhere"
        try:
            argv0 = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "gone"
        return "running" if Path(argv0).name.startswith("pulumi") and state != "Z" else "gone"

    def describe(self) -> str:
        status = {
            "running": "that process is running on this machine: an update of this stack is in progress",
            "gone": "that process is gone: the update that took the lock was interrupted",
            "elsewhere": "taken on another machine, whose processes cannot be checked from here",
        }[self.holder]
        return f"lock {self.where}: taken by {self.user}@{self.host}, pid {self.pid}, at {self.since}; {status}"


# The engine's words for a lock it found (pkg/backend/diy/lock.go).
_LOCK_LINE = re.compile(r"^\s*(?P<where>\S+): created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\) at (?P<since>\S+)\s*$",
                        re.MULTILINE)


def locks_in(text: str) -> list[Lock]:
    """The locks an engine error lists (`the stack is currently locked by N lock(s)...`)."""
    return [Lock(m["where"].split("?", 1)[0], m["user"], m["host"], int(m["pid"]), m["since"])
            for m in _LOCK_LINE.finditer(text)]


def backend_url(stack: "auto.Stack | None" = None) -> str | None:
    """The state backend the stack's workspace uses: its environment, ours, or what `pulumi login` stored."""
    url = ((stack.workspace.env_vars or {}) if stack is not None else {}).get("PULUMI_BACKEND_URL")
    if url := url or os.environ.get("PULUMI_BACKEND_URL"):
        return url
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    try:
        return json.loads((home / "credentials.json").read_text()).get("current")
    except (OSError, ValueError):
        return None


def file_backend_root(url: str | None) -> Path | None:
    if not url or not url.startswith("file://"):
        return None
    path = unquote(urlsplit(url).netloc + urlsplit(url).path) if not url.startswith("file:///") else unquote(urlsplit(url).path)
    return Path(os.path.expanduser(path))


def backend_locks(stack: "auto.Stack") -> list[Lock] | None:
    """The stack's locks, read from a file backend's lock folder; None where they cannot be listed without taking
    the lock (other backends: the engine lists them when it refuses an operation, see `locks_in`)."""
    root = file_backend_root(backend_url(stack))
    return None if root is None else file_locks(root, stack.name)


def file_locks(root: Path, stack: str) -> list[Lock]:
    folders = [*(root / ".pulumi" / "locks").glob(f"*/{PROJECT}/{stack}"), root / ".pulumi" / "locks" / stack]
    locks = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                content = json.loads(path.read_text())
            except (OSError, ValueError):
                content = {"username": "?", "hostname": "(unreadable lock file)"}
            locks.append(Lock(f"file://{path}", str(content.get("username")), str(content.get("hostname")),
                              int(content.get("pid") or 0), str(content.get("timestamp"))))
    return locks


def clear_locks(stack: "auto.Stack", locks: list[Lock] | None, force: bool, out: Callable[[str], None]) -> None:
    if not locks:
        return
    if running := [lock for lock in locks if lock.holder == "running"]:
        raise RecoveryRefused(
            f"not recovering stack {stack.name}: an update of it is running, its lock is not stale:\n"
            + "\n".join(f"  - {lock.describe()}" for lock in running)
            + "\nWait for it to end; if it then failed, run this again."
        )
    if (elsewhere := [lock for lock in locks if lock.holder == "elsewhere"]) and not force:
        raise RecoveryRefused(
            f"not removing the lock of stack {stack.name} taken on another machine:\n"
            + "\n".join(f"  - {lock.describe()}" for lock in elsewhere)
            + f"\nIf no job there is updating this stack (CI: its deploy job ended or was cancelled), run "
            f"`{recover_command(stack.name, force=True)}`."
        )
    stack.cancel()  # `pulumi cancel --yes`: on a DIY backend it deletes the stack's lock files
    out(f"  removed {len(locks)} stale lock(s)")

