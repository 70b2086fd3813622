"""OCI images written by hand: gzipped tar layers, their config and manifest, in one
`oci-archive` tar (what `podman load`, `skopeo copy oci-archive:...` and registries take).

No Docker daemon and no image tool on the server: a layer is a tar of a folder, an image
is two JSON files naming its layers by digest (the OCI image spec, v1.0). Everything a
layer holds is owned by root or by the image's app user, with mode bits kept and
timestamps clamped, so the same files make the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EPOCH = 946684800  # 2000-01-01: every file's mtime in a layer (the same files, one digest)


@dataclass(frozen=True)
class Layer:
    path: Path  # the gzipped tar
    digest: str  # "sha256:..." of the gzipped bytes (how the manifest names the blob)
    diff_id: str  # "sha256:..." of the tar itself (how the config names the layer)
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(Path(data["path"]), data["digest"], data["diff_id"], int(data["size"]))


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes what passes through it on its way to `inner`."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile) -> None:
        super().__init__()
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)


Entries = Callable[[tarfile.TarFile], None]


def write_layer(target: Path, add: Entries, level: int = 6) -> Layer:
    """A layer at `target`: `add` puts its entries into the tar (see add_tree)."""
    with target.open("wb") as file:
        compressed = _Hashing(file)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=level, mtime=0) as gz:
            plain = _Hashing(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add(tar)
    return Layer(
        target,
        f"sha256:{compressed.hash.hexdigest()}",
        f"sha256:{plain.hash.hexdigest()}",
        compressed.size,
    )


def add_tree(
    tar: tarfile.TarFile,
    source: Path,
    arcname: str,
    owner: Callable[[tarfile.TarInfo], tuple[int, int]] = lambda info: (0, 0),
    skip: Callable[[str], bool] = lambda name: False,
    parents: bool = True,
) -> None:
    """`source` and everything under it as `arcname` (no leading slash), symlinks kept
    as links, owners from `owner`, mtimes clamped; names for which `skip` is true (a
    path inside the image, with its leading slash) left out with what is under them.
    `parents`: add the folders above it too (once per layer: a tar may name a path once)."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if skip("/" + info.name):
            return None
        info.uid, info.gid = owner(info)
        info.uname = info.gname = ""
        info.mtime = min(int(info.mtime), EPOCH)
        info.pax_headers = {}
        return info

    if arcname in ("", "."):  # a whole root file system: its top folder is the image's
        for child in sorted(source.iterdir()):
            tar.add(child, arcname=child.name, recursive=True, filter=clean)
        return
    for parent in _parents(arcname) if parents else []:
        tar.addfile(directory(parent))
    tar.add(source, arcname=arcname, recursive=True, filter=clean)


def _parents(arcname: str) -> list[str]:
    parts = arcname.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, mode, uid, gid, EPOCH
    return info


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, EPOCH
    tar.addfile(info, io.BytesIO(data))


def add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, EPOCH
    tar.addfile(info)


def write_archive(target: Path, layers: list[Layer], config: dict[str, Any], ref: str) -> str:
    """The image as an oci-archive at `target` (written beside it, then renamed into
    place): `config` is the image's runtime config (Env, Cmd, User...); `ref` its name
    (the index's org.opencontainers.image.ref.name). Returns the manifest's digest."""
    image_config = {
        "architecture": _architecture(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created_by": "onebox export", "created": "2000-01-01T00:00:00Z"} for _ in layers
        ],
    }
    config_blob = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": _descriptor(CONFIG, config_blob),
        "layers": [{"mediaType": LAYER, "digest": x.digest, "size": x.size} for x in layers],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    manifest_ref = {
        **_descriptor(MANIFEST, manifest_blob),
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest_ref]}
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        add_file(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_file(tar, "index.json", json.dumps(index).encode())
        tar.addfile(directory("blobs"))
        tar.addfile(directory("blobs/sha256"))
        for blob in (config_blob, manifest_blob):
            add_file(tar, f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob)
        for layer in layers:
            info = tar.gettarinfo(str(layer.path), arcname=f"blobs/sha256/{layer.digest[7:]}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode, info.mtime = 0o644, EPOCH
            with layer.path.open("rb") as handle:
                tar.addfile(info, handle)
    os.replace(partial, target)
    return manifest_ref["digest"]


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
    }


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
