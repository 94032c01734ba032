"""Reading a stream that someone else controls: `bounded` stops it in time and
in size whatever it does, and hands its errors on."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from nbs2i.progress import bounded


def endless(chunk: bytes) -> Iterator[bytes]:
    return itertools.repeat(chunk)


def silent_until(released: threading.Event) -> Iterator[bytes]:
    yield b"help text\n"
    released.wait(30)  # a container that sleeps: nothing comes, nothing ends


def test_a_stream_that_ends_is_read_whole() -> None:
    read = bounded(iter([b"a", b"b" * 10, b"c"]), seconds=5, limit=100)
    assert (read.data, read.stopped) == (b"a" + b"b" * 10 + b"c", "")


def test_exactly_the_limit_is_not_too_much() -> None:
    assert bounded(iter([b"x" * 60, b"y" * 40]), seconds=5, limit=100).stopped == ""


def test_an_endless_stream_stops_at_the_limit() -> None:
    read = bounded(endless(b"y\n" * 4096), seconds=30, limit=1 << 20)
    assert read.stopped == "size" and len(read.data) == 1 << 20


def test_a_silent_stream_stops_in_time() -> None:
    released = threading.Event()
    started = time.monotonic()
    try:
        read = bounded(silent_until(released), seconds=0.5, limit=100)
    finally:
        released.set()
    assert (read.data, read.stopped) == (b"help text\n", "time")
    assert time.monotonic() - started < 5


def test_an_error_of_the_stream_reaches_the_caller() -> None:
    def broken() -> Iterator[bytes]:
        yield b"x"
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        bounded(broken(), seconds=5, limit=100)
