"""Values the command line takes that need more than click's types: K=V pairs,
a UID, a password asked on the terminal."""

from __future__ import annotations

import os
import sys

import click

from nbs2i import restricted
from nbs2i.errors import Nbs2iError


def pairs(values: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    """K=V options as pairs; a value without '=' is a usage error."""
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not K=V", param_hint=option)
        pairs.append((key, val))
    return tuple(pairs)


def uid(value: str) -> int | None:
    try:
        return restricted.parse_uid(value)
    except Nbs2iError as exc:
        raise click.BadParameter(exc.problem, param_hint="--uid") from None


def password() -> str:
    from_env = os.environ.get("NBS2I_PASSWORD")
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise click.UsageError("--password asks on a terminal; without one, set NBS2I_PASSWORD")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
