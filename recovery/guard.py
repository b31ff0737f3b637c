"""What our tools check before and around an update: a stack an interrupted update left, or another update holds, is
refused with what was found and the command that recovers it; a failed update is said in words."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from recovery.common import DeployFailed, engine_text, recover_command
from recovery.failures import explain_failure
from recovery.locks import Lock, backend_locks, clear_locks, locks_in
from recovery.pending import Pending, pending_in

if TYPE_CHECKING:
    from pulumi import automation as auto


@dataclass
class Found:
    stack: str
    locks: list[Lock] | None  # None: the backend's locks cannot be listed (not a file backend)
    pending: list[Pending] = field(default_factory=list)

    @property
    def running(self) -> list[Lock]:
        return [lock for lock in self.locks or [] if lock.holder == "running"]

    @property
    def interrupted(self) -> bool:
        return bool(self.pending or self.locks) and not self.running

    def describe(self) -> str:
        lines = [lock.describe() for lock in self.locks or []]
        if self.pending:
            lines.append(f"{len(self.pending)} operation(s) in its state "
                         + ("in progress:" if self.running else "were begun and never finished:"))
            lines += [f"  {op.describe()}" for op in self.pending]
        return "\n".join(f"  - {line}" if not line.startswith("  ") else f"    {line.strip()}" for line in lines)


def inspect(stack: "auto.Stack") -> Found:
    deployment = stack.export_stack().deployment or {}
    return Found(stack.name, backend_locks(stack), pending_in(deployment))


def refusal_to_deploy(found: Found, recover_as: str) -> str | None:
    """What a tool says instead of starting an update, or None when it may start."""
    if found.running:
        return (f"stack {found.stack}: another update of it is running; wait for it to end, then run this again "
                f"(do not remove its lock):\n{found.describe()}")
    if not found.interrupted:
        return None
    elsewhere = any(lock.holder == "elsewhere" for lock in found.locks or [])
    maybe_running = found.locks is None or elsewhere
    text = f"stack {found.stack}: an earlier update of it was interrupted and left the stack inconsistent:\n{found.describe()}\n"
    if maybe_running:
        text += ("If an update of this stack is running right now on another machine (another CI job), wait for it "
                 "to end and run this again. Otherwise ")
    else:
        text += "To fix it, "
    text += (f"run `{recover_command(recover_as, force=elsewhere)}` once (it removes the stale lock, settles each "
             "unfinished operation with the cluster and the S3 store, and refreshes the state), then this again.")
    return text


def lock_refusal(error_text: str, stack: str, recover_as: str) -> str:
    """What a tool says when the engine refused an update because of a lock."""
    locks = locks_in(error_text)
    if not locks:
        return f"stack {stack} is locked by another update:\n  {error_text.strip()}"
    return refusal_to_deploy(Found(stack, locks), recover_as) or ""


def open_checked(open_stack: Callable[[], "auto.Stack"], name: str, recover_as: str | None = None,
                 discarding: bool = False) -> "auto.Stack":
    """`open_stack()`, then `check`: a stack whose state cannot be read, or that an interrupted update left, or
    that another update holds, is DeployFailed saying what to do. `discarding`: the caller is about to remove the
    stack (scripts/local-up on a new, empty S3 endpoint), so what an interrupted update left does not matter, but
    its stale lock would stop the removal: that lock is removed; an update still running is refused."""
    from pulumi import automation as auto

    try:
        stack = open_stack()
    except auto.errors.CommandError as error:
        raise DeployFailed(unreadable(engine_text(error), name, recover_as or name)) from None
    if discarding:
        found = inspect(stack)
        clear_locks(stack, found.locks, False, lambda line: None)
    else:
        check(stack, recover_as)
    return stack


def unreadable(text: str, name: str, recover_as: str | None) -> str:
    """What to say about a stack whose state cannot be read; `recover_as` None: said by recover itself."""
    errors = [line.strip() for line in text.splitlines() if "error:" in line]
    said = f"cannot open stack {name}: {errors[-1] if errors else text.strip()}"
    if "failed to load checkpoint" in text and recover_as is not None:
        said += ("\nAn update killed while it wrote the state leaves it unreadable (a file backend's metadata sidecar "
                 f"half-written). Run `{recover_command(recover_as)}` once (it repairs that, then recovers the "
                 "interrupted update), then this again.")
    elif "failed to load checkpoint" in text:
        said += (f"\nWhat a kill leaves half-written was repaired; the state itself is damaged. A file backend keeps "
                 f"the one before it as {name}.json.bak beside it: check it, then `pulumi stack import --file` it.")
    return said


def check(stack: "auto.Stack", recover_as: str | None = None) -> None:
    """Raises DeployFailed, saying what it found and what to do, when an update of `stack` must not start."""
    if refusal := refusal_to_deploy(inspect(stack), recover_as or stack.name):
        raise DeployFailed(refusal)


def up(stack: "auto.Stack", *, recover_as: str | None = None, check_first: bool = True, **kwargs: Any) -> "auto.UpResult":
    """`stack.up(**kwargs)` as our tools run it. It does not start on a stack an interrupted update left (saying
    what it found and the command that recovers it) or one another update holds; an update that fails becomes
    DeployFailed with what failed where, the engine's own output having been shown already. `recover_as` is what
    `recover_command` names: the stack (the default) or "--local". `check_first=False`: the caller has called
    `check` already."""
    from pulumi import automation as auto

    recover_as = recover_as or stack.name
    if check_first:
        check(stack, recover_as)
    try:
        return stack.up(**kwargs)
    except auto.errors.ConcurrentUpdateError as error:
        raise DeployFailed(lock_refusal(engine_text(error), stack.name, recover_as)) from None
    except auto.errors.CommandError as error:
        text = engine_text(error)
    # The engine killed mid-way (its lock and pending operations left) fails like any update: say which it was.
    try:
        found = inspect(stack)
    except auto.errors.CommandError as error:  # killed while it wrote the state
        raise DeployFailed(unreadable(engine_text(error), stack.name, recover_as)) from None
    if found.interrupted:
        code = re.search(r"^\s*code: (-?\d+)", text, re.MULTILINE)
        how = f"killed by signal {-int(code[1])}" if code and int(code[1]) < 0 else "stopped part-way"
        raise DeployFailed(f"`pulumi up` of stack {stack.name} was {how}.\n" + (refusal_to_deploy(found, recover_as) or ""))
    raise DeployFailed(explain_failure(text, stack.name))

