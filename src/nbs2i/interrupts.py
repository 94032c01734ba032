"""The signals that end a command early, and clean-up that they cannot cut short.

Ctrl-C (SIGINT), a process manager or `kill` (SIGTERM) and a closed terminal
or dropped SSH session (SIGHUP) all mean "stop now". The CLI turns each into
KeyboardInterrupt with `interrupting()`, so every library function unwinds
through the same `except BaseException` / `finally` clean-up. That clean-up
runs inside `deferred()`: a second signal (an impatient second Ctrl-C) waits
until it is done instead of leaving containers and volumes behind.

Signal handlers belong to the main thread; elsewhere both helpers do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

Handler = Callable[[int, FrameType | None], Any] | int | None


class Interrupted(KeyboardInterrupt):
    """A stop signal, once the clean-up it caused is done: `message` says what
    that clean-up did (what was removed, what could not be)."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(signal_name)
        self.message = message


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler: Handler) -> dict[signal.Signals, Handler]:
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, handler)
    return previous


def _restore(previous: dict[signal.Signals, Handler]) -> None:
    for sig, handler in previous.items():
        # None: a handler not installed from Python; the default is the closest.
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def interrupting() -> Iterator[None]:
    """Every signal in SIGNALS raises KeyboardInterrupt while the block runs,
    also when a shell started this process with SIGINT ignored."""
    if not _main_thread():
        yield
        return
    previous = _install(_raise_interrupt)
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run a clean-up to its end: a signal that arrives meanwhile is held back
    and raised as KeyboardInterrupt afterwards (unless the block is already
    unwinding from an exception, which then goes on)."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous = _install(lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        _restore(previous)
    if caught:
        raise KeyboardInterrupt(signal.Signals(caught[0]).name)
