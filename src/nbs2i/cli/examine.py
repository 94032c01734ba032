"""Commands that look at an image: `nbs2i verify` (is it ready for a restricted
platform?), `nbs2i test` (do its lectures run?) and `nbs2i usage`.

Both reports end the same way: exit 0 when nothing failed, 1 when something
did (raised as SystemExit, not click's Exit: with standalone_mode=False click
returns Exit's code from main() and `run_guarded` would drop it), 2 when the
image could not be examined."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from nbs2i import defaults, interrupts, restricted
from nbs2i.cli import output, values
from nbs2i.cli.group import cli

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _uid_option(help: str) -> Callable[[_Command], _Command]:
    return click.option(
        "--uid",
        default=restricted.RANDOM_UID,
        show_default=True,
        metavar=f"{restricted.RANDOM_UID}|N",
        help=help,
    )


def _report_options(label_help: str) -> Callable[[_Command], _Command]:
    """The options every report takes: its format, labels, quiet."""

    def add(command: _Command) -> _Command:
        command = click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")(
            command
        )
        command = click.option("--label", multiple=True, metavar="K=V", help=label_help)(command)
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(defaults.REPORT_FORMATS),
            default=defaults.REPORT_FORMAT,
            show_default=True,
            help="Output on stdout.",
        )(command)

    return add


@dataclass(frozen=True)
class VerifyArgs:
    """The options of `nbs2i verify`, as click parses them."""

    uid: str
    no_runtime: bool
    port: int | None
    timeout: float
    fmt: str
    label: tuple[str, ...]
    quiet: bool


@cli.command("verify")
@click.argument("image")
@_uid_option("UID for the runtime checks (GID is always 0).")
@click.option("--no-runtime", is_flag=True, help="Static checks only: never start the image.")
@click.option(
    "--port",
    type=int,
    default=None,
    help=f"Container port it serves on (default: {restricted.SERVER_PORT} when it exposes "
    "that or nothing, else its lowest exposed port).",
)
@click.option(
    "--timeout",
    type=float,
    default=defaults.VERIFY_TIMEOUT,
    show_default=True,
    help="Seconds it gets to answer, in each runtime setup.",
)
@_report_options("Label what verify starts; repeatable.")
def verify_cmd(image: str, **given: Any) -> None:
    """Check that IMAGE is ready for a restricted platform: exit 0 when no
    check fails, 1 when one does, 2 when IMAGE cannot be examined."""
    from nbs2i import verify
    from nbs2i.verify.report import render

    args = VerifyArgs(**given)
    options = verify.VerifyOptions(
        uid=values.uid(args.uid),
        runtime=not args.no_runtime,
        port=args.port,
        start_timeout=args.timeout,
        labels=dict(values.pairs(args.label, "--label")),
    )
    verify.check_options(options)  # bad input fails before the engine is asked
    with interrupts.interrupting(), output.connect() as engine:
        found = verify.verify(engine, image, options, output.human_reporter(quiet=args.quiet))
    click.echo(render(found, args.fmt))
    if not found.ok:
        raise SystemExit(1)


@dataclass(frozen=True)
class TestArgs:
    """The options of `nbs2i test`, as click parses them."""

    include: tuple[str, ...]
    skip: tuple[str, ...]
    timeout: float
    total_timeout: float
    uid: str
    fmt: str
    label: tuple[str, ...]
    quiet: bool


@cli.command("test")
@click.argument("image")
@click.argument("patterns", nargs=-1, metavar="[NOTEBOOK|FOLDER|GLOB]...")
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Run only notebooks matching GLOB (as the positional ones); repeatable.",
)
@click.option(
    "--skip",
    multiple=True,
    metavar="GLOB",
    help="Leave out a notebook or folder matching GLOB; repeatable.",
)
@click.option(
    "--timeout",
    type=float,
    default=defaults.TEST_TIMEOUT,
    show_default=True,
    help="Seconds each notebook may run; then its kernel is killed.",
)
@click.option(
    "--total-timeout",
    type=float,
    default=defaults.TEST_TOTAL_TIMEOUT,
    show_default=True,
    help="Seconds the whole run may take.",
)
@_uid_option("UID to run as (GID is always 0).")
@_report_options("Label what it starts; repeatable.")
def nbtest_cmd(image: str, patterns: tuple[str, ...], **given: Any) -> None:
    """Run the course's notebooks in IMAGE as a student's server would: exit 0
    when all pass, 1 when one fails, times out or cannot start, 2 when IMAGE
    cannot be examined. Notebooks, folders and globs (positional, --include,
    --skip) are relative to the notebook directory; default: every notebook."""
    from nbs2i import nbtest
    from nbs2i.nbtest.report import render

    args = TestArgs(**given)
    options = nbtest.check_options(  # bad input fails before the engine is asked
        nbtest.NotebookTestOptions(
            include=patterns + args.include,
            skip=args.skip,
            timeout=args.timeout,
            total_timeout=args.total_timeout,
            uid=values.uid(args.uid),
            labels=dict(values.pairs(args.label, "--label")),
        )
    )
    with interrupts.interrupting(), output.connect() as engine:
        found = nbtest.run_notebooks(engine, image, options, output.human_reporter(args.quiet))
    click.echo(render(found, args.fmt))
    if not found.ok:
        raise SystemExit(1)


@cli.command("usage")
@click.argument("image", required=False)
@click.option(
    "--container-label", multiple=True, metavar="K=V", help="Label on the usage container."
)
def usage_cmd(image: str | None, container_label: tuple[str, ...]) -> None:
    """Print the usage script's output of IMAGE (default: the builder)."""
    from nbs2i import building as build

    labels = dict(values.pairs(container_label, "--container-label"))
    with interrupts.interrupting(), output.connect() as engine:
        click.echo(output.printable(build.usage(engine, image or build.default_builder(), labels)))
