"""The `nbs2i` command: parse arguments, call the library, print results.

No logic lives here, and no default: every default comes from the module that
owns it, and each command's options arrive as one typed value. Errors from the
library arrive as `Nbs2iError`s and are printed as one line (and, with --json,
as an "error" event); anything else is an nbs2i bug and is reported as such,
without a traceback unless NBS2I_DEBUG is set. Library modules are imported
by the commands that need them, so `--help` and `--version` start fast.

    group.py     the `nbs2i` group (and `nbs2i builder`)
    output.py    progress, terminal-safe text, failures as one line
    values.py    K=V pairs, a UID, a password
    build.py     build
    serve.py     run, stop
    examine.py   verify, test, usage
    admin.py     engine, builder build, prune, deploy
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from nbs2i.cli import admin, build, examine, output, serve
from nbs2i.cli.group import cli
from nbs2i.cli.output import human_reporter, json_reporter, printable
from nbs2i.errors import Nbs2iError

__all__ = ["cli", "human_reporter", "json_reporter", "main", "printable", "run_guarded"]
# The command modules register themselves with the group when imported.
_COMMANDS = (admin, build, examine, serve)


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run the CLI; map every failure to one line and an exit code."""
    try:
        # Without standalone mode click returns the code a command exits with.
        return _exit_code(fn())
    except Nbs2iError as exc:
        if exc.details:
            click.echo(output.printable(exc.details.rstrip("\n")), err=True)
        click.echo(output.printable(" ".join(f"nbs2i: error: {exc}".splitlines())), err=True)
        return exc.exit_code
    except click.ClickException as exc:  # bad arguments: click's own one-liner
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort) as exc:
        click.echo(f"nbs2i: {output.printable(output.interrupted(exc))}", err=True)
        return 130
    except SystemExit as exc:
        return _exit_code(exc.code, failure=1)
    except Exception as exc:  # an nbs2i bug: say so without a traceback
        if os.environ.get("NBS2I_DEBUG"):
            raise
        click.echo(
            f"nbs2i: internal error: {type(exc).__name__}: {exc} "
            "(please report it; rerun with NBS2I_DEBUG=1 for the traceback)",
            err=True,
        )
        return 70


def _exit_code(code: object, failure: int = 0) -> int:
    """A command's result or SystemExit code as an exit code: an int as it is,
    None as success, anything else as `failure`."""
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return 0 if code is None else failure


def main() -> None:
    sys.exit(run_guarded(lambda: cli.main(standalone_mode=False)))
