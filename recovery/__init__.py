"""Deploys that go wrong: an update killed mid-way, another update of the same stack running, a service that stops
answering. How our tools recognise each, what they say, and the one command that puts a stack back in order:

    scripts/recover-stack STACK [--force]     a stack of the backend PULUMI_BACKEND_URL names (CI, branch envs)
    scripts/recover-stack --local             the stack scripts/local-up deploys

What a killed update leaves (a DIY backend: file://, s3://; docs/recovering-an-interrupted-update.md):
- its lock, `.pulumi/locks/<org>/<project>/<stack>/<id>.json`, naming user@host and the pid of the `pulumi`
  process that took it. Every later update, refresh, import and destroy of the stack refuses to start while it is
  there;
- pending operations in the state: every resource operation that had begun and not ended. A pending create may
  or may not exist outside the state (its request may have been applied, its answer never read); the engine keeps
  pending creates until someone resolves them, and `pulumi refresh --import-pending-creates` does not record the
  resources it is given in 3.259 (it drops them, like --clear-pending-creates);
- sometimes a half-written state file: gocloud's fileblob (file:// backends) rewrites a state file's `.attrs`
  sidecar in place before it renames the new state into place, and an empty sidecar makes every later command
  fail with `failed to load checkpoint: EOF` (`repair_file_backend`);
- the engine's plugin processes, still running.

`recover` resolves all of it, for what our program creates:
1. on a file backend, a sidecar left empty is written again and temp files of unfinished writes are removed;
2. the lock is removed (`pulumi cancel`, which deletes every lock of the stack) only when its process is gone: same
   host and that pid is no `pulumi` process. A lock taken on another machine is removed only with --force, once the
   operator knows no job there is updating the stack;
3. the killed engine's plugins, which outlive it (own process groups), are stopped;
4. each pending create is settled by asking the service: a Kubernetes object is recorded under its name (the
   refresh of step 5 then reads it from the API server, or drops it when it was never made); the log bucket is
   recorded if it exists and is empty (its settings applied again), dropped if it does not exist; a random value
   is dropped (it exists nowhere else). The state is written back with `pulumi stack import`, which also drops
   the other pending operations (updates, deletes);
5. `pulumi refresh` reads every recorded object back, so the state says what exists.
Then the interrupted command, run again, applies what the update had not finished: nothing is created twice
(objects are applied by name, the bucket is already recorded) and nothing is left outside the state.

By concern: `locks` (finding them, who holds them, removing a stale one), `file_backend` (what a kill leaves
half-written), `plugins` (the killed engine's), `pending` (settling each unfinished operation) and `bucket` (the log
bucket's pending create, taken over or dropped), `guard` (what the tools check before and around an update) and
`failures` (a failed update in words), `recovering` (`recover`: the steps above in order), `cli` (the command).
The names below are the package's interface; `common` holds what every part shares.

Every module's top level is the standard library alone: scripts/recover-stack checks its arguments with
`build_parser` before it sets up the venv.
"""

from recovery.cli import build_parser, main, open_for_recovery
from recovery.common import BUCKET_TYPE, PROJECT, RECOVER, ROOT, DeployFailed, RecoveryRefused, recover_command
from recovery.failures import Failure, cause_of, explain_failure, failures_in
from recovery.file_backend import repair_file_backend
from recovery.guard import Found, check, inspect, lock_refusal, open_checked, refusal_to_deploy, unreadable, up
from recovery.locks import Lock, backend_locks, backend_url, file_backend_root, file_locks, locks_in
from recovery.pending import Pending, pending_in, settle
from recovery.plugins import orphaned_plugins, stop_orphaned_plugins
from recovery.recovering import recover

__all__ = [
    "BUCKET_TYPE", "PROJECT", "RECOVER", "ROOT",
    "DeployFailed", "RecoveryRefused", "recover_command",
    "Lock", "backend_locks", "backend_url", "file_backend_root", "file_locks", "locks_in",
    "repair_file_backend", "orphaned_plugins", "stop_orphaned_plugins",
    "Pending", "pending_in", "settle",
    "Found", "check", "inspect", "lock_refusal", "open_checked", "refusal_to_deploy", "unreadable", "up",
    "Failure", "cause_of", "explain_failure", "failures_in",
    "recover",
    "build_parser", "main", "open_for_recovery",
]
