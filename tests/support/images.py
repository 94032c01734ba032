"""Images the tests build for themselves: a few Dockerfile lines on a base, a
directory with a Dockerfile, or a directory of notebooks through nbs2i's real
build. The caller tracks the tag (and removes it); the session's labels go on
each image."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from nbs2i.engine import BuildSpec, Docker
from nbs2i.errors import BuildError
from tests.support.session import LABEL_PAIRS, LABELS


def dockerfile_context(dockerfile: str, files: dict[str, bytes] | None = None) -> bytes:
    """A build context tar: the Dockerfile and any extra files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **(files or {})}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_dockerfile(
    engine: Docker, tag: str, dockerfile: str, files: dict[str, bytes] | None = None
) -> str:
    """`docker build` of a Dockerfile (and any extra files) tagged `tag`."""
    spec = BuildSpec(context=dockerfile_context(dockerfile, files), tag=tag, labels=LABELS)
    log: list[str] = []
    for event in engine.build(spec):
        if event.error:
            raise BuildError(f"building {tag} failed: {event.error}", details="".join(log))
        log.append(event.stream)
    return tag


def derived(engine: Docker, base: str, tag: str, lines: str) -> str:
    """An image FROM base with extra Dockerfile lines."""
    return build_dockerfile(engine, tag, f"FROM {base}\n{lines}\n")


def build_notebooks(engine: Docker, source: Path, tag: str, builder: str) -> list[str]:
    """Build a notebook directory into `tag` with nbs2i's real S2I build, the
    way the `sample_build` fixture does; the images this made (the tag, and a
    dependency layer it did not merely reuse), for the caller to remove."""
    from nbs2i.building import BuildRequest, build
    from nbs2i.ca import default_ca_bundle

    request = BuildRequest(
        source=str(source),
        tag=tag,
        builder=builder,
        ca_bundle=default_ca_bundle(),
        labels=LABEL_PAIRS,
        container_labels=LABEL_PAIRS,
    )
    result = build(engine, request)
    return [result.tag, *result.caches_made]


def build_directory(engine: Docker, context: Path, ref: str) -> str:
    """`docker build` of a directory (its Dockerfile) as this session's image; the log."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(context), arcname=".")
    log = []
    for event in engine.build(BuildSpec(buffer.getvalue(), ref, labels=LABELS)):
        assert not event.error, "".join(log) + event.error
        log.append(event.stream)
    return "".join(log)
