"""The `nbs2i` command: parse arguments, call the library, print results.

No logic lives here, and no default: every default comes from the module that
owns it. Errors from the library arrive as `Nbs2iError`s and are printed as one
line (and, with --json, as an "error" event); anything else is an nbs2i bug and
is reported as such, without a traceback unless NBS2I_DEBUG is set. Modules are
imported by the commands that need them, so `--help` and `--version` start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbs2i import __version__, defaults, interrupts, restricted
from nbs2i.errors import Nbs2iError
from nbs2i.progress import Event, Reporter

if TYPE_CHECKING:
    from nbs2i.engine import Engine
    from nbs2i.nbtest import NotebookTestOptions
    from nbs2i.run import Server


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


def _interrupted(exc: BaseException) -> str:
    """The last line after a stop signal: what the clean-up did, when it said
    (click turns a KeyboardInterrupt into Abort, from it)."""
    cause = exc.__cause__ if isinstance(exc, click.Abort) else exc
    return cause.message if isinstance(cause, interrupts.Interrupted) else _INTERRUPTED


@contextlib.contextmanager
def _json_errors(enabled: bool) -> Iterator[None]:
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
            json_reporter(Event("error", _interrupted(exc), data))
        raise


def connect() -> Engine:
    from nbs2i.engine import Engine

    return Engine.connect()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbs2i")
def cli() -> None:
    """Build Git repositories of Jupyter notebooks into hardened images
    that run under any UID with GID 0, read-only, with tini as PID 1."""


@cli.command("engine")
def engine_cmd() -> None:
    """Show which engine nbs2i talks to, what kind it is, and the API version it chose."""
    with connect() as engine:
        info = engine.describe()
        click.echo(f"engine:  {engine.where}")
        click.echo(f"server:  {info.kind.capitalize()} {info.version} (API {info.api_version})")
        click.echo(f"client:  API {engine.api_version} (negotiated)")
        click.echo(f"kind:    {info.kind}")
        click.echo(f"store:   {info.image_store} (image store)")
        click.echo(f"os/arch: {info.os}/{info.arch}")


def _pairs(values: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    """K=V options as pairs; a value without '=' is a usage error."""
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not K=V", param_hint=option)
        pairs.append((key, val))
    return tuple(pairs)


def _uid(value: str) -> int | None:
    try:
        return restricted.parse_uid(value)
    except Nbs2iError as exc:
        raise click.BadParameter(exc.problem, param_hint="--uid") from None


def _password() -> str:
    from_env = os.environ.get("NBS2I_PASSWORD")
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise click.UsageError("--password asks on a terminal; without one, set NBS2I_PASSWORD")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


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
        uid=_uid(uid_text),
        token=token,
        password=_password() if ask_password else None,
        volume=volume,
        read_only=read_only,
        name=name,
        env=_pairs(env, "--env"),
        labels=_pairs(label, "--label"),
        timeout=timeout,
    )
    run.check_request(request)  # bad input fails before the engine is asked
    report = human_reporter(quiet)
    with interrupts.interrupting(), connect() as engine:
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
            raise SystemExit(code)  # not click's Exit: see verify_cmd


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
    with connect() as engine:
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


@cli.command("build")
@click.argument("source")
@click.argument("tag")
@click.option("--builder", default="", help="Builder image (default: nbs2i/builder:<version>).")
@click.option("--ref", default="", help="Branch, tag or commit of a Git SOURCE.")
@click.option("--context-dir", default="", help="Subdirectory of the repository to build.")
@click.option(
    "--exclude",
    multiple=True,
    metavar="REGEX",
    help="Leave out paths matching REGEX (default: .git); repeatable.",
)
@click.option("--scripts-url", default="", help="image:///dir or file:///dir with S2I scripts.")
@click.option("--env", "-e", multiple=True, metavar="K=V", help="Build and image variable.")
@click.option(
    "--environment-file",
    "-E",
    "env_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="KEY=VALUE file, read after .s2i/environment; repeatable.",
)
@click.option(
    "--inject",
    multiple=True,
    metavar="SRC:DEST",
    help="File or dir present in directory DEST during assemble only; in no layer.",
)
@click.option(
    "--ca-bundle",
    default=None,
    type=click.Path(dir_okay=False),
    help="CA bundle for pip during assemble only (default: $PIP_CERT, "
    "$REQUESTS_CA_BUNDLE, $SSL_CERT_FILE).",
)
@click.option("--assemble-user", default="", help="Numeric user that runs assemble.")
@click.option(
    "--allowed-uids", default=defaults.ALLOWED_UIDS, show_default=True, help="Allowed UID range."
)
@click.option(
    "--pull-policy",
    type=click.Choice(defaults.PULL_POLICIES),
    default=defaults.PULL_POLICY,
    show_default=True,
    help="When to pull the builder; the default builder is built locally when absent "
    "(never: fail instead).",
)
@click.option("--network", default="", help="Network of the build containers.")
@click.option("--label", multiple=True, metavar="K=V", help="Image label; repeatable.")
@click.option(
    "--container-label",
    multiple=True,
    metavar="K=V",
    help="Label on every container and volume the build creates, for CI clean-up "
    "(the images inherit it).",
)
@click.option("--incremental", is_flag=True, help="Reuse artifacts of the previous TAG.")
@click.option(
    "--dependency-layer/--no-dependency-layer",
    default=True,
    show_default=True,
    help="Install the dependency files in a cached layer of their own.",
)
@click.option(
    "--always-assemble",
    is_flag=True,
    help="Run assemble even when it would only move the files into place "
    "(by default nbs2i then writes the notebook layer itself).",
)
@click.option(
    "--test",
    "test_notebooks",
    is_flag=True,
    help="Run the notebooks in the new image (nbs2i test) before --push and --run; "
    "one that does not pass fails the build.",
)
@click.option(
    "--push",
    is_flag=True,
    help="Push TAG to its registry after the build; with no engine, write a notebook-only "
    "change straight into the registry.",
)
@click.option(
    "--also-tag",
    multiple=True,
    metavar="TAG",
    help="With --push: push the same image under this tag of TAG's repository too "
    "(a moving tag such as latest); repeatable.",
)
@click.option(
    "--cache-from",
    multiple=True,
    metavar="REPO",
    help="Registry repository to take dependency layers from before making them; repeatable.",
)
@click.option(
    "--cache-to",
    default="",
    metavar="REPO",
    help="Registry repository to push dependency layers to.",
)
@click.option(
    "--insecure-registry",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Allow plain HTTP to this registry when it does not speak TLS (loopback always may).",
)
@click.option(
    "--registry-ca",
    default=None,
    type=click.Path(dir_okay=False),
    help="CA bundle for registries' TLS (default: /etc/docker/certs.d/HOST/ca.crt, else the "
    "system's).",
)
@click.option("--as-dockerfile", default=None, metavar="DIR", help="Write a Dockerfile instead.")
@click.option("--run", "run_after", is_flag=True, help="Start the image as `nbs2i run` would.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="With --run: host port on 127.0.0.1 (0: any free port).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event a line on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Hide assemble's output.")
@click.pass_context
def build_cmd(ctx: click.Context, source: str, tag: str, **opts: Any) -> None:
    """Build SOURCE (Git URL or directory, as it is on disk) into image TAG."""
    with _json_errors(opts["as_json"]):
        _build(ctx, source, tag, opts)


def _build(ctx: click.Context, source: str, tag: str, opts: dict[str, Any]) -> None:
    from nbs2i import building as build
    from nbs2i.ca import default_ca_bundle
    from nbs2i.registry import Access
    from nbs2i.scripts import parse_env_pairs

    request = build.BuildRequest(
        source=source,
        tag=tag,
        builder=opts["builder"],
        ref=opts["ref"],
        context_dir=opts["context_dir"],
        excludes=tuple(opts["exclude"]) or build.BuildRequest.excludes,
        scripts_url=opts["scripts_url"],
        env=parse_env_pairs(opts["env"], "--env"),
        env_files=tuple(Path(f) for f in opts["env_files"]),
        injections=tuple(build.Injection.parse(i) for i in opts["inject"]),
        ca_bundle=Path(opts["ca_bundle"]) if opts["ca_bundle"] else default_ca_bundle(),
        assemble_user=opts["assemble_user"],
        allowed_uids=opts["allowed_uids"],
        pull_policy=opts["pull_policy"],
        network=opts["network"],
        labels=_pairs(opts["label"], "--label"),
        incremental=opts["incremental"],
        dependency_layer=opts["dependency_layer"],
        always_assemble=opts["always_assemble"],
        push=opts["push"],
        container_labels=_pairs(opts["container_label"], "--container-label"),
        test=_test_options(opts),
        also_tags=tuple(opts["also_tag"]),
        cache_from=tuple(opts["cache_from"]),
        cache_to=opts["cache_to"],
        registry_access=Access(
            insecure=tuple(opts["insecure_registry"]),
            ca_bundle=Path(opts["registry_ca"]) if opts["registry_ca"] else None,
        ),
    )
    report = json_reporter if opts["as_json"] else human_reporter(opts["quiet"])
    if opts["as_dockerfile"]:
        if request.test is not None:
            raise click.UsageError("--test runs an image: it cannot go with --as-dockerfile")
        from nbs2i.building.dockerfile import write

        click.echo(str(write(request, Path(opts["as_dockerfile"]), report)))
        return
    with interrupts.interrupting():
        result = build.build_anywhere(request, report, connect)
    if not opts["as_json"]:
        click.echo(result.pushed or result.tag)
    if opts["run_after"]:
        # The run container carries the --container-label values too.
        extra = {"port": opts["port"]} if opts["port"] is not None else {}
        ctx.invoke(
            run_cmd, image=result.tag, quiet=opts["quiet"], label=opts["container_label"], **extra
        )


def _test_options(opts: dict[str, Any]) -> NotebookTestOptions | None:
    """`build --test`: nbs2i test's defaults, with the build's container labels."""
    if not opts["test_notebooks"]:
        return None
    from nbs2i.nbtest import NotebookTestOptions

    return NotebookTestOptions(labels=dict(_pairs(opts["container_label"], "--container-label")))


@cli.command("verify")
@click.argument("image")
@click.option(
    "--uid",
    default=restricted.RANDOM_UID,
    show_default=True,
    metavar=f"{restricted.RANDOM_UID}|N",
    help="UID for the runtime checks (GID is always 0).",
)
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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(defaults.REPORT_FORMATS),
    default=defaults.REPORT_FORMAT,
    show_default=True,
    help="Output on stdout.",
)
@click.option("--label", multiple=True, metavar="K=V", help="Label what verify starts; repeatable.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def verify_cmd(image: str, **opts: Any) -> None:
    """Check that IMAGE is ready for a restricted platform: exit 0 when no
    check fails, 1 when one does, 2 when IMAGE cannot be examined."""
    from nbs2i import verify
    from nbs2i.verify.report import render

    options = verify.VerifyOptions(
        uid=_uid(opts["uid"]),
        runtime=not opts["no_runtime"],
        port=opts["port"],
        start_timeout=opts["timeout"],
        labels=dict(_pairs(opts["label"], "--label")),
    )
    verify.check_options(options)  # bad input fails before the engine is asked
    with interrupts.interrupting(), connect() as engine:
        found = verify.verify(engine, image, options, human_reporter(quiet=opts["quiet"]))
    click.echo(render(found, opts["fmt"]))
    if not found.ok:
        # SystemExit, not click's Exit: with standalone_mode=False click returns
        # Exit's code from main() and run_guarded would drop it.
        raise SystemExit(1)


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
@click.option(
    "--uid",
    default=restricted.RANDOM_UID,
    show_default=True,
    metavar=f"{restricted.RANDOM_UID}|N",
    help="UID to run as (GID is always 0).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(defaults.REPORT_FORMATS),
    default=defaults.REPORT_FORMAT,
    show_default=True,
    help="Output on stdout.",
)
@click.option("--label", multiple=True, metavar="K=V", help="Label what it starts; repeatable.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def nbtest_cmd(image: str, patterns: tuple[str, ...], **opts: Any) -> None:
    """Run the course's notebooks in IMAGE as a student's server would: exit 0
    when all pass, 1 when one fails, times out or cannot start, 2 when IMAGE
    cannot be examined. Notebooks, folders and globs (positional, --include,
    --skip) are relative to the notebook directory; default: every notebook."""
    from nbs2i import nbtest
    from nbs2i.nbtest.report import render

    options = nbtest.check_options(  # bad input fails before the engine is asked
        nbtest.NotebookTestOptions(
            include=patterns + tuple(opts["include"]),
            skip=tuple(opts["skip"]),
            timeout=opts["timeout"],
            total_timeout=opts["total_timeout"],
            uid=_uid(opts["uid"]),
            labels=dict(_pairs(opts["label"], "--label")),
        )
    )
    with interrupts.interrupting(), connect() as engine:
        found = nbtest.run_notebooks(engine, image, options, human_reporter(opts["quiet"]))
    click.echo(render(found, opts["fmt"]))
    if not found.ok:
        raise SystemExit(1)  # not click's Exit: see verify_cmd


@cli.command("usage")
@click.argument("image", required=False)
@click.option(
    "--container-label", multiple=True, metavar="K=V", help="Label on the usage container."
)
def usage_cmd(image: str | None, container_label: tuple[str, ...]) -> None:
    """Print the usage script's output of IMAGE (default: the builder)."""
    from nbs2i import building as build

    labels = dict(_pairs(container_label, "--container-label"))
    with interrupts.interrupting(), connect() as engine:
        click.echo(printable(build.usage(engine, image or build.default_builder(), labels)))


@cli.command("deploy")
@click.argument("target", type=click.Choice(defaults.DEPLOY_TARGETS))
@click.argument("image", required=False)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for the files (made if missing).",
)
@click.option("--name", default=None, help=f"Name of every object [{defaults.DEPLOY_NAME}].")
@click.option(
    "--digest",
    default=None,
    metavar="sha256:HEX",
    help="Pin IMAGE by this digest (what `nbs2i build --push` printed).",
)
@click.option("--hostname", default=None, help="openshift: the route's host [the router's].")
@click.option(
    "--storage", default=None, help=f"Workspace volume on HOME [{defaults.DEPLOY_STORAGE}]."
)
@click.option(
    "--memory", default=None, help=f"Memory of server and kernels [{defaults.DEPLOY_MEMORY}]."
)
@click.option("--repository-url", default=None, help="openshift: the notebooks' Git repository.")
@click.option("--ref", default=None, help="openshift: branch, tag or commit to build.")
@click.option("--context-dir", default=None, help="openshift: directory of the repository.")
@click.option(
    "--uid", default=None, type=int, help="Run as this UID [the platform's, else the image's]."
)
@click.option("--token", default=None, help="kubernetes: this token instead of a generated one.")
@click.option(
    "--password",
    "ask_password",
    is_flag=True,
    help="Ask for a password (or NBS2I_PASSWORD); only its hash is written.",
)
@click.option("--force", is_flag=True, help="Replace files already in --output.")
def deploy_cmd(
    target: str, image: str | None, output: str, ask_password: bool, force: bool, **given: Any
) -> None:
    """Write what TARGET needs to run IMAGE: openshift (IMAGE: the S2I builder),
    kubernetes or zero-to-jupyterhub (IMAGE: the notebooks' image)."""
    from nbs2i import deploy

    password = _password() if ask_password else None
    options = deploy.options(target, image, password=password, **given)
    result = deploy.write(options, Path(output), force=force)
    for path in result.files:
        click.echo(str(path))
    for line in deploy.next_steps(result):
        click.echo(f"==> {line}", err=True)


@cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def prune_cmd(dry_run: bool) -> None:
    """Remove what nbs2i left behind: containers, volumes and temp directories of
    runs that were killed, dependency layers no image uses, builder build stages,
    images that lost their tag. Workspace volumes are kept."""
    from nbs2i import prune

    with connect() as engine:
        found = prune.find(engine)
        for item in found:
            click.echo(
                f"{'would remove' if dry_run else 'removing'} {item.kind} {item.name}: {item.why}"
            )
        failed = [] if dry_run else prune.remove(engine, found)
    for item, why in failed:
        click.echo(f"nbs2i: could not remove {item.kind} {item.name}: {why}", err=True)
    if not found:
        click.echo("nothing to remove")
    if failed:
        raise SystemExit(1)


@cli.group("builder")
def builder_group() -> None:
    """The hardened S2I builder image."""


@builder_group.command("build")
@click.option(
    "--from",
    "base_image",
    default=defaults.BASE_IMAGE,
    show_default=True,
    help="Base image (Debian bookworm or compatible).",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="NAME:TAG",
    help="Tag(s) to give it (default: nbs2i/builder:<version> and :latest).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CA bundle for pip in the build stage only (default: $PIP_CERT, "
    "$REQUESTS_CA_BUNDLE or $SSL_CERT_FILE).",
)
@click.option(
    "--variant",
    type=click.Choice(defaults.VARIANTS),
    default=defaults.VARIANT,
    show_default=True,
    help="Kernel packages: minimal, scipy (numpy, pandas, matplotlib, scikit-learn, ...), "
    "r (R and the IR kernel), datascience (both).",
)
@click.option(
    "--jupyterhub",
    "jupyterhub_major",
    type=click.Choice(defaults.JUPYTERHUB_MAJORS),
    default=defaults.JUPYTERHUB_MAJOR,
    show_default=True,
    help="Major version of the JupyterHub the images will run under.",
)
@click.option("--pip-index-url", default="", help="Package index for the build stage.")
@click.option("--no-cache", is_flag=True, help="Rebuild every step.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event a line on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Hide the build output.")
def builder_build_cmd(
    base_image: str,
    tags: tuple[str, ...],
    ca_bundle: Path | None,
    variant: str,
    jupyterhub_major: str,
    pip_index_url: str,
    no_cache: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Build the builder image (or a variant of it) from the s2i/ shipped with nbs2i:
    nbs2i/builder[-VARIANT]:<version> and :latest."""
    from nbs2i import builder
    from nbs2i.ca import default_ca_bundle

    with _json_errors(as_json):
        request = builder.BuilderRequest(
            tags=tags or builder.default_tags(variant=variant, jupyterhub_major=jupyterhub_major),
            base_image=base_image,
            ca_bundle=ca_bundle if ca_bundle is not None else default_ca_bundle(),
            pip_index_url=pip_index_url,
            nocache=no_cache,
            variant=variant,
            jupyterhub_major=jupyterhub_major,
        )
        builder.check_request(request)  # bad input fails before the engine is asked
        with interrupts.interrupting(), connect() as engine:
            result = builder.build_builder(
                engine, request, json_reporter if as_json else human_reporter(quiet)
            )
    if not as_json:
        click.echo(result.image_id)


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run the CLI; map every failure to one line and an exit code."""
    try:
        # Without standalone mode click returns the code a command exits with.
        return _exit_code(fn())
    except Nbs2iError as exc:
        if exc.details:
            click.echo(printable(exc.details.rstrip("\n")), err=True)
        click.echo(printable(" ".join(f"nbs2i: error: {exc}".splitlines())), err=True)
        return exc.exit_code
    except click.ClickException as exc:  # bad arguments: click's own one-liner
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort) as exc:
        click.echo(f"nbs2i: {printable(_interrupted(exc))}", err=True)
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
