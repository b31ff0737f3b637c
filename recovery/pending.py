"""The operations an update began and never finished, as its state records them, and how `recover` settles each:
recorded where what it creates may exist (the refresh that follows confirms or drops it), dropped otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from recovery.bucket import settle_bucket
from recovery.common import BUCKET_TYPE


@dataclass(frozen=True)
class Pending:
    operation: str  # creating, updating, deleting, reading, importing
    urn: str
    type: str

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def describe(self) -> str:
        what = {"creating": "create", "updating": "update", "deleting": "delete", "reading": "read",
                "importing": "import"}.get(self.operation, self.operation)
        return f"{what} of {self.type.rsplit(':', 1)[-1]} {self.name} ({self.type})"


def pending_in(deployment: dict) -> list[Pending]:
    return [Pending(op.get("type", "?"), op["resource"]["urn"], op["resource"]["type"])
            for op in deployment.get("pending_operations") or []]


def _kubernetes_id(inputs: dict) -> str | None:
    metadata = inputs.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def settle(deployment: dict) -> tuple[dict, list[str]]:
    """The deployment with every pending operation settled: pending creates recorded as resources where what
    they create may exist (the refresh that follows confirms each or drops it), the rest dropped."""
    deployment = dict(deployment)
    resources = list(deployment.get("resources") or [])
    live = {r["urn"] for r in resources if not r.get("delete")}
    done = []
    for op in deployment.get("pending_operations") or []:
        resource, kind = dict(op["resource"]), op.get("type")
        label = f"{resource['type'].rsplit(':', 1)[-1]} {resource['urn'].rsplit('::', 1)[-1]}"
        if kind != "creating":
            done.append(f"{kind} {label}: dropped; the refresh reads its real state")
        elif resource["urn"] in live:  # the create of a replacement: the state records the object it replaces
            done.append(f"create replacing {label}: dropped; the refresh reads the recorded one, the next up "
                        "replaces it again")
        elif not resource.get("custom"):
            resources.append(resource)
            done.append(f"create of component {label}: recorded (it exists only in the state)")
        elif resource["type"] == BUCKET_TYPE:
            entry, what = settle_bucket(resource)
            resources += [entry] if entry else []
            done.append(what)
        elif resource["type"].startswith("kubernetes:") and not resource["type"].startswith("pulumi:providers"):
            object_id = _kubernetes_id(resource.get("inputs") or {})
            if object_id is None:
                done.append(f"create of {label}: dropped; it has no name to look it up by: check the cluster for it")
                continue
            resources.append({**resource, "id": object_id, "outputs": resource.get("inputs") or {}})
            done.append(f"create of {label}: recorded as {object_id}; the refresh reads it from the API server, "
                        "or drops it if it was never made")
        elif resource["type"].startswith("random:"):
            done.append(f"create of {label}: dropped (a random value exists only in the state; the next up makes it)")
        else:
            done.append(f"create of {label}: dropped; it may exist outside the state: check it")
    deployment["resources"] = resources
    deployment["pending_operations"] = []
    return deployment, done

