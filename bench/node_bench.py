"""`python -m bench.node_bench`: what an instance costs and how fast it comes up, on the test node.

Starts the one-node cluster (tests/node/), runs `up` of a branch-like stack through the real engine while
timing when each workload becomes ready, triggers the smoke DAG and times the task pod, then reads what every
pod actually uses (kubelet's summary API: working-set memory and CPU, from the pods' cgroups) once idle for
`--idle` seconds and while a task runs, beside what each pod requests. Writes bench/node.json and
bench/node.md.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import say  # noqa: E402
from components.settings.rules import cpu_cores, memory_bytes  # noqa: E402


def requests_by_pod(api, namespace: str) -> dict[str, dict[str, float]]:
    found = {}
    for pod in api.request("GET", f"/api/v1/namespaces/{namespace}/pods").body["items"]:
        cpu = memory = 0.0
        for container in pod["spec"]["containers"]:
            asked = (container.get("resources") or {}).get("requests") or {}
            cpu += cpu_cores(asked.get("cpu", "0"))
            memory += memory_bytes(asked.get("memory", "0"))
        found[pod["metadata"]["name"]] = {"cpu": cpu, "memory": memory}
    return found


def usage_by_pod(api, node_name: str, namespace: str) -> dict[str, dict[str, float]]:
    summary = api.request("GET", f"/api/v1/nodes/{node_name}/proxy/stats/summary").body
    found = {}
    for pod in summary.get("pods", []):
        if pod["podRef"]["namespace"] != namespace:
            continue
        found[pod["podRef"]["name"]] = {
            "cpu": (pod.get("cpu") or {}).get("usageNanoCores", 0) / 1e9,
            "memory": (pod.get("memory") or {}).get("workingSetBytes", 0),
        }
    return found


def role(name: str, instance: str) -> str:
    """`br-node-abc123-scheduler-5d8f-x2` -> `scheduler`."""
    rest = name.removeprefix(f"{instance}-")
    parts = rest.split("-")
    while len(parts) > 1 and (any(c.isdigit() for c in parts[-1]) or len(parts[-1]) in (5, 10)):
        parts.pop()
    return "-".join(parts)


def watch_ready(api, namespace_of, started: float, seen: dict, stop: threading.Event) -> None:
    """Seconds from `up` start to each Deployment's first availability (polled every 0.5 s)."""
    while not stop.is_set():
        namespace = namespace_of()
        if namespace:
            found = api.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
            for deployment in found.body.get("items", []) if found.ok else []:
                name = deployment["metadata"]["name"]
                if deployment["status"].get("availableReplicas") == deployment["spec"]["replicas"]:
                    seen.setdefault(name, round(time.monotonic() - started, 1))
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=180, help="seconds idle before reading idle usage")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)

    from testbed.apiserver import _script, binaries
    from testbed.node.cluster import NODE_NAME, Node
    from testbed.node.instance import Airflow, GitServer, S3OnBridge, open_branch_stack, service_url

    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": _load()}
    node = Node(binaries(), Path(_script("install-node-tools", 3600)), Path(_script("build-node-images", 3600)))
    work = Path(tempfile.mkdtemp(prefix="node-bench-"))
    try:
        node.start()
        results["node_start_s"] = node.timings
        with S3OnBridge() as s3_url:
            git = GitServer(work / "git")
            repo = git.start()
            name = f"br-bench-{secrets.token_hex(3)}"
            (work / "stack").mkdir()
            stack = open_branch_stack(name, node.kubeconfig(), s3_url, repo, work / "stack")
            namespace = f"airflow-{name}"
            ready: dict = {}
            stop = threading.Event()
            started = time.monotonic()
            watcher = threading.Thread(target=watch_ready, args=(node.api, lambda: namespace, started, ready, stop))
            watcher.start()
            say(f"up {name}")
            up = stack.up(color="never")
            results["up_s"] = round(time.monotonic() - started, 1)
            stop.set()
            watcher.join()
            namespace = up.outputs["namespace"].value
            results["ready_s"] = {role(k, name): v for k, v in ready.items()}
            airflow = Airflow(service_url(node.api, namespace, "api-server"), up.outputs["admin_password"].value)
            airflow.login()
            airflow.wait_for_dag("node_smoke")
            results["first_dag_parsed_s"] = round(time.monotonic() - started, 1)
            triggered = time.monotonic()
            run_id = airflow.trigger("node_smoke")
            pod_running = None
            while True:
                pods = node.api.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=dag_id%3Dnode_smoke")
                if pod_running is None and any(p["status"].get("phase") in ("Running", "Succeeded") for p in pods.body["items"]):
                    pod_running = round(time.monotonic() - triggered, 1)
                state = airflow.get(f"/dags/node_smoke/dagRuns/{run_id}").json().get("state")
                if state in ("success", "failed"):
                    break
                time.sleep(0.5)
            results["trigger_to_task_pod_running_s"] = pod_running
            results["trigger_to_success_s"] = round(time.monotonic() - triggered, 1)
            results["run_state"] = state
            say(f"idle {args.idle}s")
            time.sleep(args.idle)
            requested = requests_by_pod(node.api, namespace)
            results["pods"] = {
                role(pod, name): {"requests": requested.get(pod), "idle": use}
                for pod, use in usage_by_pod(node.api, NODE_NAME, namespace).items()
            }
            run_id = airflow.trigger("node_long")
            time.sleep(20)
            for pod, use in usage_by_pod(node.api, NODE_NAME, namespace).items():
                results["pods"].setdefault(role(pod, name), {"requests": requested.get(pod)})["busy"] = use
            stack.destroy(color="never")
            git.stop()
    finally:
        results["load_after"] = _load()
        results["teardown_leftovers"] = node.stop()
    (args.out / "node.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "node.md").write_text(report(results))
    say(f"wrote {args.out / 'node.md'}")
    return 0


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(r: dict) -> str:
    lines = [f"# An instance on the test node ({r['when']})", "",
             "Measured by `python -m bench.node_bench` on the one-node cluster of tests/node/ (2 cores; load average "
             f"{r.get('load_before', '?')} before, {r.get('load_after', '?')} after).", "",
             f"- test node started (s from nothing): {r['node_start_s']}",
             f"- `up` of a branch-like stack, no skipAwait: **{r['up_s']} s**; each Deployment available at (s): {r['ready_s']}",
             f"- first DAG parsed: {r['first_dag_parsed_s']} s after `up` started",
             f"- trigger to task pod running: **{r['trigger_to_task_pod_running_s']} s**; to success: {r['trigger_to_success_s']} s ({r['run_state']})",
             "", "| pod | requests cpu | used idle | used during a task | requests memory | used idle | used during a task |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, pod in sorted(r["pods"].items()):
        req, idle, busy = pod.get("requests") or {}, pod.get("idle") or {}, pod.get("busy") or {}
        mib = lambda v: f"{v / 2**20:.0f} MiB" if v is not None else "-"  # noqa: E731
        cores = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
        lines.append(f"| {name} | {cores(req.get('cpu'))} | {cores(idle.get('cpu'))} | {cores(busy.get('cpu'))} | "
                     f"{mib(req.get('memory'))} | {mib(idle.get('memory'))} | {mib(busy.get('memory'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
