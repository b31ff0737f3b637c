"""scripts/recover-stack's command line (`python -m recovery`). The standard library alone at the top level: the
script checks its arguments with `build_parser` before it sets up the venv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from recovery.common import RECOVER, ROOT, DeployFailed, engine_text
from recovery.file_backend import repair_file_backend
from recovery.guard import unreadable
from recovery.locks import backend_url
from recovery.recovering import recover

if TYPE_CHECKING:
    from pulumi import automation as auto


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
            raise DeployFailed(unreadable(engine_text(error), name, None)) from None
        return recover(stack, force=args.force)
    except DeployFailed as failed:
        print(f"{RECOVER}: {failed}", file=sys.stderr)
        return 1
    except auto.errors.CommandError as error:
        errors = [line.strip() for line in engine_text(error).splitlines() if "error:" in line]
        print(f"{RECOVER}: recovering stack {name} failed: {errors[-1] if errors else engine_text(error).strip()}",
              file=sys.stderr)
        return 1
