"""`python -m bench`: run every benchmark and rewrite bench/results.md and bench/results.png.

    .venv/bin/python -m bench [--repeat 3] [--teams 1,5,20] [--workers 4] [--suite-runs 1] [--skip-engine]

Medians of `--repeat` runs; ratios are taken run by run between operations measured alternately in the same
loop. Absolute seconds depend on how busy the machine is and are shown only beside their floor.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import Scratch, local_config, say  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument("--teams", default="1,5,20", help="team-stack counts to preview")
    parser.add_argument("--workers", type=int, default=4, help="previews at once in the parallel run")
    parser.add_argument("--suite-runs", type=int, default=1, help="runs of the quick test suite (0: skip)")
    parser.add_argument("--skip-engine", action="store_true", help="only what needs no Pulumi engine")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)

    from bench import engine_bench, footprint_bench, report

    started = time.perf_counter()
    results: dict = {"when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "repeat": args.repeat,
                     "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, load {_load()}"}
    say("footprints")
    results["footprint"] = footprint_bench.footprints()
    say("program under mocks (fresh processes)")
    results["mocks"] = engine_bench.program_under_mocks(args.repeat, args.out / "profile.txt")
    if not args.skip_engine:
        scratch = Scratch.start()
        try:
            say(f"engine against its floor (scratch project {scratch.directory})")
            results["floor"] = engine_bench.floor(scratch, args.repeat)
            plain, secrets = local_config(scratch, "local")
            results["rendered"] = footprint_bench.rendered_crosscheck(
                results["floor"].pop("objects"), {"instance": "local", **plain, **secrets})
            say("program under the engine (fresh processes)")
            results["engine_program"] = engine_bench.program_under_engine(scratch, args.repeat)
            say("team-stack previews")
            results["teams"] = engine_bench.team_previews(scratch, [int(n) for n in args.teams.split(",")], args.workers)
            say("envs create / destroy")
            results["envs"] = engine_bench.envs_create(scratch, args.repeat)
            say("envs create / destroy against a real API server")
            results["envs_applied"] = engine_bench.envs_applied(scratch, args.repeat)
        finally:
            scratch.stop()
    if args.suite_runs:
        say("quick test suite")
        results["suite"] = footprint_bench.test_suite(args.suite_runs)
    results["machine_after"] = f"load {_load()}"
    results["elapsed_s"] = time.perf_counter() - started
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.write(results, args.out)
    say(f"wrote {args.out / 'results.md'} and {args.out / 'results.png'} in {results['elapsed_s']:.0f}s")
    return 0


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
