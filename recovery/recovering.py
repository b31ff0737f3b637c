"""`recover`: the whole of putting a stack back in order after an interrupted update (the package's docstring says
each step): its locks, the killed engine's plugins, the pending operations settled and imported, a refresh."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from recovery.common import DeployFailed, engine_text
from recovery.failures import explain_failure
from recovery.guard import inspect
from recovery.locks import clear_locks, locks_in
from recovery.pending import settle
from recovery.plugins import stop_orphaned_plugins

if TYPE_CHECKING:
    from pulumi import automation as auto


def recover(stack: "auto.Stack", *, force: bool = False, out: Callable[[str], None] = print) -> int:
    """Puts `stack` back in order after an interrupted update (see the package's docstring). Returns 0 when it is
    consistent (or was already); raises RecoveryRefused when an update is still running or a foreign lock is in
    the way without `force`."""
    from pulumi import automation as auto

    found = inspect(stack)
    if not found.pending and not found.locks:
        if found.locks is None:
            out(f"stack {stack.name}: no pending operation in its state (this backend's locks are checked when the "
                "state is written)")
        else:
            out(f"stack {stack.name}: nothing to recover: no lock, no pending operation")
            return 0
    else:
        out(f"stack {stack.name}: found\n{found.describe()}")
    clear_locks(stack, found.locks, force, out)
    # Before settling anything: a plugin of the killed engine may still be finishing a call.
    stop_orphaned_plugins(Path(stack.workspace.work_dir), out)

    deployment = stack.export_stack()
    recorded = {r["urn"] for r in (deployment.deployment or {}).get("resources") or []}
    settled, done = settle(deployment.deployment or {})
    for line in done:
        out(f"  {line}")
    if done or found.locks is None:
        deployment.deployment = settled
        try:
            stack.import_stack(deployment)
        except auto.errors.ConcurrentUpdateError as error:  # a backend whose locks we could not list
            clear_locks(stack, locks_in(engine_text(error)), force, out)
            stack.import_stack(deployment)
    out(f"refreshing stack {stack.name} from what exists")
    try:
        stack.refresh(color="never", on_output=lambda line: None)
    except auto.errors.CommandError as error:
        raise DeployFailed(explain_failure(engine_text(error), stack.name).replace("`pulumi up`", "`pulumi refresh`")) from None
    after = inspect(stack)
    resources = (stack.export_stack().deployment or {}).get("resources") or []
    adopted = {r["urn"] for r in settled.get("resources") or []} - recorded
    if adopted:
        kept = adopted & {r["urn"] for r in resources}
        out(f"  the refresh found {len(kept)} of the {len(adopted)} recorded creates made"
            + "".join(f"\n    never made, dropped: {urn.rsplit('::', 1)[-1]}" for urn in sorted(adopted - kept)))
    if after.pending or after.locks:
        raise DeployFailed(f"stack {stack.name} is still not consistent:\n{after.describe()}")
    out(f"stack {stack.name} is consistent: {len(resources)} resources in its state, no lock, no pending operation. "
        "Run the command that was interrupted again: it applies what the update had not finished.")
    return 0

