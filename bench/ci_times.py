"""`python -m bench.ci_times [--cold] [--setup-only]`: the wall time of CI's command, `bash .ci/run`, on a clean
clone of HEAD.

Warm: the build caches of this machine are used (the Pulumi toolchain, the API server, the Airflow and checkov
venvs, Go's module and build caches), as on a CI runner that keeps them. Cold: every cache is a new empty
directory (XDG_CACHE_HOME, GOPATH, PULUMI_HOME), as on a fresh machine; only the Debian packages that
scripts/test installs with apt are already there. Set-up only: what .ci/run does before its tests (scripts/test's
set-up, every toolchain, venv and node image), then pytest collects and runs nothing; a cold set-up plus a warm
run is a cold run's time without the two competing for this machine's two cores. Each run appends its result to bench/ci_times.json, which
bench/results.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "ci_times.json"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ci_times", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="start from empty caches (takes about an hour)")
    parser.add_argument("--setup-only", action="store_true",
                        help="set everything up as .ci/run does, then collect the tests without running them")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="airflow-ci-times-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(scratch / "clone")], check=True)
    env = {**os.environ, "CI": "true", "AIRFLOW_PLATFORM_E2E": "require"}
    if args.cold:
        for name, sub in (("XDG_CACHE_HOME", "cache"), ("GOPATH", "gopath"), ("PULUMI_HOME", "pulumi")):
            env[name] = str(scratch / sub)
        env.pop("AIRFLOW_PLATFORM_CACHE", None)
    started = time.perf_counter()
    with open(scratch / "ci.log", "wb") as log:
        command = ["bash", "scripts/test", "--collect-only", "-q"] if args.setup_only else ["bash", ".ci/run"]
        done = subprocess.run(command, cwd=scratch / "clone", env=env, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    outcome = ("collected", "passed", "failed")
    summary = [line for line in (scratch / "ci.log").read_text(errors="replace").splitlines() if " in " in line and
               any(word in line for word in outcome)][-1:]
    kind = ("cold" if args.cold else "warm") + (" set-up" if args.setup_only else "")
    entry = {"kind": kind, "commit": commit, "seconds": round(elapsed),
             "exit": done.returncode, "pytest": summary[0].strip("= ") if summary else None,
             "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]), "log": str(scratch / "ci.log")}
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(runs + [entry], indent=1) + "\n")
    print(json.dumps(entry))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
