"""What a kill leaves half-written in a file backend (file://), repaired before the stack is opened."""

from __future__ import annotations

import json
from pathlib import Path

from recovery.common import PROJECT
from recovery.locks import file_backend_root, file_locks


def repair_file_backend(url: str | None, stack: str, force: bool = False) -> list[str]:
    """What a kill can leave half-written in a file backend, repaired. gocloud's fileblob writes a blob's
    `<name>.attrs` sidecar (content type, MD5) in place, then renames the new blob into place: a process killed
    in between leaves the sidecar empty, and every later read of the stack fails with `failed to load checkpoint:
    EOF`. Such a sidecar is written again from the file it describes; temp files of unfinished writes go."""
    root = file_backend_root(url)
    if root is None:
        return []
    holders = {lock.holder for lock in file_locks(root, stack)}
    if "running" in holders or ("elsewhere" in holders and not force):
        return []  # its files may be an update's own, being written: the lock check says what to do
    meta = root / ".pulumi"
    files = [path for folder in (meta / "stacks" / PROJECT, meta / "stacks") if folder.is_dir()
             for path in folder.iterdir() if path.name.startswith(f"{stack}.")]
    for folder in (*meta.glob(f"locks/*/{PROJECT}/{stack}"), *meta.glob(f"history/{PROJECT}/{stack}")):
        files += [path for path in folder.iterdir()]
    done = []
    for path in files:
        if path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
            done.append(f"removed {path}, a write the kill interrupted")
        elif path.name.endswith(".attrs") and not _readable_json(path):
            described = path.with_name(path.name.removesuffix(".attrs"))
            if described.is_file():
                import base64
                import hashlib

                md5 = base64.b64encode(hashlib.md5(described.read_bytes()).digest()).decode()
                path.write_text(json.dumps({"user.cache_control": "", "user.content_disposition": "",
                                            "user.content_encoding": "", "user.content_language": "",
                                            "user.content_type": "text/plain; charset=utf-8", "user.metadata": None,
                                            "md5": md5}) + "\n")
                done.append(f"rewrote {path}, left empty by the kill")
            else:
                path.unlink()
                done.append(f"removed {path}, the sidecar of a file that is not there")
    return done


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False

