"""Measurements that need a fresh interpreter (peak memory is per process) or a process of their own (previews
in parallel). Run by bench/*.py as `python -m bench.probe KIND ...`; the last stdout line is JSON.

    mocks  --program empty|full --repeat N [--profile FILE]   the program under Pulumi's mocks
    engine --program empty|full --stack NAME --work-dir DIR   one preview of a configured stack under the engine
    preview --stacks a,b,c --work-dir DIR                     previews of configured stacks, one after another
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: a child started by a bigger parent
    reports the parent's peak there; VmHWM belongs to this address space only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _empty() -> None:
    """The floor: a program that registers nothing."""


def mocks(program: str, repeat: int, profile: str | None) -> dict:
    started = time.perf_counter()
    import pulumi  # noqa: F401

    pulumi_import = time.perf_counter() - started
    started = time.perf_counter()
    from components.instance import airflow_instance
    from testbed.harness import run_stack

    ours_import = time.perf_counter() - started
    rss_imported = peak_rss_mib()
    config = {"s3": {"forceDestroy": True}, "postgres": {"backups": {"enabled": True}}}
    from bench.common import JOB_SECRETS

    fn = airflow_instance if program == "full" else _empty
    if profile:
        # The first run in a process is the one the engine pays every time: resource modules load lazily.
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        run_stack(config, dict(JOB_SECRETS), stack="local", program=fn)
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        return {}
    times, resources = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        run = run_stack(config, dict(JOB_SECRETS), stack="local", program=fn)
        times.append(time.perf_counter() - began)
        resources = len(run.resources)
    return {"pulumi_import_s": pulumi_import, "ours_import_s": ours_import, "times_s": times,
            "resources": resources, "rss_imported_mib": rss_imported, "peak_rss_mib": peak_rss_mib()}


def engine_preview(program: str, stack_name: str, work_dir: str) -> dict:
    import engine
    from components.instance import airflow_instance

    spent: list[float] = []

    def timed_program() -> None:
        # The synchronous part of the program: what it computes before the engine's RPCs take over.
        began = time.perf_counter()
        (airflow_instance if program == "full" else _empty)()
        spent.append(time.perf_counter() - began)

    stack = engine.open_stack(stack_name, None, work_dir=Path(work_dir), program=timed_program)
    began = time.perf_counter()
    engine.preview(stack)
    return {"preview_s": time.perf_counter() - began, "program_s": spent[0] if spent else None,
            "peak_rss_mib": peak_rss_mib()}


def previews(stacks: list[str], work_dir: str) -> dict:
    started = time.perf_counter()
    import engine

    imported = time.perf_counter() - started
    times = {}
    for name in stacks:
        stack = engine.open_stack(name, None, work_dir=Path(work_dir), create=False)
        began = time.perf_counter()
        engine.preview(stack)
        times[name] = time.perf_counter() - began
    return {"import_s": imported, "times_s": times, "total_s": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    parser.add_argument("kind", choices=["mocks", "engine", "preview"])
    parser.add_argument("--program", choices=["empty", "full"], default="full")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile")
    parser.add_argument("--stack")
    parser.add_argument("--stacks")
    parser.add_argument("--work-dir")
    args = parser.parse_args()
    if args.kind == "mocks":
        result = mocks(args.program, args.repeat, args.profile)
    elif args.kind == "engine":
        result = engine_preview(args.program, args.stack, args.work_dir)
    else:
        result = previews(args.stacks.split(","), args.work_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
