"""`python -m envs`: create, list and destroy one short-lived Airflow environment per git branch.

    python -m envs create BRANCH [--dags-repo URL] [--parent-stack dev] [--config key=value ...] [--dry-run]
    python -m envs destroy BRANCH            (or --stack NAME; a missing environment is success)
    python -m envs list [--older-than DAYS]
    python -m envs reap --older-than DAYS [--yes]

A branch environment is the stack `envs.naming.branch_instance_name(BRANCH)` of this project: dev-sized, nothing
protected, a log bucket that `destroy` may empty, and git-sync following the branch. It is labelled with two
stack tags, the branch and its creation time. Stack tags are kept by every backend this project uses (Pulumi
Cloud, and the DIY file/S3 backends since Pulumi 3.211; requirements.txt pins a later one), so no registry file
has to be kept in step with the state; where tags cannot be set, `list` falls back to the last update time.

Everything that needs the Pulumi engine goes through `Engine`, a thin layer over the Automation API; the rest
(names, the config a branch stack gets, ages, what `destroy` and `reap` do) is plain code the tests run with a
fake engine.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import yaml

import recovery
from components.config import PROJECT, ConfigError, config_text, parse_settings
from envs.naming import branch_instance_name, is_branch_stack, normalize_branch
from envs.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent

TAG_BRANCH = f"{PROJECT}:branch"
TAG_CREATED = f"{PROJECT}:created-at"
TAG_VALUE_LIMIT = 256  # Pulumi Cloud's limit on a tag value

NAVBAR_COLOR = "#f0ad4e"  # orange: neither dev's green nor prod's red

# Secret config a branch stack needs, and the environment variable that supplies each one in CI.
SECRET_ENV = {
    "s3AccessKeyId": "AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID",
    "s3SecretAccessKey": "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY",
    # The log key goes into the branch's pods; the provisioning key above never does.
    "s3LogAccessKeyId": "AIRFLOW_PLATFORM_S3_LOG_ACCESS_KEY_ID",
    "s3LogSecretAccessKey": "AIRFLOW_PLATFORM_S3_LOG_SECRET_ACCESS_KEY",
    "gitSyncToken": "AIRFLOW_PLATFORM_GIT_SYNC_TOKEN",
    "gitSyncSshKey": "AIRFLOW_PLATFORM_GIT_SYNC_SSH_KEY",
}
GIT_CREDENTIALS = ("gitSyncToken", "gitSyncSshKey")
# Where-to-deploy settings a branch inherits from its parent stack (sizes come from the template instead).
INHERITED_KEYS = (
    "kubernetesContext",
    "kubernetesRenderDir",
    "team",
    "airflowImage",
    "airflowVersion",
    "airflowPythonVersion",
    "imagePullPolicy",
    "placement",
    "s3",
    "gitSync",
    "cost",  # prices are the platform's, not the branch's
)


def _small(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def dev_template() -> dict[str, Any]:
    """The dev-sized settings every branch environment starts from (keys as in `Pulumi.<stack>.yaml`)."""
    return {
        "protect": False,
        "navbarColor": NAVBAR_COLOR,
        "apiServer": {"replicas": 1, "workers": 1, "resources": _small("100m", "512Mi", "1", "1Gi")},
        "scheduler": {"replicas": 1, "resources": _small("100m", "512Mi", "1", "1Gi")},
        "dagProcessor": {"replicas": 1, "resources": _small("100m", "512Mi", "1", "1Gi")},
        "triggerer": {"replicas": 1, "resources": _small("50m", "256Mi", "500m", "512Mi")},
        "taskPod": {"resources": _small("100m", "256Mi", "1", "1Gi")},
        "postgres": {
            "instances": 1,
            "storageSize": "2Gi",
            "poolerInstances": 1,
            "resources": _small("100m", "256Mi", "500m", "512Mi"),
            "parameters": {"max_connections": "100"},
            "backups": {"enabled": False},
        },
        "s3": {"forceDestroy": True, "retentionDays": 3},
        "auth": {"mode": "simple"},
    }


# ---------------------------------------------------------------------------------------------------------
# The config a branch stack gets


def _plain(value: str) -> Any:
    """A config value as Pulumi hands it over: structured values are JSON text."""
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _set_path(target: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[leaf] = value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`--config key=value` pairs; `key` may be a dotted path (`postgres.instances=2`), the value is YAML."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix(f"{PROJECT}:")
        if not sep or not key:
            raise ValueError(f"--config {item!r}: use key=value, e.g. postgres.instances=2")
        overrides[key] = _yaml_value(text)
    return overrides


def _yaml_value(text: str) -> Any:
    """`2` → 2, `true` → True, `{a: 1}` → a dict; anything YAML does not read as a value stays text (`#000`
    would otherwise be a comment, i.e. null)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("null", "~"):
        return text
    return value


def branch_config(
    branch: str,
    *,
    dags_repo: str | None,
    parent: dict[str, tuple[str, bool]] | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(stack name, plain settings, secret settings) of `branch`'s environment.

    `parent` is the parent stack's config (key without project prefix → (value, is_secret)); `env` supplies
    secrets that override the parent's. Raises ValueError when no DAG repository is known.
    """
    branch = normalize_branch(branch)
    env = os.environ if env is None else env
    parent = parent or {}
    name = branch_instance_name(branch)

    plain: dict[str, Any] = {}
    for key in INHERITED_KEYS:
        if key in parent and not parent[key][1]:
            plain[key] = _plain(parent[key][0])
    inherited_s3 = dict(plain.get("s3") or {})
    inherited_s3.pop("bucket", None)  # the parent's bucket is the parent's: a branch gets its own
    git_sync = dict(plain.get("gitSync") or {})

    template = dev_template()
    plain.update({key: value for key, value in template.items()})
    plain["s3"] = {**inherited_s3, **template["s3"]}
    plain["instance"] = name
    plain["instanceTitle"] = f"branch {branch}"
    repo = dags_repo or env.get("AIRFLOW_DAGS_REPO") or git_sync.get("repo")
    if not repo:
        raise ValueError("no DAG repository: pass --dags-repo or set AIRFLOW_DAGS_REPO")
    plain["gitSync"] = {**git_sync, "enabled": True, "repo": repo, "ref": branch}

    for path, value in (overrides or {}).items():
        _set_path(plain, path, value)

    secrets = {key: parent[key][0] for key in SECRET_ENV if key in parent and parent[key][1]}
    from_env = {key: env[var] for key, var in SECRET_ENV.items() if env.get(var)}
    if any(key in from_env for key in GIT_CREDENTIALS):
        for key in GIT_CREDENTIALS:
            secrets.pop(key, None)
    secrets.update(from_env)
    return name, plain, secrets


def config_problems(plain: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """What the program would reject, found before any engine runs."""

    try:
        parse_settings({**plain, **secrets})
    except ConfigError as error:
        return list(error.problems)
    return []


def config_map(plain: dict[str, Any], secrets: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """Full config key → (text, secret) for `set_all_config`: structured values as JSON text, which the program
    decodes exactly like the objects of a committed stack file."""
    result = {f"{PROJECT}:{key}": (config_text(value), False) for key, value in plain.items()}
    for key, value in secrets.items():
        result[f"{PROJECT}:{key}"] = (value, True)
    return result


def branch_tags(branch: str, existing: dict[str, str], now: datetime) -> dict[str, str]:
    """The tags to set: the branch always, the creation time only once (a later push keeps the first)."""
    tags = {TAG_BRANCH: normalize_branch(branch)[:TAG_VALUE_LIMIT]}
    if TAG_CREATED not in existing:
        tags[TAG_CREATED] = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return tags


# ---------------------------------------------------------------------------------------------------------
# Listing and ages


@dataclass
class StackInfo:
    """What the engine says about one stack (a StackSummary plus its tags)."""

    name: str
    last_update: datetime | None = None
    resource_count: int | None = None
    update_in_progress: bool | None = None
    tags: dict[str, str] | None = None
    outputs: dict[str, Any] | None = None  # the stack's outputs (requested_cpu, requested_memory, monthly_cost)


@dataclass
class BranchEnv:
    stack: str
    branch: str | None
    created: datetime | None
    last_update: datetime | None
    resource_count: int | None
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def last_activity(self) -> datetime | None:
        times = [t for t in (self.created, self.last_update) if t is not None]
        return max(times) if times else None

    def idle(self, now: datetime) -> timedelta | None:
        return None if self.last_activity is None else now - self.last_activity


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _aware(value)


def _aware(value: datetime | None) -> datetime | None:
    """Naive times (as some backends report them) are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def short_stack_name(name: str) -> str:
    """`org/project/stack` (how some backends list stacks) → `stack`."""
    return name.rsplit("/", 1)[-1]


def branch_envs(stacks: Iterable[StackInfo]) -> list[BranchEnv]:
    envs = []
    for info in stacks:
        name = short_stack_name(info.name)
        if not is_branch_stack(name):
            continue
        tags = info.tags or {}
        created = _parse_time(tags.get(TAG_CREATED))
        envs.append(BranchEnv(name, tags.get(TAG_BRANCH), created, _aware(info.last_update), info.resource_count,
                              dict(info.outputs or {})))
    return sorted(envs, key=lambda env: env.stack)


def older_than(envs: Iterable[BranchEnv], days: float, now: datetime) -> list[BranchEnv]:
    """Environments idle (neither created nor updated) for more than `days`. One with no time at all is
    reported too: nothing shows it is in use."""
    limit = timedelta(days=days)
    return [env for env in envs if env.idle(now) is None or env.idle(now) > limit]  # type: ignore[operator]


def _age(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400}d{(seconds % 86400) // 3600}h ago"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m ago"
    return f"{seconds // 60}m ago"


def _number(outputs: dict[str, Any], key: str) -> float | None:
    try:
        return float(outputs[key])
    except (KeyError, TypeError, ValueError):
        return None  # a stack last updated before these outputs existed


def _cost(env: BranchEnv) -> str:
    cost = _number(env.outputs, "monthly_cost")
    return "-" if cost is None else f"{cost:.2f} {env.outputs.get('cost_currency') or ''}".rstrip()


def format_table(envs: list[BranchEnv], now: datetime) -> str:
    """One row per environment, with what it reserves while it runs (requests, LimitRange defaults included:
    components/footprint.py) and the monthly price of that, and a total row."""
    rows = [("STACK", "BRANCH", "CREATED", "LAST UPDATE", "RESOURCES", "CPU", "MEMORY", "COST/MONTH")]
    for env in envs:
        cpu, memory = _number(env.outputs, "requested_cpu"), _number(env.outputs, "requested_memory")
        rows.append(
            (
                env.stack,
                env.branch or "?",
                _age(env.created, now),
                _age(env.last_update, now),
                "-" if env.resource_count is None else str(env.resource_count),
                "-" if cpu is None else f"{cpu:.2f}",
                "-" if memory is None else f"{memory:.2f}Gi",
                _cost(env),
            )
        )
    costs = [_number(env.outputs, "monthly_cost") for env in envs]
    currencies = {env.outputs.get("cost_currency") for env in envs if env.outputs}
    if len(envs) > 1 and any(c is not None for c in costs) and len(currencies) == 1:
        cpus = sum(_number(env.outputs, "requested_cpu") or 0 for env in envs)
        memories = sum(_number(env.outputs, "requested_memory") or 0 for env in envs)
        total = sum(c or 0 for c in costs)
        rows.append(("TOTAL", "", "", "", "", f"{cpus:.2f}", f"{memories:.2f}Gi",
                     f"{total:.2f} {currencies.pop() or ''}".rstrip()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


# ---------------------------------------------------------------------------------------------------------
# The engine


class StackMissing(Exception):
    """The stack does not exist (any more)."""


class EngineLike(Protocol):
    def stacks(self) -> list[StackInfo]: ...
    def parent_config(self, stack: str) -> dict[str, tuple[str, bool]] | None: ...
    def tags(self, stack: str) -> dict[str, str]: ...
    def up(self, stack: str, config: dict[str, tuple[str, bool]], tags: Callable[[dict[str, str]], dict[str, str]],
           on_output: Callable[[str], None]) -> dict[str, Any]: ...
    def destroy(self, stack: str, on_output: Callable[[str], None]) -> None: ...
    def remove(self, stack: str) -> None: ...


class Engine:
    """The Automation API, reached only through these few methods. The program runs inline (engine.py); state
    comes from the usual PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE environment."""

    def __init__(self, work_dir: Path = ROOT):
        import engine
        from pulumi import automation as auto

        try:
            self.workspace = engine.workspace(work_dir=work_dir)
        except engine.ToolchainMissing as error:
            raise SystemExit(f"envs: {error}") from error
        self.auto = auto
        self.engine = engine
        self.work_dir = work_dir

    def stacks(self) -> list[StackInfo]:
        infos = []
        for summary in self.workspace.list_stacks():
            name = short_stack_name(summary.name)
            branch = is_branch_stack(name)
            tags = self.tags(name) if branch else {}
            outputs = self.outputs(name) if branch else {}
            infos.append(StackInfo(name, summary.last_update, summary.resource_count, summary.update_in_progress, tags,
                                   outputs))
        return infos

    def parent_config(self, stack: str) -> dict[str, tuple[str, bool]] | None:
        try:
            values = self.workspace.get_all_config(stack)
        except self.auto.errors.CommandError as error:
            print(f"note: cannot read the config of parent stack '{stack}' ({_first_line(error)}); "
                  "secrets come from the environment only", file=sys.stderr)
            return None
        return {key.removeprefix(f"{PROJECT}:"): (value.value, value.secret) for key, value in values.items()
                if key.startswith(f"{PROJECT}:")}

    def outputs(self, stack: str) -> dict[str, Any]:
        """Plain outputs only: secrets are not needed to list costs."""
        try:
            values = self.workspace.stack_outputs(stack)
        except self.auto.errors.CommandError:
            return {}
        return {key: output.value for key, output in values.items() if not output.secret}

    def tags(self, stack: str) -> dict[str, str]:
        try:
            return dict(self.workspace.list_tags(stack))
        except self.auto.errors.CommandError:
            return {}

    def up(self, stack, config, tags, on_output):
        auto = self.auto
        # A state an interrupted update left (unreadable, locked, operations unfinished), or an update still
        # running: say so, and what to do, before anything is changed.
        handle = recovery.open_checked(lambda: auto.Stack.create_or_select(stack, self.workspace), stack)
        stale = [key for key in handle.get_all_config() if key not in config]
        if stale:
            handle.remove_all_config(stale)
        handle.set_all_config({key: auto.ConfigValue(value=text, secret=secret) for key, (text, secret) in config.items()})
        try:
            for key, value in tags(self.tags(stack)).items():
                self.workspace.set_tag(stack, key, value)
        except auto.errors.CommandError as error:
            print(f"note: stack tags not supported here ({_first_line(error)}); age falls back to the last update",
                  file=sys.stderr)
        result = recovery.up(handle, check_first=False, on_output=on_output, color="never")
        return {key: ("[secret]" if output.secret else output.value) for key, output in result.outputs.items()}

    def destroy(self, stack, on_output):
        try:
            handle = self.auto.Stack.select(stack, self.workspace)
        except self.auto.errors.StackNotFoundError as error:
            raise StackMissing(stack) from error
        try:
            self.engine.destroy(handle, on_output=on_output)
        except self.engine.DestroyRefused as refused:
            raise SystemExit(f"envs: {refused}") from refused

    def remove(self, stack):
        try:
            self.workspace.remove_stack(stack)
        except self.auto.errors.StackNotFoundError as error:
            raise StackMissing(stack) from error


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


# ---------------------------------------------------------------------------------------------------------
# Commands


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create(engine: EngineLike, branch: str, *, dags_repo: str | None, parent_stack: str | None,
           overrides: dict[str, Any], dry_run: bool = False, out=print, now: datetime | None = None) -> int:
    now = now or _now()
    parent = engine.parent_config(parent_stack) if parent_stack and not dry_run else None
    try:
        name, plain, secrets = branch_config(branch, dags_repo=dags_repo, parent=parent, overrides=overrides)
    except ValueError as error:
        out(f"error: {error}")
        return 2
    problems = config_problems(plain, secrets)
    if problems:
        out(f"error: the config of stack {name} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))
        return 2
    if not secrets.get("s3AccessKeyId"):
        out("note: no S3 keys (parent stack or AIRFLOW_PLATFORM_S3_*): the ambient AWS credentials are used")
    out(f"branch {normalize_branch(branch)!r} -> stack {name}")
    if dry_run:
        shown = {key: ("[secret]" if secret else text) for key, (text, secret) in config_map(plain, secrets).items()}
        out(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    try:
        outputs = engine.up(name, config_map(plain, secrets), lambda existing: branch_tags(branch, existing, now), out)
    except recovery.DeployFailed as failed:  # what failed and what to do, said once; never a traceback
        out(f"error: {failed}")
        return 1
    for key, value in sorted(outputs.items()):
        out(f"{key}: {value}")
    return 0


def destroy_stack(engine: EngineLike, stack: str, out=print) -> int:
    """Destroy `stack`'s resources and remove the stack. A stack that is not there is success: running this
    twice, or after someone else did, must not fail a pipeline."""
    try:
        engine.destroy(stack, out)
    except StackMissing:
        out(f"stack {stack} does not exist: nothing to destroy")
        return 0
    try:
        engine.remove(stack)
    except StackMissing:
        out(f"stack {stack} was already removed")
        return 0
    out(f"destroyed and removed stack {stack}")
    return 0


def destroy(engine: EngineLike, branch: str, out=print) -> int:
    name = branch_instance_name(branch)
    out(f"branch {normalize_branch(branch)!r} -> stack {name}")
    return destroy_stack(engine, name, out)


def list_envs(engine: EngineLike, older: float | None, out=print, now: datetime | None = None) -> list[BranchEnv]:
    now = now or _now()
    envs = branch_envs(engine.stacks())
    if older is not None:
        envs = older_than(envs, older, now)
    out(format_table(envs, now) if envs else "no branch environments" + (f" idle for over {older:g} days" if older is not None else ""))
    return envs


def reap(engine: EngineLike, older: float, yes: bool, out=print, ask=input, now: datetime | None = None) -> int:
    envs = list_envs(engine, older, out, now)
    if not envs:
        return 0
    if not yes:
        try:
            answer = ask(f"destroy these {len(envs)} environment(s)? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            out("nothing destroyed")
            return 1
    failed = []
    for env in envs:
        try:
            destroy_stack(engine, env.stack, out)
        except Exception as error:  # noqa: BLE001 - one stuck environment must not keep the others alive
            out(f"error: destroying {env.stack} failed: {_first_line(error)}")
            failed.append(env.stack)
    if failed:
        out(f"{len(failed)} environment(s) not destroyed: {', '.join(failed)}")
        return 1
    return 0


def main(argv: list[str] | None = None, engine_factory: Callable[[Path], EngineLike] = Engine) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "create":
        try:
            overrides = parse_overrides(args.config)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        engine = None if args.dry_run else engine_factory(args.work_dir)
        return create(engine, args.branch, dags_repo=args.dags_repo, parent_stack=args.parent_stack or None,  # type: ignore[arg-type]
                      overrides=overrides, dry_run=args.dry_run)
    if args.command == "destroy" and not (args.branch or args.stack):
        print("error: name a BRANCH or --stack", file=sys.stderr)
        return 2
    engine = engine_factory(args.work_dir)
    if args.command == "destroy":
        if args.stack:
            if not is_branch_stack(args.stack):
                print(f"error: {args.stack} is not a branch stack; this tool destroys only br-* stacks", file=sys.stderr)
                return 2
            return destroy_stack(engine, args.stack)
        return destroy(engine, args.branch)
    if args.command == "list":
        list_envs(engine, args.older_than)
        return 0
    if args.command == "reap":
        return reap(engine, args.older_than, args.yes)
    raise AssertionError(args.command)
