"""Progress events: how long-running steps tell the CLI what is happening.

Library code never prints. It calls a `Reporter` with `Event`s; the CLI turns
them into readable lines, or into one JSON object a line for CI logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


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


def _decoded(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r")
