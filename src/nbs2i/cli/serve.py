"""`nbs2i run` and `nbs2i stop`: a server started as a restricted platform
would start it, and stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from nbs2i import defaults, interrupts, restricted
from nbs2i.cli import output, values
from nbs2i.cli.group import cli

if TYPE_CHECKING:
    from nbs2i.run import Server


@cli.command("run")
@click.argument("image")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=defaults.RUN_PORT,
    show_default=True,
    help=f"Host port, published on {restricted.LOOPBACK} only (0: any free port).",
)
@click.option(
    "--uid",
    "uid_text",
    default=restricted.RANDOM_UID,
    show_default=True,
    metavar=f"{restricted.RANDOM_UID}|N",
    help=f"UID to run as (GID is always {restricted.GID}); {restricted.RANDOM_UID} picks one "
    f"in {restricted.UID_MIN}-{restricted.UID_MAX} as OpenShift does.",
)
@click.option(
    "--password",
    "ask_password",
    is_flag=True,
    help="Log in with a password (asked twice, or $NBS2I_PASSWORD) instead of a token.",
)
@click.option("--token", default=None, help="Use this token instead of a generated one.")
@click.option(
    "--volume",
    default=None,
    metavar="NAME|DIR",
    help=f"Workspace mounted on {restricted.HOME}: a named volume (created if absent) or a "
    "directory of yours (writable by GID 0). Edits survive restarts and newer images.",
)
@click.option(
    "--read-only/--no-read-only",
    default=True,
    show_default=True,
    help=f"Read-only root filesystem with a tmpfs on {restricted.TMP}.",
)
@click.option("--detach", "-d", is_flag=True, help="Return once the server answers.")
@click.option("--name", default=None, help="Container name (default: nbs2i-run-XXXXXXXX).")
@click.option("--env", "-e", multiple=True, metavar="K=V", help="Set a variable; repeatable.")
@click.option(
    "--label",
    "label",
    multiple=True,
    metavar="K=V",
    help="Extra label on the container and on a volume it creates; repeatable.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=defaults.RUN_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the server to answer.",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not stream the server log.")
def run_cmd(
    image: str,
    port: int,
    uid_text: str,
    ask_password: bool,
    token: str | None,
    volume: str | None,
    read_only: bool,
    detach: bool,
    name: str | None,
    env: tuple[str, ...],
    label: tuple[str, ...],
    timeout: float,
    quiet: bool,
) -> None:
    """Start IMAGE as a restricted cluster would and print its URL.

    Random UID with GID 0, read-only root, no capabilities, no-new-privileges,
    the port on 127.0.0.1 only. Ctrl-C (or SIGTERM, SIGHUP) stops and removes
    the server.
    """
    from nbs2i import run

    request = run.RunRequest(
        image=image,
        port=port,
        uid=values.uid(uid_text),
        token=token,
        password=values.password() if ask_password else None,
        volume=volume,
        read_only=read_only,
        name=name,
        env=values.pairs(env, "--env"),
        labels=values.pairs(label, "--label"),
        timeout=timeout,
    )
    run.check_request(request)  # bad input fails before the engine is asked
    report = output.human_reporter(quiet)
    with interrupts.interrupting(), output.connect() as engine:
        server = run.start(engine, request, report)
        _show_server(server)
        if detach:
            click.echo(f"stop it with: nbs2i stop {server.name}")
            return
        click.echo("==> streaming the server log; Ctrl-C stops and removes it", err=True)
        try:
            code = run.follow(engine, server, report)
        except KeyboardInterrupt:
            click.echo(f"==> stopped and removed {server.name}", err=True)
            return
        if code != 0:
            click.echo(f"nbs2i: the server stopped with exit code {code}", err=True)
            raise SystemExit(code)  # not click's Exit: see nbs2i.cli.examine


def _show_server(server: Server) -> None:
    """Where the server is, as whom, and where its work is kept."""
    where = "no volume: edits are lost when it stops (keep them with --volume NAME)"
    if server.workspace is not None:
        where = f"{server.workspace.kind} {server.workspace.source} on {restricted.HOME}"
    click.echo(
        f"==> ready in {server.ready_seconds:.1f} s as UID {server.uid}, "
        f"GID {restricted.GID}; workspace: {where}",
        err=True,
    )
    if server.token is None:
        click.echo("==> a password is set: log in with it", err=True)
    click.echo(server.url)


@cli.command("stop")
@click.argument("names", nargs=-1, required=True)
def stop_cmd(names: tuple[str, ...]) -> None:
    """Stop and remove servers that `nbs2i run` started (named volumes are kept).

    Each NAME is handled; the exit code is non-zero when any of them failed."""
    from nbs2i import run

    run.check_names(names)  # a typo stops nothing, and fails before the engine is asked
    with output.connect() as engine:
        outcomes = run.stop_all(engine, names)
    codes = []
    for outcome in outcomes:
        if outcome.stopped is not None:
            kept = outcome.stopped.workspace
            more = f"; workspace volume {kept} kept" if kept else ""
            click.echo(f"stopped and removed {outcome.stopped.name}{more}")
        elif outcome.error is not None:
            click.echo(f"nbs2i: error: {outcome.error}", err=True)
            codes.append(outcome.error.exit_code)
    if codes:
        raise SystemExit(max(codes))
