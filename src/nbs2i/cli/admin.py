"""The commands around builds: which engine (`nbs2i engine`), the builder image
(`nbs2i builder build`), what interrupted runs left (`nbs2i prune`), and the
files a platform needs (`nbs2i deploy`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from nbs2i import defaults, interrupts
from nbs2i.cli import output, values
from nbs2i.cli.group import builder_group, cli


@cli.command("engine")
def engine_cmd() -> None:
    """Show which engine nbs2i talks to: its kind, version, API version and image
    store, and how a written notebook layer reaches it."""
    from nbs2i.building.load import written_as

    with output.connect() as engine:
        info = engine.describe()
        click.echo(f"engine:  {engine.where}")
        click.echo(f"server:  {info.kind.capitalize()} {info.version} (API {info.api_version})")
        click.echo(f"client:  API {engine.api_version} (negotiated)")
        click.echo(f"kind:    {info.kind}")
        click.echo(f"store:   {info.store}")
        click.echo(f"layer:   {written_as(info.kind, info.keeps_manifests)}")
        click.echo(f"os/arch: {info.os}/{info.arch}")


@dataclass(frozen=True)
class DeployArgs:
    """What `nbs2i deploy` passes on to `nbs2i.deploy.options` (None: its default)."""

    name: str | None
    digest: str | None
    hostname: str | None
    storage: str | None
    memory: str | None
    repository_url: str | None
    ref: str | None
    context_dir: str | None
    uid: int | None
    token: str | None


@cli.command("deploy")
@click.argument("target", type=click.Choice(defaults.DEPLOY_TARGETS))
@click.argument("image", required=False)
@click.option(
    "--output",
    "-o",
    "out_dir",
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
    target: str,
    image: str | None,
    out_dir: str,
    ask_password: bool,
    force: bool,
    **given: Any,
) -> None:
    """Write what TARGET needs to run IMAGE: openshift (IMAGE: the S2I builder),
    kubernetes or zero-to-jupyterhub (IMAGE: the notebooks' image)."""
    from nbs2i import deploy

    args = DeployArgs(**given)
    password = values.password() if ask_password else None
    options = deploy.options(target, image, password=password, **asdict(args))
    result = deploy.write(options, Path(out_dir), force=force)
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

    with output.connect() as engine:
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

    with output.json_errors(as_json):
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
        with interrupts.interrupting(), output.connect() as engine:
            result = builder.build_builder(
                engine, request, output.json_reporter if as_json else output.human_reporter(quiet)
            )
    if not as_json:
        click.echo(result.image_id)
