"""Progress events: how long-running steps tell the CLI what is happening.

Library code never prints. It calls a `Reporter` with `Event`s; the CLI turns
them into readable lines, or into one JSON object a line for CI logs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# How many chunks of a stream may wait between its reader and `bounded`.
_PENDING_CHUNKS = 16
# What of a container's output reaches the user (`shown_lines`): each line cut
# at LINE_BYTES, at most SHOWN_LINES lines and SHOWN_BYTES bytes; what comes
# after is read and dropped, but for its last TAIL_BYTES.
LINE_BYTES = 4096
SHOWN_LINES = 20_000
SHOWN_BYTES = 4 << 20
TAIL_BYTES = 64 << 10


@dataclass(frozen=True)
class Event:
    """One thing that happened. `kind` is a stable, machine-readable name."""

    kind: str  # e.g. "step", "output", "warning", "done"
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Reporter = Callable[[Event], None]


def silent(_event: Event) -> None:
    """A reporter that drops everything (library default)."""


def lines(chunks: Iterable[bytes], limit: int | None = None) -> Iterator[str]:
    """Decoded lines of a byte stream (a container's output), as they complete.

    With `limit`, a line longer than that many bytes is yielded cut there and
    the rest of it is dropped, so that output without newlines cannot fill
    memory."""
    pending = b""
    cut = False  # the line being read was already yielded, cut
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            if not cut:
                yield _decoded(line)
            cut = False
        if limit is not None and len(pending) > limit:
            if not cut:
                yield _decoded(pending[:limit])
            cut, pending = True, b""
    if pending and not cut:
        yield _decoded(pending)


def shown_lines(
    chunks: Iterable[bytes],
    show: Callable[[str], None],
    truncated: Callable[[], None],
    *,
    tail: int,
) -> list[str]:
    """Hand each line of a container's output to `show` (cut at LINE_BYTES),
    until SHOWN_LINES lines or SHOWN_BYTES bytes were shown; then call
    `truncated` once and read the rest to its end without showing it, so that
    the container never waits on nbs2i. Memory stays flat whatever the
    output. The last `tail` lines read, for a failure's message."""
    stream = iter(chunks)
    last: deque[str] = deque(maxlen=tail)
    count = size = 0
    for line in lines(stream, LINE_BYTES):
        last.append(line)
        show(line)
        count, size = count + 1, size + len(line) + 1
        if count >= SHOWN_LINES or size >= SHOWN_BYTES:
            break
    else:
        return list(last)
    truncated()
    rest = bytearray()
    for chunk in stream:
        rest += chunk
        if len(rest) > 2 * TAIL_BYTES:
            del rest[:-TAIL_BYTES]
    if not rest:
        return list(last)
    # The first line of what was kept may be a part of one; the last ends it.
    kept = bytes(rest[-TAIL_BYTES:]).split(b"\n")[1:]
    if kept and not kept[-1]:
        kept.pop()
    return [_decoded(line[:LINE_BYTES]) for line in kept[-tail:]]


def _decoded(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r")


@dataclass(frozen=True)
class Bounded:
    """What `bounded` read, and why it stopped: "" (the stream ended), "time"
    or "size"."""

    data: bytes
    stopped: str = ""


def bounded(chunks: Iterable[bytes], *, seconds: float, limit: int) -> Bounded:
    """At most `limit` bytes of a stream, read for at most `seconds`; memory
    stays within the limit whatever the stream holds.

    A daemon thread reads the stream, so that a stream that never yields (a
    container that sleeps) cannot hold the caller past its time, and a signal
    reaches the caller at once. The caller stops what feeds the stream (removes
    the container); the reader then sees its end and exits. An error of the
    stream is raised here."""
    pending: queue.Queue[bytes | BaseException | None] = queue.Queue(_PENDING_CHUNKS)
    stop = threading.Event()
    reader = threading.Thread(target=_pump, args=(chunks, pending, stop), daemon=True)
    reader.start()
    got = bytearray()
    seen = 0
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = pending.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                return Bounded(bytes(got))
            if isinstance(item, BaseException):
                raise item
            seen += len(item)
            got += item[: max(limit - len(got), 0)]
            if seen > limit:
                return Bounded(bytes(got), "size")
        return Bounded(bytes(got), "time")
    finally:
        stop.set()


def _pump(
    chunks: Iterable[bytes],
    pending: queue.Queue[bytes | BaseException | None],
    stop: threading.Event,
) -> None:
    """Move chunks into `pending` until the stream ends or `stop` is set."""
    item: bytes | BaseException | None = None
    try:
        for chunk in chunks:
            if not _offer(pending, chunk, stop):
                return
    except Exception as exc:  # handed to the caller, who raises it
        item = exc
    _offer(pending, item, stop)


def _offer(
    pending: queue.Queue[bytes | BaseException | None],
    item: bytes | BaseException | None,
    stop: threading.Event,
) -> bool:
    """Put one item, waiting while the caller still reads; False once it stopped."""
    while not stop.is_set():
        try:
            pending.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False
