#!/usr/bin/python3
"""A stand-in for git-sync v4 in the test node's image: the Go module proxy serves no version of
k8s.io/git-sync, so the real binary cannot be built here. It honours the command line our program gives
git-sync (components/git_sync.py) and the contract Airflow relies on: `<root>/<link>` is a symlink, swapped
atomically, to a checkout of the newest commit of `--ref`; `--one-time` syncs once and exits; otherwise it
syncs every `--period` and answers `GET /` on `--http-bind` with 200 once a sync has succeeded.

It is a test double for the wiring (volumes, paths, read-only root, probes, credentials), not for git-sync's
own behaviour; it is not shipped or used outside the test node.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="git-sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--period", type=duration, default=10.0)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--link", default="")
    parser.add_argument("--one-time", action="store_true")
    parser.add_argument("--http-bind", default="")
    parser.add_argument("--ssh-key-file")
    parser.add_argument("--ssh-known-hosts", default="true")
    parser.add_argument("--ssh-known-hosts-file")
    parser.add_argument("--username")
    parser.add_argument("--password-file")
    parser.add_argument("--version", action="version", version="git-sync stand-in (airflow-platform test node)")
    return parser.parse_args(argv)


class Syncer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cache = args.root / ".git-cache"
        self.link = args.root / (args.link or Path(args.repo.rstrip("/")).name.removesuffix(".git"))
        self.synced = threading.Event()
        self.env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        if args.ssh_key_file:
            known = (f"-o UserKnownHostsFile={args.ssh_known_hosts_file} -o StrictHostKeyChecking=yes"
                     if args.ssh_known_hosts == "true" else "-o StrictHostKeyChecking=no")
            self.env["GIT_SSH_COMMAND"] = f"ssh -i {args.ssh_key_file} {known}"

    def git(self, *argv: str, cwd: Path | None = None) -> str:
        config = []
        if self.args.password_file:
            token = Path(self.args.password_file).read_text().strip()
            basic = base64.b64encode(f"{self.args.username or 'git'}:{token}".encode()).decode()
            config = ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
        done = subprocess.run(["git", *config, *argv], cwd=cwd, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"git {argv[0]} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def sync(self) -> None:
        if not (self.cache / "HEAD").exists():
            self.git("init", "-q", "--bare", str(self.cache))
        self.git("--git-dir", str(self.cache), "fetch", "-q", f"--depth={self.args.depth}", self.args.repo,
                 f"{self.args.ref}")
        revision = self.git("--git-dir", str(self.cache), "rev-parse", "FETCH_HEAD")
        worktree = self.args.root / ".worktrees" / revision
        if not worktree.exists():
            worktree.parent.mkdir(parents=True, exist_ok=True)
            self.git("--git-dir", str(self.cache), "worktree", "add", "-q", "--detach", str(worktree), revision)
        current = os.readlink(self.link) if self.link.is_symlink() else None
        target = os.path.relpath(worktree, self.link.parent)
        if current != target:
            staging = self.link.with_name(f".{self.link.name}.new")
            if staging.is_symlink():
                staging.unlink()
            staging.symlink_to(target)
            staging.replace(self.link)
            print(f"synced {self.args.ref} at {revision}", flush=True)
            if current:
                shutil.rmtree(self.link.parent / current, ignore_errors=True)
                self.git("--git-dir", str(self.cache), "worktree", "prune")
        self.synced.set()


def serve(bind: str, syncer: Syncer) -> None:
    host, _, port = bind.rpartition(":")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if syncer.synced.is_set() else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str]) -> int:
    args = parse(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    syncer = Syncer(args)
    if args.http_bind:
        serve(args.http_bind, syncer)
    while True:
        try:
            syncer.sync()
            if args.one_time:
                return 0
        except (RuntimeError, OSError) as error:
            print(f"sync failed: {error}", file=sys.stderr, flush=True)
            if args.one_time:
                return 1
        time.sleep(args.period)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
