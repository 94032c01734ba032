"""Builds against the fake engine: its builder, as nbs2i's own builder image
is configured, and a request for a small course."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nbs2i import labels
from nbs2i.builder import shipped_assemble_digest
from nbs2i.building.request import BuildRequest
from nbs2i.engine import ImageConfig

BUILDER = "nbs2i/builder:test"
BUILDER_CONFIG = ImageConfig(
    user="1001",
    entrypoint=("tini", "-g", "--"),
    cmd=("/usr/libexec/s2i/run",),
    env={"NOTEBOOK_DIR": "/opt/app-root/src"},
    labels={
        labels.SCRIPTS_URL: "image:///usr/libexec/s2i",
        labels.DESTINATION: "/tmp",
        labels.OCI_TITLE: labels.BUILDER_TITLE,
        labels.ASSEMBLE_DIGEST: shipped_assemble_digest(),
        labels.NOTEBOOK_DIRS: (
            "/opt 0:0 0755;/opt/app-root 1001:0 0775;/opt/app-root/src 1001:0 0775"
        ),
    },
)


def request(src: Path, **changes: object) -> BuildRequest:
    """A build of `src` as class/w1:1 on BUILDER, with `changes`."""
    return replace(BuildRequest(source=str(src), tag="class/w1:1", builder=BUILDER), **changes)  # type: ignore[arg-type]
