"""One pass over an image's layers: what holds a needle, and what the newest
layer holds. `docker save` of a builder-sized image takes seconds, so a
test that needs both asks once."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from nbs2i.engine import Docker
from tests.support.inside import ChunkReader


@dataclass(frozen=True)
class LayerScan:
    hits: tuple[str, ...]  # "<layer>:<entry>" whose name or content holds a needle
    top: tuple[tarfile.TarInfo, ...]  # the entries of the newest layer
    layers: int


class _Hashing(io.RawIOBase):
    """Reads through to `inner`, hashing what passes (to find a layer by its diff id)."""

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


def scan(engine: Docker, image: str, needles: Sequence[bytes]) -> LayerScan:
    top_id = engine.inspect_image(image).layers[-1]
    hits: list[str] = []
    top: list[tarfile.TarInfo] = []
    count = 0
    stream = io.BufferedReader(ChunkReader(engine.export_image(image)), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            data = outer.extractfile(member)
            if data is None or not member.name.endswith("layer.tar"):
                continue
            count += 1
            hashing = _Hashing(data)  # type: ignore[arg-type]
            entries = []
            with tarfile.open(fileobj=io.BufferedReader(hashing), mode="r|") as layer:
                for entry in layer:
                    entries.append(entry)
                    body = b""
                    if entry.isfile():
                        handle = layer.extractfile(entry)
                        body = handle.read() if handle else b""
                    name = entry.name.encode()
                    if any(n in name or n in body for n in needles):
                        hits.append(f"{member.name}:{entry.name}")
            hashing.read()  # the end blocks count towards the diff id too
            if f"sha256:{hashing.digest.hexdigest()}" == top_id:
                top = entries
    assert count > 0, f"docker save {image} held no layer"
    assert top, f"no layer of {image} has the diff id {top_id}"
    return LayerScan(tuple(hits), tuple(top), count)
