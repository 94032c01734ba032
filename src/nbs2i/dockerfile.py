"""`nbs2i build --as-dockerfile DIR`: the same build as a Dockerfile and its context.

For CI with no engine at hand (kaniko, buildah, `docker build`): DIR gets a
Dockerfile and `upload/` holding exactly what `nbs2i build` would stream (same
selection, owners set by `COPY --chown`, modes with group bits = user bits,
times clamped to the commit). The Dockerfile mirrors the S2I steps:

    FROM builder; LABEL/ENV as nbs2i sets them;
    COPY dependency files, RUN assemble in the deps phase   (its own cached layer)
    COPY source (and uploaded scripts), RUN assemble; CMD run

It uses only classic Dockerfile syntax (no BuildKit). `--inject` and
`--ca-bundle` are NOT written: anything a Dockerfile COPYs stays in a layer.
Give secrets to the build tool itself (BuildKit/buildah secrets) instead.

The builder's labels and USER are read from the engine when one answers;
without one, the nbs2i builder's layout is assumed (scripts in
/usr/libexec/s2i, destination /tmp, user 1001) and a warning says so.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nbs2i import __version__
from nbs2i.archive import TarFile, check_source, tar_stream
from nbs2i.build import (
    PHASE_VAR,
    ROLE_LABEL,
    BuildRequest,
    default_builder,
    dependency_files,
)
from nbs2i.engine import Engine
from nbs2i.errors import Nbs2iError, UsageError
from nbs2i.image import check_user, output_labels, parse_uid_range
from nbs2i.progress import Event, Reporter, silent
from nbs2i.scripts import (
    ASSEMBLE_USER_LABEL,
    DESTINATION_LABEL,
    SCRIPTS_URL_LABEL,
    build_environment,
    resolve_scripts,
)
from nbs2i.source import open_source

# What the nbs2i builder declares; used when no engine can tell us.
ASSUMED_CONFIG: dict[str, Any] = {
    "User": "1001",
    "Labels": {SCRIPTS_URL_LABEL: "image:///usr/libexec/s2i", DESTINATION_LABEL: "/tmp"},
}


class _Reader:
    """A file-like object over an iterator of chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        cut = len(self._buf) if size < 0 else size
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out


def builder_config(builder: str, reporter: Reporter) -> Mapping[str, Any]:
    """The builder's image config from the engine, or the nbs2i builder's layout."""
    try:
        with Engine.connect() as engine:
            return engine.inspect_image(builder).get("Config") or {}
    except Nbs2iError as exc:
        reporter(
            Event(
                "warning",
                f"cannot inspect {builder} ({exc.problem}); assuming the nbs2i builder's "
                "layout: scripts in /usr/libexec/s2i, destination /tmp, user 1001",
            )
        )
        return ASSUMED_CONFIG


def quote(value: str) -> str:
    """A Dockerfile double-quoted string; `$` escaped so nothing is substituted."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


def _keep_group_write(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "tar" filter (no absolute paths, nothing outside dest), but the
    group write bit kept: g=u is the point of the stream."""
    safe = tarfile.tar_filter(member, dest)
    return safe.replace(mode=member.mode & 0o777, deep=False) if member.mode is not None else safe


def _unpack(stream: Iterable[bytes], into: Path) -> None:
    with tarfile.open(fileobj=_Reader(stream), mode="r|") as tar:  # type: ignore[arg-type]
        tar.extractall(into, filter=_keep_group_write, numeric_owner=True)


def write(request: BuildRequest, out_dir: Path, reporter: Reporter = silent) -> Path:
    """Write DIR/Dockerfile and DIR/upload; returns the Dockerfile's path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(
            f"--as-dockerfile directory {out_dir} is not empty", "give a new or empty directory"
        )
    if request.injections or request.ca_bundle:
        reporter(
            Event(
                "warning",
                "--inject/--ca-bundle are not written into the Dockerfile (a COPY would "
                "keep them in a layer); give secrets to your build tool instead",
            )
        )
    builder = request.builder or default_builder()
    config = builder_config(builder, reporter)
    labels = config.get("Labels") or {}
    allowed = parse_uid_range(request.allowed_uids)
    image_user = config.get("User") or ""
    check_user(image_user, allowed, f"builder {builder}")
    user = request.assemble_user or labels.get(ASSEMBLE_USER_LABEL) or image_user
    uid = check_user(user, allowed, "assemble")

    with open_source(request.source, ref=request.ref, context_dir=request.context_dir) as src:
        check_source(src.root, request.excludes)
        scripts = resolve_scripts(
            scripts_url=request.scripts_url, source_root=src.root, image_labels=labels
        )
        assemble = scripts.require("assemble", builder)
        run = scripts.require("run", builder)
        env = build_environment(src.root, request.env_files, dict(request.env))
        upload = out_dir / "upload"
        upload.mkdir(parents=True)
        reporter(Event("step", f"Writing the build context into {upload}"))
        _unpack(
            tar_stream(
                src.root,
                uid=uid,
                epoch=src.epoch,
                prefix="src",
                excludes=request.excludes,
                extra=scripts.uploads(),
            ),
            upload,
        )
        deps = dependency_files(src.root) if request.dependency_layer else None
        if deps and assemble.upload is None:
            _unpack(
                tar_stream(
                    src.root,
                    uid=uid,
                    epoch=src.epoch,
                    prefix="deps",
                    excludes=(r".",),
                    extra=[TarFile(f"deps/{rel}", path=src.root / rel) for rel in deps],
                ),
                upload,
            )
        else:
            deps = None
        image_labels = {
            ROLE_LABEL: "image",
            **output_labels(src, builder=builder, tag=request.tag),
            **dict(request.labels),
        }
    dest = scripts.destination
    lines = [
        f"# Written by nbs2i {__version__}: builds what `nbs2i build` builds, with any",
        "# Dockerfile builder (docker build, buildah, kaniko). Context: this directory.",
        f"FROM {builder}",
    ]
    if image_labels:
        lines.append(
            "LABEL " + " \\\n      ".join(f"{quote(k)}={quote(v)}" for k, v in image_labels.items())
        )
    if env:
        lines.append("ENV " + " \\\n    ".join(f"{k}={quote(v)}" for k, v in env.items()))
    lines.append(f"USER {user}")
    if deps:
        lines += [
            "# The dependency files alone first: this layer is reused while they do not change.",
            f"COPY --chown={uid}:0 upload/deps/ {dest}/src/",
            f"RUN {PHASE_VAR}=deps {assemble.path}",
        ]
    lines.append(f"COPY --chown={uid}:0 upload/src/ {dest}/src/")
    if (upload / "scripts").is_dir():
        lines.append(f"COPY --chown={uid}:0 upload/scripts/ {dest}/scripts/")
    lines.append(f"RUN {assemble.path}")
    if user != image_user:
        lines.append(f"USER {image_user}")
    lines.append(f"CMD {json.dumps([run.path])}")
    dockerfile = out_dir / "Dockerfile"
    dockerfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reporter(Event("done", f"Wrote {dockerfile}", {"dockerfile": str(dockerfile)}))
    return dockerfile
