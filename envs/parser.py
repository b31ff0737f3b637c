"""The command line of `python -m envs` (what each command does is envs/cli.py). The standard library alone, so
that scripts/envs answers --help and refuses a mistake with it before it sets up the venv and the toolchain."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m envs",
        description="`python -m envs`: create, list and destroy one short-lived Airflow environment per git branch.",
    )
    parser.add_argument("--work-dir", type=Path, default=ROOT, help="the Pulumi project directory")
    commands = parser.add_subparsers(dest="command", required=True)

    create_cmd = commands.add_parser("create", help="create or update the environment of BRANCH")
    create_cmd.add_argument("branch")
    create_cmd.add_argument("--dags-repo", help="git URL of the DAG repository (default: $AIRFLOW_DAGS_REPO)")
    create_cmd.add_argument("--parent-stack", default="dev",
                            help="stack to copy secrets and deployment target from ('' for none; default dev)")
    create_cmd.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                            help="extra setting, e.g. postgres.instances=2 (repeatable)")
    create_cmd.add_argument("--dry-run", action="store_true", help="print the stack's config and stop")

    destroy_cmd = commands.add_parser("destroy", help="destroy the environment of BRANCH (missing is fine)")
    destroy_cmd.add_argument("branch", nargs="?")
    destroy_cmd.add_argument("--stack", help="destroy this branch stack instead of naming a branch")

    list_cmd = commands.add_parser("list", help="list branch environments")
    list_cmd.add_argument("--older-than", type=float, metavar="DAYS", help="only those idle for more than DAYS")

    reap_cmd = commands.add_parser("reap", help="destroy branch environments idle for more than DAYS")
    reap_cmd.add_argument("--older-than", type=float, metavar="DAYS", required=True)
    reap_cmd.add_argument("--yes", action="store_true", help="do not ask")
    return parser
