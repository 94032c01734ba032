"""The `nbs2i` command: parse arguments, call the library, print results.

No logic lives here. Errors from the library arrive as `Nbs2iError`s and are
printed as one line; anything else is an nbs2i bug and is reported as such,
without a traceback unless NBS2I_DEBUG is set.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from nbs2i import __version__
from nbs2i.engine import Engine
from nbs2i.errors import Nbs2iError
from nbs2i.progress import Event, Reporter


def human_reporter(quiet: bool = False) -> Reporter:
    """Readable progress on stderr; `output` lines (build logs) hidden when quiet."""

    def report(event: Event) -> None:
        if event.kind == "output":
            if not quiet:
                click.echo(event.message, err=True)
        elif event.kind == "warning":
            click.echo(f"warning: {event.message}", err=True)
        elif not quiet or event.kind == "done":
            click.echo(f"==> {event.message}", err=True)

    return report


def json_reporter(event: Event) -> None:
    """One JSON object a line on stdout, for CI logs."""
    click.echo(json.dumps({"event": event.kind, "message": event.message, **event.data}))


def connect() -> Engine:
    return Engine.connect()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbs2i")
def cli() -> None:
    """Build Git repositories of Jupyter notebooks into hardened images
    that run under any UID with GID 0, read-only, with tini as PID 1."""


@cli.command("engine")
def engine_cmd() -> None:
    """Show which Docker engine nbs2i talks to and the API version it chose."""
    with connect() as engine:
        server = engine.server_version()
        click.echo(f"engine:  {engine.where}")
        click.echo(f"server:  Docker {server.get('Version')} (API {server.get('ApiVersion')})")
        click.echo(f"client:  API {engine.api_version} (negotiated)")


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run the CLI; map every failure to one line and an exit code."""
    try:
        fn()
    except Nbs2iError as exc:
        if exc.details:
            click.echo(exc.details.rstrip("\n"), err=True)
        click.echo(f"nbs2i: error: {exc}", err=True)
        return exc.exit_code
    except click.ClickException as exc:  # bad arguments: click's own one-liner
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("nbs2i: interrupted; everything this run started was removed", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # an nbs2i bug: say so without a traceback
        if os.environ.get("NBS2I_DEBUG"):
            raise
        click.echo(
            f"nbs2i: internal error: {type(exc).__name__}: {exc} "
            "(please report it; rerun with NBS2I_DEBUG=1 for the traceback)",
            err=True,
        )
        return 70
    return 0


def main() -> None:
    sys.exit(run_guarded(lambda: cli.main(standalone_mode=False)))
