"""The dev-sized settings every branch environment starts from."""

from __future__ import annotations

from typing import Any

NAVBAR_COLOR = "#f0ad4e"  # orange: neither dev's green nor prod's red


def _small(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def dev_template() -> dict[str, Any]:
    """The dev-sized settings every branch environment starts from (keys as in `Pulumi.<stack>.yaml`)."""
    return {
        "protect": False,
        "navbarColor": NAVBAR_COLOR,
        "apiServer": {"replicas": 1, "workers": 1, "resources": _small("100m", "512Mi", "1", "1Gi")},
        "scheduler": {"replicas": 1, "resources": _small("100m", "512Mi", "1", "1Gi")},
        "dagProcessor": {"replicas": 1, "resources": _small("100m", "512Mi", "1", "1Gi")},
        "triggerer": {"replicas": 1, "resources": _small("50m", "256Mi", "500m", "512Mi")},
        "taskPod": {"resources": _small("100m", "256Mi", "1", "1Gi")},
        "postgres": {
            "instances": 1,
            "storageSize": "2Gi",
            "poolerInstances": 1,
            "resources": _small("100m", "256Mi", "500m", "512Mi"),
            "parameters": {"max_connections": "100"},
            "backups": {"enabled": False},
        },
        "s3": {"forceDestroy": True, "retentionDays": 3},
        "auth": {"mode": "simple"},
    }
