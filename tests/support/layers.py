"""The newest layer of an image, read from `docker save`: what a build added."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nbs2i.engine import Docker


class _Chunks(io.RawIOBase):
    """A read-once file over an iterator of byte chunks, hashing what passes."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self.digest.update(self._buffer[:size])
        self._buffer = self._buffer[size:]
        return size


@dataclass(frozen=True)
class Entry:
    info: tarfile.TarInfo
    data: bytes | None  # a regular file's content

    @property
    def name(self) -> str:
        return self.info.name


def _read_layer(data: io.BufferedIOBase) -> tuple[list[Entry], str]:
    hashing = _Chunks(iter(lambda: data.read(1 << 16), b""))
    entries = []
    with tarfile.open(fileobj=io.BufferedReader(hashing), mode="r|") as layer:
        for info in layer:
            body = None
            if info.isfile():
                handle = layer.extractfile(info)
                body = handle.read() if handle else b""
            entries.append(Entry(info, body))
    while hashing.read(1 << 16):  # the end blocks count for the diff id too
        pass
    return entries, f"sha256:{hashing.digest.hexdigest()}"


def top_layer(engine: Docker, image: str) -> list[Entry]:
    """The entries (with contents) of the image's newest layer, found by its diff id."""
    wanted = engine.inspect_image(image).layers[-1]
    stream = io.BufferedReader(_Chunks(engine.export_image(image)), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.name.endswith("layer.tar"):
                continue
            data = outer.extractfile(member)
            if data is None:
                continue
            entries, diff_id = _read_layer(data)  # type: ignore[arg-type]
            if diff_id == wanted:
                return entries
    raise AssertionError(f"no layer of {image} has the diff id {wanted}")
