"""Running a one-off pod on the test node and reading what it printed."""

from __future__ import annotations

import time

from testbed.apiserver import KubeAPI

# Tries each (name, address, port) with a 3 s timeout and prints one line `PATHS {name: "open" | "closed (...)"}`.
# Run in a task pod (testbed/node/instance.py's DAG) and in plain pods (tests/node/test_network_policies.py).
PROBE_FUNCTION = """
def probe(targets):
    import json
    import socket
    from concurrent.futures import ThreadPoolExecutor

    def attempt(target):
        name, address, port = target
        try:
            socket.create_connection((address, port), timeout=3).close()
            return name, "open"
        except OSError as error:
            return name, f"closed ({error.__class__.__name__})"

    with ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(attempt, targets))
    print("PATHS " + json.dumps(results, sort_keys=True), flush=True)
"""


def restricted_pod(name: str, image: str, script: str, uid: int = 50000) -> dict:
    """A pod Pod Security `restricted` admits, running `script` with python3."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": 0,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "command": ["python3", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            }],
        },
    }


def run_to_completion(api: KubeAPI, namespace: str, pod: dict, timeout: float = 90) -> tuple[str, str]:
    """(phase, log) of `pod` once it has finished."""
    created = api.create({**pod, "metadata": {**pod["metadata"], "namespace": namespace}})
    assert created.ok, created.body
    path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    deadline = time.monotonic() + timeout
    while True:
        phase = api.request("GET", path).body.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            break
        assert time.monotonic() < deadline, f"pod {pod['metadata']['name']} still {phase} after {timeout}s"
        time.sleep(0.5)
    log = api._session.get(f"{api.url}{path}/log", verify=api.ca, timeout=30,
                           headers={"Authorization": f"Bearer {api.token}"}).text
    return phase, log
