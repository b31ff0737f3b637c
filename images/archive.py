"""Layers and docker-archives: writing an uncompressed layer tar while hashing it (its diff_id), from made-up
entries (the images without an operating system, whiteouts) or from a directory tree (a root filesystem, or an
overlay's upper directory, whose deletions become whiteouts); and writing the docker-archive (`docker save`
format: layer tars, a config JSON, a manifest.json whose RepoTags hold the reference) that
`ctr -n k8s.io images import` takes.

Used by images/base.py (the base layer), images/specs.py (the scratch layers) and images/build.py.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import platform
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Bump when the way layers or archives are written changes: every image is then rebuilt.
LAYER_FORMAT = 1
# A fixed time for the files of the images made without an operating system.
FILE_MTIME = 1_700_000_000
# Not in a layer at all: the runtime mounts its own.
SKIP_CONTENTS = ("dev", "proc", "sys")


def docker_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@dataclass
class Layer:
    path: Path
    diff_id: str  # sha256:<hex> of the uncompressed tar
    size: int
    comment: str

    def meta(self) -> dict:
        return {"diff_id": self.diff_id, "size": self.size, "comment": self.comment}

    @classmethod
    def load(cls, path: Path) -> Layer | None:
        meta = path.with_suffix(".json")
        if not path.is_file() or not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        if path.stat().st_size != data["size"]:
            return None
        return cls(path, data["diff_id"], data["size"], data["comment"])


class _HashingFile(io.RawIOBase):
    def __init__(self, target):
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.target.write(data)
        self.size += len(data)
        return len(data)


class LayerWriter:
    """Writes one uncompressed layer tar, hashing it on the way (its diff_id)."""

    def __init__(self, path: Path, comment: str):
        self.path, self.comment = path, comment
        self._tmp = path.with_name(path.name + ".tmp")
        self._file = open(self._tmp, "wb")
        self._hashing = _HashingFile(self._file)
        self.tar = tarfile.open(fileobj=self._hashing, mode="w|", format=tarfile.PAX_FORMAT)
        self._links: dict[tuple[int, int], str] = {}

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)

    def finish(self) -> Layer:
        self.tar.close()
        self._file.close()
        os.replace(self._tmp, self.path)
        layer = Layer(self.path, "sha256:" + self._hashing.sha.hexdigest(), self._hashing.size, self.comment)
        self.path.with_suffix(".json").write_text(json.dumps(layer.meta()))
        return layer

    # Entries made up here (images without an operating system, whiteouts).
    def add_dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def add_host_file(self, name: str, source: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = source.stat().st_size
        with open(source, "rb") as f:
            self.tar.addfile(info, f)

    def add_symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self.tar.addfile(info)

    @staticmethod
    def _info(name: str, type_: bytes, mode: int, uid: int, gid: int, mtime: int = FILE_MTIME) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type, info.mode, info.uid, info.gid, info.mtime = type_, mode, uid, gid, mtime
        info.uname = info.gname = ""
        return info

    # A directory tree (a root filesystem, or an overlay's upper directory).
    def add_tree(self, root: Path, overlay_upper: bool = False) -> None:
        for rel, st in _walk(root):
            path = root / rel
            if overlay_upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                # overlayfs marks a deleted file with a 0/0 character device; an image layer with `.wh.<name>`.
                parent, _, base = rel.rpartition("/")
                self.tar.addfile(self._info(f"{parent}/.wh.{base}" if parent else f".wh.{base}", tarfile.REGTYPE, 0, 0, 0))
                continue
            info = self._info(rel, tarfile.REGTYPE, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                self.tar.addfile(info)
                if overlay_upper and _xattr(path, "trusted.overlay.opaque") == b"y":
                    # A directory that replaced a lower one hides everything below it.
                    self.tar.addfile(self._info(f"{rel}/.wh..wh..opq", tarfile.REGTYPE, 0, 0, 0))
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                self.tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self._links:
                    info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
                    self.tar.addfile(info)
                    continue
                if st.st_nlink > 1:
                    self._links[key] = rel
                capability = _xattr(path, "security.capability")
                if capability is not None:
                    info.pax_headers["SCHILY.xattr.security.capability"] = capability.decode("latin-1")
                info.size = st.st_size
                with open(path, "rb") as f:
                    self.tar.addfile(info, f)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
                self.tar.addfile(info)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                self.tar.addfile(info)
            # Sockets are left out: they mean nothing in an image.


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _walk(root: Path, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything below `root`, sorted, each directory before its contents; the
    contents of /dev, /proc and /sys are left out."""
    with os.scandir(root / rel if rel else root) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        child = f"{rel}/{name}" if rel else name
        st = os.lstat(root / child)
        yield child, st
        if stat.S_ISDIR(st.st_mode) and child not in SKIP_CONTENTS:
            yield from _walk(root, child)


def write_archive(path: Path, ref: str, layers: list[Layer], config: dict) -> int:
    """A docker-archive (`docker save` format) of `layers` tagged `ref`; returns its size."""
    image_config = {
        "architecture": docker_arch(),
        "os": "linux",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": layer.comment} for layer in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [f"{layer.diff_id.split(':', 1)[1]}/layer.tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": layer_names}]
    tmp = path.with_name(path.name + ".tmp")

    def member(name: str, size: int = 0, type_: bytes = tarfile.REGTYPE, mode: int = 0o644) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime = type_, size, mode, FILE_MTIME
        return info

    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
            for layer, name in zip(layers, layer_names):
                archive.addfile(member(name.split("/")[0], type_=tarfile.DIRTYPE, mode=0o755))
                archive.addfile(member(name.split("/")[0] + "/VERSION", 3), io.BytesIO(b"1.0"))
                with open(layer.path, "rb") as f:
                    archive.addfile(member(name, layer.size), f)
            archive.addfile(member(config_name, len(config_bytes)), io.BytesIO(config_bytes))
            manifest_bytes = json.dumps(manifest).encode()
            archive.addfile(member("manifest.json", len(manifest_bytes)), io.BytesIO(manifest_bytes))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size
