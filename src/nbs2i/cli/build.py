"""`nbs2i build`: a source into an image (through the engine, into a registry
when none answers, or as a Dockerfile)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nbs2i import defaults, interrupts
from nbs2i.cli import output, values
from nbs2i.cli.group import cli
from nbs2i.cli.serve import run_cmd

if TYPE_CHECKING:
    from nbs2i.building import BuildRequest
    from nbs2i.nbtest import NotebookTestOptions


@dataclass(frozen=True)
class BuildArgs:
    """The options of `nbs2i build`, as click parses them (one field a parameter)."""

    builder: str
    ref: str
    context_dir: str
    exclude: tuple[str, ...]
    scripts_url: str
    env: tuple[str, ...]
    env_files: tuple[str, ...]
    inject: tuple[str, ...]
    ca_bundle: str | None
    assemble_user: str
    allowed_uids: str
    pull_policy: str
    network: str
    label: tuple[str, ...]
    container_label: tuple[str, ...]
    incremental: bool
    dependency_layer: bool
    always_assemble: bool
    test_notebooks: bool
    push: bool
    also_tag: tuple[str, ...]
    cache_from: tuple[str, ...]
    cache_to: str
    insecure_registry: tuple[str, ...]
    registry_ca: str | None
    as_dockerfile: str | None
    run_after: bool
    port: int | None
    as_json: bool
    quiet: bool


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
def build_cmd(ctx: click.Context, /, source: str, tag: str, **given: Any) -> None:
    """Build SOURCE (Git URL or directory, as it is on disk) into image TAG."""
    args = BuildArgs(**given)
    with output.json_errors(args.as_json):
        _build(ctx, source, tag, args)


def _build(ctx: click.Context, source: str, tag: str, args: BuildArgs) -> None:
    from nbs2i import building

    request = _request(source, tag, args)
    report = output.json_reporter if args.as_json else output.human_reporter(args.quiet)
    if args.as_dockerfile:
        if request.test is not None:
            raise click.UsageError("--test runs an image: it cannot go with --as-dockerfile")
        from nbs2i.building.dockerfile import write

        click.echo(str(write(request, Path(args.as_dockerfile), report)))
        return
    with interrupts.interrupting():
        result = building.build_anywhere(request, report, output.connect)
    if not args.as_json:
        click.echo(result.pushed or result.tag)
    if args.run_after:
        # The run container carries the --container-label values too.
        extra = {"port": args.port} if args.port is not None else {}
        ctx.invoke(run_cmd, image=result.tag, quiet=args.quiet, label=args.container_label, **extra)


def _request(source: str, tag: str, args: BuildArgs) -> BuildRequest:
    from nbs2i.building import BuildRequest, Injection
    from nbs2i.ca import default_ca_bundle
    from nbs2i.registry import Access
    from nbs2i.scripts import parse_env_pairs

    return BuildRequest(
        source=source,
        tag=tag,
        builder=args.builder,
        ref=args.ref,
        context_dir=args.context_dir,
        excludes=args.exclude or BuildRequest.excludes,
        scripts_url=args.scripts_url,
        env=parse_env_pairs(args.env, "--env"),
        env_files=tuple(Path(f) for f in args.env_files),
        injections=tuple(Injection.parse(i) for i in args.inject),
        ca_bundle=Path(args.ca_bundle) if args.ca_bundle else default_ca_bundle(),
        assemble_user=args.assemble_user,
        allowed_uids=args.allowed_uids,
        pull_policy=args.pull_policy,
        network=args.network,
        labels=values.pairs(args.label, "--label"),
        incremental=args.incremental,
        dependency_layer=args.dependency_layer,
        always_assemble=args.always_assemble,
        push=args.push,
        container_labels=values.pairs(args.container_label, "--container-label"),
        test=_test_options(args),
        then_run=args.run_after,
        also_tags=args.also_tag,
        cache_from=args.cache_from,
        cache_to=args.cache_to,
        registry_access=Access(
            insecure=args.insecure_registry,
            ca_bundle=Path(args.registry_ca) if args.registry_ca else None,
        ),
    )


def _test_options(args: BuildArgs) -> NotebookTestOptions | None:
    """`build --test`: nbs2i test's defaults, with the build's container labels."""
    if not args.test_notebooks:
        return None
    from nbs2i.nbtest import NotebookTestOptions

    return NotebookTestOptions(labels=dict(values.pairs(args.container_label, "--container-label")))
