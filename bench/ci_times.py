"""`python -m bench.ci_times [--cold]`: the wall time of CI's command, `bash .ci/run`, on a clean clone of HEAD.

Warm: the build caches of this machine are used (the Pulumi toolchain, the API server, the Airflow and checkov
venvs, Go's module and build caches), as on a CI runner that keeps them. Cold: every cache is a new empty
directory (XDG_CACHE_HOME, GOPATH, PULUMI_HOME), as on a fresh machine; only the Debian packages that
scripts/test installs with apt are already there. Each run appends its result to bench/ci_times.json, which
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
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="airflow-ci-times-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(scratch / "clone")], check=True)
    env = {**os.environ, "CI": "true"}
    if args.cold:
        for name, sub in (("XDG_CACHE_HOME", "cache"), ("GOPATH", "gopath"), ("PULUMI_HOME", "pulumi")):
            env[name] = str(scratch / sub)
        env.pop("AIRFLOW_PLATFORM_CACHE", None)
    started = time.perf_counter()
    with open(scratch / "ci.log", "wb") as log:
        done = subprocess.run(["bash", ".ci/run"], cwd=scratch / "clone", env=env, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    summary = [line for line in (scratch / "ci.log").read_text(errors="replace").splitlines() if " in " in line and
               ("passed" in line or "failed" in line)][-1:]
    entry = {"kind": "cold" if args.cold else "warm", "commit": commit, "seconds": round(elapsed),
             "exit": done.returncode, "pytest": summary[0].strip("= ") if summary else None,
             "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]), "log": str(scratch / "ci.log")}
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(runs + [entry], indent=1) + "\n")
    print(json.dumps(entry))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
