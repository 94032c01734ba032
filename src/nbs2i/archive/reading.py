"""The other way: an engine's tar stream read as a file, as it arrives."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from nbs2i.archive.writer import CHUNK


def readable(chunks: Iterable[bytes], buffer: int = CHUNK) -> io.BufferedReader:
    """A read-once file over a stream of byte chunks (an engine's tar stream), for
    tarfile's stream mode: read as it arrives, never held whole."""
    return io.BufferedReader(_ChunkReader(chunks), buffer_size=buffer)


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

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
        self._buffer = self._buffer[size:]
        return size
