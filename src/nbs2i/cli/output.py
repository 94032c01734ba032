"""What the command line prints: progress (readable, or one JSON event a line),
untrusted text made safe for a terminal, and failures as one line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from nbs2i import interrupts
from nbs2i.errors import Nbs2iError
from nbs2i.progress import Event, Reporter

if TYPE_CHECKING:
    from nbs2i.engine import Engine


# Control characters a repository or an image could use to rewrite the
# terminal (escape sequences, carriage returns, bells) are shown as "?".
_UNPRINTABLE = dict.fromkeys([*range(0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)], "?")


def printable(text: str) -> str:
    """Text for the terminal: lines and tabs kept, other control characters "?"."""
    return text.translate(_UNPRINTABLE)


# Details for CI logs (--json); a person reads one line per layer instead.
_JSON_ONLY = ("cache", "blob")


def human_reporter(quiet: bool = False) -> Reporter:
    """Readable progress on stderr; `output` lines (build logs) hidden when quiet."""

    def report(event: Event) -> None:
        message = printable(event.message)
        if event.kind in _JSON_ONLY:
            return
        if event.kind == "output":
            if not quiet:
                click.echo(message, err=True)
        elif event.kind == "warning":
            click.echo(f"warning: {message}", err=True)
        elif not quiet or event.kind == "done":
            click.echo(f"==> {message}", err=True)

    return report


def json_reporter(event: Event) -> None:
    """One JSON object a line on stdout, for CI logs."""
    click.echo(json.dumps({"event": event.kind, "message": event.message, **event.data}))


_INTERRUPTED = "interrupted; everything this run started was removed"


def interrupted(exc: BaseException) -> str:
    """The last line after a stop signal: what the clean-up did, when it said
    (click turns a KeyboardInterrupt into Abort, from it)."""
    cause = exc.__cause__ if isinstance(exc, click.Abort) else exc
    return cause.message if isinstance(cause, interrupts.Interrupted) else _INTERRUPTED


@contextlib.contextmanager
def json_errors(enabled: bool) -> Iterator[None]:
    """With --json, a failure is an event on stdout too (stderr keeps its line)."""
    try:
        yield
    except Nbs2iError as exc:
        if enabled:
            json_reporter(Event("error", str(exc), {"problem": exc.problem, "fix": exc.fix}))
        raise
    except KeyboardInterrupt as exc:
        if enabled:
            data = {"problem": "interrupted", "fix": "run it again"}
            json_reporter(Event("error", interrupted(exc), data))
        raise


def connect() -> Engine:
    from nbs2i.engine import Engine

    return Engine.connect()
