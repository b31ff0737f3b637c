"""One rendered pod's volumes on this machine, for running its commands for real outside Kubernetes.

Secret and ConfigMap volumes become directories holding their files (a keytab stays binary), emptyDirs empty
directories, and a PersistentVolumeClaim the same directory in every pod that claims it, as a ReadWriteMany
volume is. Container paths in a command or an env value are rewritten onto those directories.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from testbed.harness import StackRun


class PodView:
    def __init__(self, run: StackRun, spec: dict, root: Path, claims: Path, map_tmp: bool = False):
        self.spec, self.map_tmp = spec, map_tmp
        self.dirs: dict[str, Path] = {}
        for volume in spec["volumes"]:
            if "persistentVolumeClaim" in volume:
                host = claims / volume["persistentVolumeClaim"]["claimName"]
            else:
                host = root / volume["name"]
            host.mkdir(parents=True, exist_ok=True)
            for key, content in _files(run, volume).items():
                (host / key).write_bytes(content)
            self.dirs[volume["name"]] = host

    def container(self, name: str | None = None) -> dict:
        containers = self.spec["containers"]
        return containers[0] if name is None else next(c for c in containers if c["name"] == name)

    def _mounts(self, container: dict) -> list[tuple[str, str]]:
        mounts = [
            (m["mountPath"], str(self.dirs[m["name"]] / m.get("subPath", "")).rstrip("/"))
            for m in container.get("volumeMounts", [])
            # /tmp stays the machine's own unless asked: a command's own temp files would land in the pod's.
            if m["mountPath"] != "/tmp" or self.map_tmp
        ]
        return sorted(mounts, key=lambda item: -len(item[0]))

    def mapped(self, container: dict, text: str) -> str:
        """`text` with every container path under a mount replaced by its host path, in one pass (the host
        paths may themselves lie under a mounted path such as /tmp)."""
        mounts = dict(self._mounts(container))
        if not mounts:
            return text
        pattern = "|".join(re.escape(path) for path in mounts)  # longest first: _mounts sorts them
        return re.sub(f"({pattern})(?=/|$|[^\\w.-])", lambda match: mounts[match.group(1)], text)

    def env(self, container: dict) -> dict[str, str]:
        """The container's literal env, with container paths mapped onto this machine."""
        return {e["name"]: self.mapped(container, e["value"]) for e in container.get("env", []) if "value" in e}

    def command(self, argv: list[str], container: dict) -> list[str]:
        return [self.mapped(container, arg) for arg in argv]


def _files(run: StackRun, volume: dict) -> dict[str, bytes]:
    if "secret" in volume:
        obj = run.named(volume["secret"]["secretName"]).inputs
        files = {k: v.encode() for k, v in (obj.get("stringData") or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        return files
    if "configMap" in volume:
        return {k: v.encode() for k, v in run.named(volume["configMap"]["name"]).inputs["data"].items()}
    return {}
