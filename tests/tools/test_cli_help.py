"""Every command of ours answers `--help` with its usage and exit 0 before doing anything, and refuses an
argument it does not know with exit 2 and what it allows, again before doing anything.

The commands are found, not listed: every executable in scripts/ and .ci/, and every Python module with a
`if __name__ == "__main__":` block or a package `__main__.py` (run as `python -m ...` from the repository's
root, or as `python FILE` where it is not importable, like scripts/*.py). Each runs twice (`--help`,
`--no-such-flag`) with a short timeout, all at once, each with a HOME, cache, TMPDIR and Go/Pulumi homes of its
own in a temporary folder, and a PATH without `pulumi`: a set-up or an install would leave something there. The
repository's files (ignored ones too: .local/, rendered/, the venv's stamp) must be as they were before.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60  # a command that sets something up instead of answering is stopped here
QUICK_S = 15  # an answer takes well under a second alone; this allows for a loaded machine

MAIN_GUARD = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
# Python files with a main that are not commands of ours, and why.
NOT_COMMANDS = {
    "__main__.py": "the Pulumi program: the Pulumi CLI runs it, it has no command line",
    "policy/__main__.py": "the policy pack: the Pulumi engine runs it, it has no command line",
}
# Folders whose Python files are not commands: tests and their helpers (testbed/), Go wrapper modules, generated
# output.
NOT_SEARCHED = {".git", ".venv", "tests", "testbed", "toolchain", "toolchain-fixtures", "rendered", ".local", "__pycache__"}
# Files in scripts/ that are neither executables nor Python commands: sourced by the others.
SOURCED = {"lib.sh": "functions for scripts/test, scripts/envs and scripts/local-up; sourcing it sets up nothing"}
# Written by the pytest running this file (and by Hypothesis), not by the commands under test.
TEST_RUNNER_CACHES = {".pytest_cache", ".hypothesis"}


def executables() -> dict[str, list[str]]:
    found = {}
    for folder in ("scripts", ".ci"):
        for path in sorted((ROOT / folder).iterdir()):
            if path.is_file() and os.access(path, os.X_OK):
                found[f"{folder}/{path.name}"] = [str(path)]
    return found


def python_files_with_main() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in NOT_SEARCHED and not (here == ROOT and d.startswith(".")))
        for name in sorted(files):
            path = here / name
            if name.endswith(".py") and (name == "__main__.py" or MAIN_GUARD.search(path.read_text())):
                found.append(path)
    return found


def python_commands() -> dict[str, list[str]]:
    found = {}
    for path in python_files_with_main():
        relative = path.relative_to(ROOT)
        if relative.as_posix() in NOT_COMMANDS:
            continue
        if path.parent == ROOT or (path.parent / "__init__.py").is_file():  # importable from the root
            parts = relative.parent.parts if path.name == "__main__.py" else relative.with_suffix("").parts
            module = ".".join(parts)
            found[f"python -m {module}"] = [sys.executable, "-m", module]
        else:
            found[f"python {relative}"] = [sys.executable, str(relative)]
    return found


COMMANDS = {**executables(), **python_commands()}


def snapshot() -> dict[str, tuple]:
    """Every file and folder of the repository (ignored ones too) with its size and modification time; inside the
    venv only its top level (where scripts/lib.sh keeps its stamp)."""
    seen: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        relative = here.relative_to(ROOT).as_posix()
        if relative == ".venv":
            dirs[:] = []
        dirs[:] = [d for d in dirs if not (here == ROOT and d in {".git", *TEST_RUNNER_CACHES})]
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in dirs:
            seen[f"{relative}/{name}/"] = ()
        for name in files:
            try:
                stat = (here / name).stat()
            except FileNotFoundError:
                continue
            seen[f"{relative}/{name}"] = (stat.st_size, stat.st_mtime_ns)
    return seen


def path_without_pulumi() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not os.access(os.path.join(d, "pulumi"), os.X_OK))


@dataclass
class Run:
    returncode: int | None  # None: stopped at the timeout
    output: str
    seconds: float
    left_behind: list[str]  # what the command created in its own HOME, caches and TMPDIR


def run(argv: list[str], sandbox: Path) -> Run:
    home, tmp = sandbox / "home", sandbox / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "AIRFLOW_PLATFORM_CACHE": str(home / ".cache" / "airflow-platform"),
        "PULUMI_HOME": str(home / ".pulumi"),
        "GOPATH": str(home / "go"),
        "GOMODCACHE": str(home / "go" / "pkg" / "mod"),
        "GOCACHE": str(home / ".cache" / "go-build"),
        "TMPDIR": str(tmp),
        "PATH": path_without_pulumi(),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: whatever it started goes too
        output, _ = process.communicate()
        returncode = None
    seconds = time.monotonic() - started
    left = sorted(str(p.relative_to(sandbox)) for p in sandbox.rglob("*") if p not in (home, tmp))
    shutil.rmtree(sandbox, ignore_errors=True)
    return Run(returncode, output, seconds, left)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Both calls of every command, all at once; and what changed in the repository meanwhile."""
    jobs = [(name, flag) for name in COMMANDS for flag in ("--help", "--no-such-flag")]
    sandboxes = {job: tmp_path_factory.mktemp("cli") for job in jobs}
    before = snapshot()
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 2))) as pool:
        futures = {job: pool.submit(run, [*COMMANDS[job[0]], job[1]], sandboxes[job]) for job in jobs}
        results = {job: future.result() for job, future in futures.items()}
    after = snapshot()
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    return {"results": results, "repo_changes": changed}


def describe(name: str, flag: str, result: Run) -> str:
    status = "timed out" if result.returncode is None else f"exit {result.returncode}"
    return f"`{name} {flag}`: {status} after {result.seconds:.1f}s; output:\n{result.output[-3000:]}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_prints_the_usage_and_exits_0_at_once_and_sets_nothing_up(runs, name):
    result = runs["results"][name, "--help"]
    assert result.returncode == 0, describe(name, "--help", result)
    assert "usage" in result.output.lower(), describe(name, "--help", result)
    assert result.seconds < QUICK_S, describe(name, "--help", result)
    assert result.left_behind == [], f"`{name} --help` wrote {result.left_behind}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_argument_is_refused_with_exit_2_and_the_usage_before_anything_is_done(runs, name):
    result = runs["results"][name, "--no-such-flag"]
    assert result.returncode == 2, describe(name, "--no-such-flag", result)
    assert "usage" in result.output.lower(), describe(name, "--no-such-flag", result)
    assert result.seconds < QUICK_S, describe(name, "--no-such-flag", result)
    assert result.left_behind == [], f"`{name} --no-such-flag` wrote {result.left_behind}"


def test_no_command_changed_the_repository(runs):
    assert runs["repo_changes"] == [], (
        "files of the repository changed while the commands answered --help and --no-such-flag: "
        f"{runs['repo_changes']}")


def test_the_commands_found_are_every_file_in_scripts_and_every_python_main():
    in_scripts = {path.name for path in (ROOT / "scripts").iterdir() if path.is_file()}
    covered = {name.split("/")[-1] for name in COMMANDS if name.startswith("scripts/")}
    covered |= {name.removeprefix("python scripts/") for name in COMMANDS if name.startswith("python scripts/")}
    assert in_scripts - covered == set(SOURCED), (
        "a file in scripts/ is neither an executable nor a Python file with a main (nor sourced: SOURCED)")
    assert ".ci/run" in COMMANDS
    for module in ("components.settings", "envs", "bench", "images", "ci_preview"):
        assert f"python -m {module}" in COMMANDS
    mains = {path.relative_to(ROOT).as_posix() for path in python_files_with_main()}
    assert set(NOT_COMMANDS) <= mains, "an entry of NOT_COMMANDS no longer exists"


def test_no_conftest_adds_command_line_options():
    """scripts/test checks its arguments with pytest before the set-up, without loading the conftests (a stale
    venv must not stop it): an option that a conftest added would be refused there."""
    adding = [str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("conftest.py")
              if "def pytest_addoption" in path.read_text()]
    assert adding == [], f"{adding} add pytest options: scripts/test's check_pytest_args must load conftests then"
