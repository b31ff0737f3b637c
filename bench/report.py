"""bench/results.md and bench/results.png from one run's results (also kept as bench/results.json)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.footprint_bench import BEFORE, REFERENCES

ORDER = ("branch", "dev", "team-search", "prod")
CI_TIMES = Path(__file__).resolve().parent / "ci_times.json"


def _s(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _each(values, digits: int = 1, unit: str = "") -> str:
    """The single runs behind a median, as the report lists them after it."""
    return ", ".join(f"{value:.{digits}f}{unit}" for value in values)


def write(r: dict, out: Path) -> None:
    lines = [
        "# Benchmarks: what a stack costs to preview, to apply and to keep running",
        "",
        f"Written by `.venv/bin/python -m bench` (`--repeat {r['repeat']}`) on {r['when']}; {r['machine']}, "
        f"{r.get('machine_after', '')} at the end; {r['elapsed_s']:.0f} s in all. The machine is shared: every "
        "time is a median, and the figure to read is the ratio, measured run by run against an operation "
        "interleaved with it in the same loop. Raw numbers: `results.json`; the cold-run profile: `profile.txt`.",
        "",
    ]
    if "floor" in r:
        f = r["floor"]
        lines += [
            "## 1. Engine time against its floor",
            "",
            "Two floors, each in the same scratch project and file backend and run the same way (inline through the "
            "Automation API, preview with the policy pack). The empty program starts no resource plugin; the plugin "
            "floor registers one resource of each provider the instance uses (a rendered ConfigMap, a RandomPassword, "
            "a LogBucket), so it pays the start-up of the kubernetes and random plugins and of the dynamic-provider "
            "host, which the issue's definition of the floor (\"what engine and plugin start-up cost anyway\") "
            "includes. Target: within 2x the floor.",
            "",
            "| operation | full instance (`local`) | empty program | ratio | plugin floor | ratio | runs |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for op, label in (("preview", "preview"), ("up", "no-op `up`")):
            cells = [f"{_s(f[op][name]['floor_median_s'])} | **{f[op][name]['ratio_median']:.2f}x** "
                     f"({_each(f[op][name]['ratios'], 2)})" for name in ("empty", "plugins")]
            lines.append(f"| {label} | {_s(f[op]['median_s'])} | {' | '.join(cells)} | {f['repeat']} |")
        lines.append("")
        lines.append("Ratios are medians of per-run ratios.")
        lines.append("")
    m = r["mocks"]
    lines += [
        "### The program's own evaluation",
        "",
        "Target: under 1 s and under 300 MB over the floor. Each process is fresh (peak RSS is per process); "
        "the first run in a process pays the lazy loading of pulumi_kubernetes' generated modules.",
        "",
        "| where | time | floor | peak RSS | floor RSS | over the floor |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| mocks, first run in a process | {_s(m['cold_s'])} | | {m['peak_rss_mib']:.0f} MiB | "
        f"{m['floor_peak_rss_mib']:.0f} MiB | {m['peak_rss_mib'] - m['floor_peak_rss_mib']:.0f} MiB |",
        f"| mocks, later runs (median of {m['runs']}) | {_s(m['warm_s'])} | {_s(m['floor_warm_s'])} | | | |",
        f"| import of `components.instance` (after `pulumi`, {_s(m['pulumi_import_s'])}) | {_s(m['import_s'])} | | | | |",
    ]
    if "engine_program" in r:
        e = r["engine_program"]
        lines.append(
            f"| engine, program function (median of {e['runs']} fresh processes) | {_s(e['program_s'])} | "
            f"{_s(e['floor_program_s'])} | {e['peak_rss_mib']:.0f} MiB | {e['floor_peak_rss_mib']:.0f} MiB | "
            f"{e['peak_rss_mib'] - e['floor_peak_rss_mib']:.0f} MiB |")
        lines.append(f"| engine, whole preview in that process | {_s(e['preview_s'])} | {_s(e['floor_preview_s'])} | | | "
                     f"{e['preview_s'] / e['floor_preview_s']:.2f}x |")
    lines += ["", f"{m['resources']} resources registered under mocks.", ""]
    if "teams" in r:
        t = r["teams"]
        lines += [
            "### Merge-request previews of N team stacks",
            "",
            "Team stacks as `Pulumi.team-search.yaml`, never applied (every object a create). One after another: "
            "one process, as `scripts/ci-preview` runs them. In parallel: one process per stack, "
            f"{t['workers']} at a time (each preview runs its own CLI and plugins on 2 shared cores).",
            "",
            "| stacks | one after another | per stack | in parallel | speed-up |",
            "| --- | --- | --- | --- | --- |",
        ]
        for count, serial in t["serial_s"].items():
            parallel = t["parallel_s"][count]
            lines.append(f"| {count} | {_s(serial)} | {_s(serial / int(count))} | {_s(parallel)} | {serial / parallel:.2f}x |")
        lines.append("")
    if "envs" in r:
        v = r["envs"]
        lines += [
            "### A branch environment",
            "",
            f"`python -m envs create` of a new branch to rendered manifests ({v['objects']} objects, bucket created on "
            f"the local S3 endpoint), a fresh process as a developer runs it: **{_s(v['create_s'])}** median of "
            f"{v['runs']} ({_each(v['creates'])}); `envs destroy` {_s(v['destroy_s'])}.",
            "",
        ]
    if "envs_applied" in r:
        v = r["envs_applied"]
        lines += [
            f"To objects applied on a real kube-apiserver (the test fixture, with its garbage collector and namespace "
            f"controller): envs' own create, in a warm process, every object skipAwait (no nodes: no pod ever "
            f"becomes ready, so waiting for readiness is not part of it): **{_s(v['create_s'])}** median of "
            f"{v['runs']} ({_each(v['creates'])}), {v['objects']} objects in the namespace "
            f"with the namespace; `envs destroy` until the namespace is gone {_s(v['destroy_s'])} "
            f"({_each(v['destroys'])}).",
            "",
        ]
    fp = r["footprint"]
    lines += [
        "## 2. Footprint of a running instance",
        "",
        "Everything that runs all the time (Airflow Deployments with their git-sync sidecars, the Kerberos renewer "
        "when on, PostgreSQL instances with the Barman Cloud sidecar when backups are on, PgBouncer), LimitRange "
        "defaults counted for containers that declare nothing (`components/footprint.py`; cross-checked against "
        "the objects the program creates). Jobs, CronJobs and task pods are not counted. Target for a branch "
        "environment: within 1 vCPU and 2.5 GiB.",
        "",
        "| stack | requests | as written | limits | containers (defaulted) | objects (Pulumi resources) | month | matches objects |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in ORDER:
        s = fp[label]
        lines.append(
            f"| {label} | **{s['requests_cpu']:.2f} vCPU / {s['requests_gib']:.2f} GiB** | {s['declared_cpu']:.2f} / "
            f"{s['declared_gib']:.2f} | {s['limits_cpu']:.2f} / {s['limits_gib']:.2f} | {s['containers']} ({s['defaulted']}) | "
            f"{s['kubernetes_objects']} ({s['pulumi_resources']}) | {s['monthly_cost']:.2f} {s['currency']} | "
            f"{'yes' if s['agrees_with_objects'] else '**no**'} |")
    lines += ["", "Before PgBouncer and the Barman sidecar were given their own requests (same calculator, at a29528f):", ""]
    for label, (cpu, gib, dcpu, dgib) in BEFORE.items():
        lines.append(f"- {label}: {cpu:.2f} vCPU / {gib:.2f} GiB everything counted ({dcpu:.2f} / {dgib:.2f} as written)")
    if "rendered" in r:
        x = r["rendered"]
        lines.append(f"- engine-rendered `local` stack ({x['objects']} YAML objects): {x['rendered'][0]:.2f} vCPU / "
                     f"{x['rendered'][1]:.2f} GiB counted from the YAML, {x['computed'][0]:.2f} / {x['computed'][1]:.2f} "
                     "from its settings")
    lines += ["", "For comparison (published figures, not measured here):", ""]
    lines += [f"- {name}: {figure}" for name, figure in REFERENCES]
    lines += ["", "Per workload (requests, vCPU / GiB):", "", "| workload | " + " | ".join(ORDER) + " |",
              "| --- |" + " --- |" * len(ORDER)]
    workloads = sorted({w for label in ORDER for w in fp[label]["by_workload"]})
    for w in workloads:
        cells = [("%.2f / %.2f" % tuple(fp[label]["by_workload"][w])) if w in fp[label]["by_workload"] else "-"
                 for label in ORDER]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    lines.append("")
    if "suite" in r:
        s = r["suite"]
        lines += [
            "## 4. The edit-test loop",
            "",
            f"`.venv/bin/python -m pytest -q -m \"not slow\" -p no:cacheprovider`: {_each(s['wall_s'], 0, ' s')} "
            f"wall, {_each(s['cpu_s'], 0, ' s')} CPU ({s['runs']} run(s); {s['summary']}). "
            "Target: under 60 s.",
            "",
        ]
    ci_runs = json.loads(CI_TIMES.read_text()) if CI_TIMES.exists() else []
    if ci_runs:
        lines += [
            "CI's own command, `bash .ci/run`, on a clean clone (`python -m bench.ci_times [--cold] [--setup-only]`; "
            "warm: this machine's build caches; cold: every cache empty, only the Debian packages already installed; "
            "set-up: .ci/run's set-up alone, then the tests are collected, not run; a cold run takes about a cold "
            "set-up plus a warm run). CI's limit is 90 minutes.",
            "",
            "| run | commit | wall | exit | tests | when | load after |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {c['kind']} | {c['commit']} | {c['seconds'] // 60} min {c['seconds'] % 60:02d} s | {c['exit']} | "
                  f"{c['pytest']} | {c['when']} | {c['load_after']} |" for c in ci_runs]
        lines.append("")
    lines += ["`python -m bench` also draws these figures into `results.png`, which is not committed.", ""]
    (out / "results.md").write_text("\n".join(lines))
    plot(r, out / "results.png")


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0][0]
    if "floor" in r:
        ops = ["preview", "up"]
        full = [r["floor"][op]["median_s"] for op in ops]
        x = range(len(ops))
        for offset, name, label in ((-0.27, "empty", "empty program"), (0.0, "plugins", "plugin floor")):
            ax.bar([i + offset for i in x], [r["floor"][op][name]["floor_median_s"] for op in ops], 0.27, label=label)
        ax.bar([i + 0.27 for i in x], full, 0.27, label="full instance")
        for i, op in enumerate(ops):
            ratios = " / ".join(f"{r['floor'][op][name]['ratio_median']:.2f}x" for name in ("empty", "plugins"))
            ax.annotate(ratios, (i + 0.27, full[i]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(x), ["preview", "no-op up"])
        ax.set_ylabel("seconds (median)")
        ax.legend()
    ax.set_title("Engine time against its floor")
    ax = axes[0][1]
    if "teams" in r:
        counts = [int(c) for c in r["teams"]["serial_s"]]
        ax.plot(counts, list(r["teams"]["serial_s"].values()), "o-", label="one after another")
        ax.plot(counts, list(r["teams"]["parallel_s"].values()), "s-", label=f"{r['teams']['workers']} at a time")
        ax.set_xlabel("team stacks")
        ax.set_ylabel("seconds")
        ax.legend()
    ax.set_title("Merge-request preview of N stacks")
    fp = r["footprint"]
    workloads = sorted({w for label in ORDER for w in fp[label]["by_workload"]})
    for ax, index, unit, target in ((axes[1][0], 0, "vCPU", 1.0), (axes[1][1], 1, "GiB", 2.5)):
        bottom = [0.0] * len(ORDER)
        for w in workloads:
            values = [fp[label]["by_workload"].get(w, (0, 0))[index] for label in ORDER]
            ax.bar(ORDER, values, bottom=bottom, label=w)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.axhline(target, color="red", linestyle="--", linewidth=1, label=f"branch target {target} {unit}")
        ax.set_ylabel(f"requests, {unit}")
        ax.set_title(f"Always-running requests ({unit})")
    axes[1][1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Rewrite bench/results.md and bench/results.png from bench/results.json (and ci_times.json), "
        "e.g. after bench.ci_times ran. Takes no arguments.",
    ).parse_args(argv)
    here = Path(__file__).resolve().parent
    write(json.loads((here / "results.json").read_text()), here)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
