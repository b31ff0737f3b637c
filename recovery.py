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

This module's top level is the standard library alone: scripts/recover-stack checks its arguments with
`build_parser` before it sets up the venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent
PROJECT = "airflow-platform"
RECOVER = "scripts/recover-stack"
BUCKET_TYPE = "pulumi-python:dynamic:S3Bucket"


class DeployFailed(Exception):
    """A deploy our tools did not start or that failed, with a message for the person running it (no traceback)."""


class RecoveryRefused(DeployFailed):
    """`recover` found something it must not touch (an update still running, a lock of another machine)."""


def recover_command(stack: str, *, force: bool = False) -> str:
    """The command that recovers `stack`: what every tool prints when it finds an interrupted update."""
    if stack == "--local":
        return f"{RECOVER} --local"
    return f"{RECOVER} {stack}" + (" --force" if force else "")


# ---------------------------------------------------------------------------------------------------------
# Locks


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


def repair_file_backend(url: str | None, stack: str, force: bool = False) -> list[str]:
    """What a kill can leave half-written in a file backend, repaired. gocloud's fileblob writes a blob's
    `<name>.attrs` sidecar (content type, MD5) in place, then renames the new blob into place: a process killed
    in between leaves the sidecar empty, and every later read of the stack fails with `failed to load checkpoint:
    EOF`. Such a sidecar is written again from the file it describes; temp files of unfinished writes go."""
    root = file_backend_root(url)
    if root is None:
        return []
    holders = {lock.holder for lock in file_locks(root, stack)}
    if "running" in holders or ("elsewhere" in holders and not force):
        return []  # its files may be an update's own, being written: the lock check says what to do
    meta = root / ".pulumi"
    files = [path for folder in (meta / "stacks" / PROJECT, meta / "stacks") if folder.is_dir()
             for path in folder.iterdir() if path.name.startswith(f"{stack}.")]
    for folder in (*meta.glob(f"locks/*/{PROJECT}/{stack}"), *meta.glob(f"history/{PROJECT}/{stack}")):
        files += [path for path in folder.iterdir()]
    done = []
    for path in files:
        if path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
            done.append(f"removed {path}, a write the kill interrupted")
        elif path.name.endswith(".attrs") and not _readable_json(path):
            described = path.with_name(path.name.removesuffix(".attrs"))
            if described.is_file():
                import base64
                import hashlib

                md5 = base64.b64encode(hashlib.md5(described.read_bytes()).digest()).decode()
                path.write_text(json.dumps({"user.cache_control": "", "user.content_disposition": "",
                                            "user.content_encoding": "", "user.content_language": "",
                                            "user.content_type": "text/plain; charset=utf-8", "user.metadata": None,
                                            "md5": md5}) + "\n")
                done.append(f"rewrote {path}, left empty by the kill")
            else:
                path.unlink()
                done.append(f"removed {path}, the sidecar of a file that is not there")
    return done


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


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


# ---------------------------------------------------------------------------------------------------------
# Pending operations


@dataclass(frozen=True)
class Pending:
    operation: str  # creating, updating, deleting, reading, importing
    urn: str
    type: str

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def describe(self) -> str:
        what = {"creating": "create", "updating": "update", "deleting": "delete", "reading": "read",
                "importing": "import"}.get(self.operation, self.operation)
        return f"{what} of {self.type.rsplit(':', 1)[-1]} {self.name} ({self.type})"


def pending_in(deployment: dict) -> list[Pending]:
    return [Pending(op.get("type", "?"), op["resource"]["urn"], op["resource"]["type"])
            for op in deployment.get("pending_operations") or []]


# ---------------------------------------------------------------------------------------------------------
# What the tools check before an update


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
        raise DeployFailed(unreadable(_text(error), name, recover_as or name)) from None
    if discarding:
        found = inspect(stack)
        _clear_locks(stack, found.locks, False, lambda line: None)
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
        raise DeployFailed(lock_refusal(_text(error), stack.name, recover_as)) from None
    except auto.errors.CommandError as error:
        text = _text(error)
    # The engine killed mid-way (its lock and pending operations left) fails like any update: say which it was.
    try:
        found = inspect(stack)
    except auto.errors.CommandError as error:  # killed while it wrote the state
        raise DeployFailed(unreadable(_text(error), stack.name, recover_as)) from None
    if found.interrupted:
        code = re.search(r"^\s*code: (-?\d+)", text, re.MULTILINE)
        how = f"killed by signal {-int(code[1])}" if code and int(code[1]) < 0 else "stopped part-way"
        raise DeployFailed(f"`pulumi up` of stack {stack.name} was {how}.\n" + (refusal_to_deploy(found, recover_as) or ""))
    raise DeployFailed(explain_failure(text, stack.name))


def _text(error: Exception) -> str:
    """The engine's exit code, output and error output, as the Automation API puts them in its errors."""
    return str(error)


# ---------------------------------------------------------------------------------------------------------
# Explaining a failed update


@dataclass(frozen=True)
class Failure:
    type: str
    name: str
    message: str

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


_DIAGNOSTIC_HEADER = re.compile(r"^  (?P<type>[\w./-]+:[\w./-]*:[\w./-]+) \((?P<name>[^)]*)\):\s*$")
_K8S_UNREACHED = re.compile(r'(?:Get|Post|Patch|Put|Delete|Head) "(?P<base>https?://[^/"]+)[^"]*": (?P<cause>.+)$')
_S3_UNREACHED = re.compile(r"the S3 endpoint (?P<base>\S+) could not be reached while (?P<action>\w+) bucket '(?P<bucket>[^']+)' \((?P<cause>.*?)\)\.")
_GENERIC_ENGINE_ERRORS = {"update failed", "preview failed", "refresh failed", "destroy failed"}


def failures_in(output: str) -> list[Failure]:
    """The resource errors of the engine's `Diagnostics:` section."""
    section = output.split("\nDiagnostics:\n", 1)[-1] if "\nDiagnostics:\n" in output else ""
    failures, current = [], None
    for line in section.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            break  # the next section (Outputs:, Resources:)
        if header := _DIAGNOSTIC_HEADER.match(line):
            current = header
            continue
        text = line.strip()
        if current is not None and text.startswith("error: "):
            message = text.removeprefix("error: ").removeprefix("Exception calling application: ")
            if message not in _GENERIC_ENGINE_ERRORS:
                failures.append(Failure(current["type"], current["name"], message))
    return failures


def cause_of(failure: Failure) -> str:
    """What went wrong, in words that name the service and its endpoint when it was one not answering."""
    if failure.type.startswith("kubernetes:") and (match := _K8S_UNREACHED.search(failure.message)):
        cause = match["cause"].rsplit(": ", 1)[-1] if "dial tcp" in match["cause"] else match["cause"]
        return f"the Kubernetes API server {match['base']} did not answer ({cause})"
    if match := _S3_UNREACHED.search(failure.message):
        return f"the S3 endpoint {match['base']} did not answer while {match['action']} bucket '{match['bucket']}' ({match['cause']})"
    return failure.message


def explain_failure(output: str, stack: str) -> str:
    failures = failures_in(output)
    if not failures:
        errors = [line.strip() for line in output.splitlines() if line.strip().startswith("error:")]
        detail = "\n".join(f"  {line}" for line in errors[-5:]) or "  (the engine gave no error message; its output is above)"
        return f"`pulumi up` of stack {stack} failed:\n{detail}"
    by_cause: dict[str, list[Failure]] = {}
    for failure in failures:
        by_cause.setdefault(cause_of(failure), []).append(failure)
    lines = [f"`pulumi up` of stack {stack} failed: {len(failures)} resource(s) not created or changed."]
    for cause, items in by_cause.items():
        names = ", ".join(f"{item.kind} {item.name}" for item in items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
        lines.append(f"  - {cause}: {names}")
    lines.append("What was done before the failure is recorded in the state. Once the service is back, run the same "
                 "command again: it continues from there.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Recovering


def _revealed(value: Any) -> Any:
    import engine

    return engine.revealed(value)


def _kubernetes_id(inputs: dict) -> str | None:
    metadata = inputs.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def _settle_bucket(resource: dict) -> tuple[dict | None, str]:
    """(the state entry recording the bucket, what was done) for a pending create of the log bucket."""
    from components import log_bucket_provider as provider
    from components.log_bucket_props import SECRET_KEYS, outputs, settings_from

    inputs = resource.get("inputs") or {}
    settings = settings_from(_revealed(inputs))
    bucket = settings["bucket"]
    try:
        with provider._s3_client(settings) as s3, provider._endpoint_errors(settings, "checking"):
            state = provider._bucket_state(s3, bucket)
            if state == "absent":
                return None, f"bucket '{bucket}' was never created: dropped from the state (the next up creates it)"
            if state == "elsewhere" or (refusal := provider.adoption_refusal(s3, settings)):
                why = "it belongs to another account or region" if state == "elsewhere" else refusal
                return None, (f"bucket '{bucket}' exists but is not this create's ({why}): dropped from the state; "
                              "the next up refuses it, as for any bucket already there")
            outs = outputs(settings, provider._apply_settings(s3, settings))
    except Exception as error:  # noqa: BLE001 - the store's answer decides; without one, the next up does
        return None, (f"bucket '{bucket}' could not be checked ({error}): dropped from the state; the next up "
                      "creates it, or takes it over if this create made it (it is then empty)")
    for key in (*SECRET_KEYS, "__provider"):
        if key in inputs:
            outs[key] = inputs[key]  # the exported (secret) form, which `stack import` encrypts again
    return {**resource, "id": bucket, "outputs": outs}, f"bucket '{bucket}' exists and is empty: recorded as created"


def settle(deployment: dict) -> tuple[dict, list[str]]:
    """The deployment with every pending operation settled: pending creates recorded as resources where what
    they create may exist (the refresh that follows confirms each or drops it), the rest dropped."""
    deployment = dict(deployment)
    resources = list(deployment.get("resources") or [])
    live = {r["urn"] for r in resources if not r.get("delete")}
    done = []
    for op in deployment.get("pending_operations") or []:
        resource, kind = dict(op["resource"]), op.get("type")
        label = f"{resource['type'].rsplit(':', 1)[-1]} {resource['urn'].rsplit('::', 1)[-1]}"
        if kind != "creating":
            done.append(f"{kind} {label}: dropped; the refresh reads its real state")
        elif resource["urn"] in live:  # the create of a replacement: the state records the object it replaces
            done.append(f"create replacing {label}: dropped; the refresh reads the recorded one, the next up "
                        "replaces it again")
        elif not resource.get("custom"):
            resources.append(resource)
            done.append(f"create of component {label}: recorded (it exists only in the state)")
        elif resource["type"] == BUCKET_TYPE:
            entry, what = _settle_bucket(resource)
            resources += [entry] if entry else []
            done.append(what)
        elif resource["type"].startswith("kubernetes:") and not resource["type"].startswith("pulumi:providers"):
            object_id = _kubernetes_id(resource.get("inputs") or {})
            if object_id is None:
                done.append(f"create of {label}: dropped; it has no name to look it up by: check the cluster for it")
                continue
            resources.append({**resource, "id": object_id, "outputs": resource.get("inputs") or {}})
            done.append(f"create of {label}: recorded as {object_id}; the refresh reads it from the API server, "
                        "or drops it if it was never made")
        elif resource["type"].startswith("random:"):
            done.append(f"create of {label}: dropped (a random value exists only in the state; the next up makes it)")
        else:
            done.append(f"create of {label}: dropped; it may exist outside the state: check it")
    deployment["resources"] = resources
    deployment["pending_operations"] = []
    return deployment, done


def recover(stack: "auto.Stack", *, force: bool = False, out: Callable[[str], None] = print) -> int:
    """Puts `stack` back in order after an interrupted update (see the module's docstring). Returns 0 when it is
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
    _clear_locks(stack, found.locks, force, out)
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
            _clear_locks(stack, locks_in(_text(error)), force, out)
            stack.import_stack(deployment)
    out(f"refreshing stack {stack.name} from what exists")
    try:
        stack.refresh(color="never", on_output=lambda line: None)
    except auto.errors.CommandError as error:
        raise DeployFailed(explain_failure(_text(error), stack.name).replace("`pulumi up`", "`pulumi refresh`")) from None
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


def _clear_locks(stack: "auto.Stack", locks: list[Lock] | None, force: bool, out: Callable[[str], None]) -> None:
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


# ---------------------------------------------------------------------------------------------------------
# The command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=RECOVER,
        description="Put a stack back in order after an interrupted `pulumi up`: remove its stale lock, settle the "
        "operations the update began and never finished with the cluster and the S3 store, refresh the state. "
        "See docs/recovering-an-interrupted-update.md.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("stack", nargs="?", help="the stack, on the backend PULUMI_BACKEND_URL (or `pulumi login`) names")
    which.add_argument("--local", action="store_true", help="the stack scripts/local-up deploys (its state in .local/)")
    parser.add_argument("--force", action="store_true",
                        help="also remove a lock taken on another machine (only when no job there updates the stack)")
    parser.add_argument("--work-dir", type=Path, default=ROOT, help="the Pulumi project directory")
    return parser


def open_for_recovery(args: argparse.Namespace) -> "auto.Stack":
    import engine

    if args.local:
        sys.path.insert(0, str(ROOT / "scripts"))
        import local_up

        backend = engine.Backend(url=f"file://{local_up.LOCAL / 'state'}", passphrase=local_up.PASSPHRASE)
        return engine.open_stack(local_up.STACK, backend, create=False)
    return engine.open_stack(args.stack, engine.Backend(), work_dir=args.work_dir, create=False)


def main(argv: list[str] | None = None, open_stack: Callable[[argparse.Namespace], "auto.Stack"] = open_for_recovery) -> int:
    args = build_parser().parse_args(argv)
    from pulumi import automation as auto

    if args.local:
        sys.path.insert(0, str(ROOT / "scripts"))
        import local_up

        url, name = f"file://{local_up.LOCAL / 'state'}", local_up.STACK
    else:
        url, name = backend_url(), args.stack
    try:
        for line in repair_file_backend(url, name, args.force):
            print(f"stack {name}: {line}")
        try:
            stack = open_stack(args)
        except auto.errors.StackNotFoundError:
            print(f"{RECOVER}: no stack {name} on this backend: nothing to recover", file=sys.stderr)
            return 0
        except auto.errors.CommandError as error:
            raise DeployFailed(unreadable(_text(error), name, None)) from None
        return recover(stack, force=args.force)
    except DeployFailed as failed:
        print(f"{RECOVER}: {failed}", file=sys.stderr)
        return 1
    except auto.errors.CommandError as error:
        errors = [line.strip() for line in _text(error).splitlines() if "error:" in line]
        print(f"{RECOVER}: recovering stack {name} failed: {errors[-1] if errors else _text(error).strip()}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
