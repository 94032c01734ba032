"""The `nbs2i` command group, which every command module adds itself to."""

from __future__ import annotations

import click

from nbs2i import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbs2i")
def cli() -> None:
    """Build Git repositories of Jupyter notebooks into hardened images
    that run under any UID with GID 0, read-only, with tini as PID 1."""


@cli.group("builder")
def builder_group() -> None:
    """The hardened S2I builder image."""
