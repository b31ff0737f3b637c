"""What the cluster shows when a node test gives up: the namespace's objects and events, and the last lines each
restarted or failed container wrote before it exited (an Airflow that exits at start says why only there)."""

from __future__ import annotations

from testbed.node.instance import items

KINDS = "pods,jobs,deployments,events"


def seen(node, namespace: str | None, kinds: str = KINDS) -> str:
    where = ["-n", namespace] if namespace else ["-A"]
    done = node.kubectl("get", kinds, "-o", "wide", *where)
    report = [f"kubectl get {kinds}:\n{done.stdout}{done.stderr}"]
    for pod in items(node.api, f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"):
        for status in pod["status"].get("containerStatuses") or []:
            restarted = bool(status.get("restartCount"))
            if restarted or (status["state"].get("terminated") or {}).get("exitCode"):
                logs = node.kubectl("logs", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"], "-c",
                                    status["name"], "--tail=40", *(["--previous"] if restarted else []))
                report.append(f"logs of {pod['metadata']['name']}/{status['name']}:\n{logs.stdout}{logs.stderr}")
    return "\n".join(report)
