"""Wait for a condition, bounded in time and in count: never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """The first truthy value of condition(), polled every `interval` seconds;
    AssertionError naming `what` when `timeout` seconds pass without one."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g} s")
