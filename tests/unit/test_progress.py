"""Reading a stream that someone else controls: `bounded` stops it in time and
in size whatever it does, and hands its errors on."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from nbs2i.progress import LINE_BYTES, SHOWN_BYTES, SHOWN_LINES, bounded, shown_lines


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


# -- a container's output for the user: shown_lines ------------------------------------


def show_all(chunks: Iterator[bytes], tail: int = 3) -> tuple[list[str], int, list[str]]:
    shown: list[str] = []
    truncated: list[bool] = []
    last = shown_lines(chunks, shown.append, lambda: truncated.append(True), tail=tail)
    return shown, len(truncated), last


def test_short_output_is_shown_whole_and_its_tail_kept() -> None:
    shown, truncated, last = show_all(iter([b"one\ntw", b"o\nthree\nfour"]))
    assert shown == ["one", "two", "three", "four"]
    assert truncated == 0
    assert last == ["two", "three", "four"]


def test_a_flood_is_cut_at_the_budget_read_to_its_end_in_flat_memory() -> None:
    import tracemalloc

    read = []

    def flood() -> Iterator[bytes]:
        for number in range(1_000):  # 64 MiB
            read.append(number)
            yield f"line {number}\n".encode() + b"y\n" * (32 << 10)
        yield b"the end\n"

    tracemalloc.start()
    try:
        shown, truncated, last = show_all(flood())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(shown) == SHOWN_LINES
    assert truncated == 1
    assert len(read) == 1_000, "the rest was not read"
    assert last == ["y", "y", "the end"]
    assert peak < 4 << 20, f"peak {peak >> 20} MiB"


def test_a_budget_in_bytes_too() -> None:
    line = b"x" * (LINE_BYTES - 1) + b"\n"
    shown, truncated, _ = show_all(itertools.repeat(line, 4 * SHOWN_BYTES // len(line)))
    assert truncated == 1
    assert len(shown) == SHOWN_BYTES // len(line)
