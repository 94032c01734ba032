"""How nbs2i treats the signals that end a command.

Ctrl-C (SIGINT), SIGTERM (a process manager, `kill`) and SIGHUP (a closed
terminal, a dropped SSH session) all mean "stop": each raises
KeyboardInterrupt in the main thread, so the same `finally` blocks remove
what the command created, whichever signal it was. `held()` keeps them back
while a step must finish as a whole (moving a tag to a new image), so that
what nbs2i says afterwards is true.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Every stop signal raises KeyboardInterrupt (a shell may have started us
    with SIGINT ignored: Ctrl-C must still clean up)."""
    if not _main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.default_int_handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@dataclass
class Held:
    received: list[int] = field(default_factory=list)

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)


@contextlib.contextmanager
def held() -> Iterator[Held]:
    """Stop signals are recorded, not acted on, until the block ends; the caller
    looks at `.received` and acts."""
    record = Held()
    if not _main_thread():
        yield record
        return
    old = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield record
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
