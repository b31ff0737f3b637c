"""The node instance's database as a test reads it: its pods, SQL run by psql inside the PostgreSQL pod, and the
rows a user's history lives in."""

from __future__ import annotations

from urllib.parse import quote

from components import kube
from testbed.node.instance import items

HISTORY_TABLES = ("dag_run", "task_instance", "log")


def pods(node, namespace: str, selector: str) -> list[dict]:
    return items(node.api, f"/api/v1/namespaces/{namespace}/pods?labelSelector={quote(selector, safe='')}")


def cnpg_items(node, namespace: str, plural: str) -> list[dict]:
    """CloudNativePG's objects of one kind (clusters, poolers, backups, ...) in the namespace."""
    return items(node.api, f"/apis/postgresql.cnpg.io/v1/namespaces/{namespace}/{plural}")


def kubectl(node, *args: str) -> str:
    done = node.kubectl(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def primary(node, namespace: str) -> dict:
    """The PostgreSQL instance's pod (one instance on the node)."""
    (pod,) = [p for p in pods(node, namespace, f"{kube.CNPG_POD_ROLE_LABEL}=instance")
              if p["metadata"].get("labels", {}).get("cnpg.io/instanceRole", "primary") == "primary"]
    return pod


def psql(node, namespace: str, sql: str) -> str:
    """`psql -tAc SQL` on the `airflow` database as postgres, in the instance's pod; the output, trimmed."""
    pod = primary(node, namespace)["metadata"]["name"]
    return kubectl(node, "exec", "-n", namespace, pod, "-c", "postgres", "--", "psql", "-d", "airflow", "-tAc", sql).strip()


def row_counts(node, namespace: str, tables: tuple[str, ...] = HISTORY_TABLES) -> dict[str, int]:
    """Rows of the tables a user's history lives in."""
    out = psql(node, namespace, "select " + ", ".join(f"(select count(*) from {t})" for t in tables))
    return dict(zip(tables, (int(n) for n in out.split("|"))))
