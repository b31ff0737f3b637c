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

By concern: envs/template.py (the dev-sized template), envs/branch_config.py (the config and tags a branch stack
gets), envs/listing.py (ages, sizes and costs for `list` and `reap`), envs/automation.py (the engine adapter),
envs/naming.py (the stack name), envs/parser.py (the command line); the commands are here.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import recovery
from envs.automation import Engine, EngineLike, StackMissing, first_line
from envs.branch_config import branch_config, branch_tags, config_map, config_problems, parse_overrides
from envs.listing import BranchEnv, branch_envs, format_table, older_than
from envs.naming import branch_instance_name, is_branch_stack, normalize_branch
from envs.parser import build_parser


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
            out(f"error: destroying {env.stack} failed: {first_line(error)}")
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
