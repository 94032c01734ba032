"""An image's layers, read from `docker save` in one pass: which entries hold a
needle (a secret, a CA bundle), and what the newest layer (what a build added)
holds, contents included. `docker save` of a builder-sized image takes
seconds, so a test that needs both asks once (`scan`)."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from nbs2i.archive import readable
from nbs2i.engine import Docker
from tests.support import docker_api


@dataclass(frozen=True)
class Entry:
    info: tarfile.TarInfo
    data: bytes | None  # a regular file's content

    @property
    def name(self) -> str:
        return self.info.name


@dataclass(frozen=True)
class LayerScan:
    hits: tuple[str, ...]  # "<layer>:<entry>" whose name or content holds a needle
    top: tuple[Entry, ...]  # the newest layer's entries
    layers: int


class _Hashing(io.RawIOBase):
    """Reads through to `inner`, hashing what passes (a layer is known by the
    sha256 of its tar: its diff id)."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(target))
        self.digest.update(data)
        target[: len(data)] = data
        return len(data)


def scan(engine: Docker, image: str, needles: Sequence[bytes] = ()) -> LayerScan:
    """Every layer once: the entries that hold a needle, and the newest layer."""
    top_id = engine.inspect_image(image).layers[-1]
    hits: list[str] = []
    top: list[Entry] = []
    count = 0
    with tarfile.open(fileobj=readable(docker_api.save(image)), mode="r|") as outer:
        for member in outer:
            data = _layer(outer, member)
            if data is None:
                continue
            count += 1
            hashing = _Hashing(data)
            entries = _entries(hashing, member.name, needles, hits)
            hashing.read()  # the end blocks count towards the diff id too
            if f"sha256:{hashing.digest.hexdigest()}" == top_id:
                top = entries
    assert count > 0, f"docker save {image} held no layer"
    assert top, f"no layer of {image} has the diff id {top_id}"
    return LayerScan(tuple(hits), tuple(top), count)


def _layer(outer: tarfile.TarFile, member: tarfile.TarInfo) -> io.BufferedIOBase | None:
    """The uncompressed tar of a layer in a save, or None for any other member.
    Each engine lays a save out its own way: `ID/layer.tar` (Docker's classic
    store), `DIFFID.tar` with `ID/layer.tar` links to it (podman), blobs named
    by digest, layers gzipped as they were built or pulled, next to the JSON of
    manifests and configs (the containerd store)."""
    is_blob = member.name.startswith("blobs/sha256/")
    if not member.isfile() or not (is_blob or member.name.endswith(".tar")):
        return None
    data = outer.extractfile(member)
    assert data is not None
    head = data.read(2)
    if head[:1] == b"{":
        return None
    whole = readable(itertools.chain([head], iter(lambda: data.read(1 << 16), b"")))
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=whole)
    return whole


def _entries(
    hashing: _Hashing, layer_name: str, needles: Sequence[bytes], hits: list[str]
) -> list[Entry]:
    found = []
    with tarfile.open(fileobj=io.BufferedReader(hashing), mode="r|") as layer:
        for info in layer:
            body = None
            if info.isfile():
                handle = layer.extractfile(info)
                body = handle.read() if handle else b""
            if any(n in info.name.encode() or n in (body or b"") for n in needles):
                hits.append(f"{layer_name}:{info.name}")
            found.append(Entry(info, body))
    return found


def find_in_layers(engine: Docker, image: str, needles: Sequence[bytes]) -> list[str]:
    """Every layer entry whose name or content holds a needle."""
    return list(scan(engine, image, needles).hits)


def top_layer(engine: Docker, image: str) -> list[Entry]:
    """The entries (with contents) of the image's newest layer."""
    return list(scan(engine, image).top)
