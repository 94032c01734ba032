"""`nbs2i build --as-dockerfile DIR`: the same build as a Dockerfile and its context.

For CI with no engine at hand (kaniko, buildah, `docker build`): DIR gets a
Dockerfile and `upload/` holding exactly what `nbs2i build` would stream (same
selection, owners set by `COPY --chown`, modes with group bits = user bits,
times clamped to the commit), written from the same `BuildPlan`:

    FROM builder; LABEL as nbs2i sets them;
    RUN apt-get as root (apt.txt)                    (its own cached layer)
    ENV as nbs2i sets it (the build environment)
    COPY dependency files, RUN assemble's deps phase  (its own cached layer)
    COPY source (and uploaded scripts), RUN assemble; CMD run

The root step comes before the repository's ENV, and runs with an empty
environment besides (`APT_COMMAND`): apt reads its configuration from its
environment, and no variable of the repository's may reach a root step.

Classic Dockerfile syntax only (no BuildKit). `--inject` and `--ca-bundle` are
NOT written: anything a Dockerfile COPYs stays in a layer. Give a CA to the
build tool as a mount on /run/nbs2i/ca (buildah/podman `-v DIR:/run/nbs2i/ca:ro`).

The builder's labels and USER are read from the engine when one answers;
without one, the nbs2i builder's layout is assumed and a warning says so.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

from nbs2i import __version__, ca, labels
from nbs2i.archive import TarFile, files_tar, readable, tar_stream
from nbs2i.building import plan as planning
from nbs2i.building.assemble import APT_COMMAND
from nbs2i.building.request import BuildRequest, check
from nbs2i.engine import ImageConfig, ImageInfo
from nbs2i.errors import Nbs2iError, UsageError
from nbs2i.progress import Event, Reporter, silent
from nbs2i.source import open_source

# What the nbs2i builder declares; used when no engine can tell us.
ASSUMED = ImageInfo(
    id="",
    tags=(),
    config=ImageConfig(
        user="1001",
        labels={
            labels.SCRIPTS_URL: "image:///usr/libexec/s2i",
            labels.DESTINATION: "/opt/app-root/s2i",
            labels.OCI_TITLE: labels.BUILDER_TITLE,
        },
    ),
)


def builder_info(builder: str, reporter: Reporter) -> ImageInfo:
    """The builder as the engine knows it, or the nbs2i builder's layout."""
    from nbs2i.engine import Engine

    try:
        with Engine.connect() as engine:
            return engine.inspect_image(builder)
    except Nbs2iError as exc:
        reporter(
            Event(
                "warning",
                f"cannot inspect {builder} ({exc.problem}); assuming the nbs2i builder's "
                "layout: scripts in /usr/libexec/s2i, destination /opt/app-root/s2i, user 1001",
            )
        )
        return ASSUMED


def quote(value: str) -> str:
    """A Dockerfile double-quoted string; `$` escaped so nothing is substituted."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


def _keep_group_write(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "tar" filter (no absolute paths, nothing outside dest), but the
    group write bit kept: g=u is the point of the stream."""
    safe = tarfile.tar_filter(member, dest)
    return safe.replace(mode=member.mode & 0o777, deep=False) if member.mode is not None else safe


def _unpack(stream: Iterable[bytes], into: Path) -> None:
    with tarfile.open(fileobj=readable(stream), mode="r|") as tar:
        tar.extractall(into, filter=_keep_group_write, numeric_owner=True)


def write(req: BuildRequest, out_dir: Path, reporter: Reporter = silent) -> Path:
    """Write DIR/Dockerfile and DIR/upload; the Dockerfile's path."""
    from nbs2i.builder import shipped_assemble_digest
    from nbs2i.building import default_builder, read_source

    check(req)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(
            f"--as-dockerfile directory {out_dir} is not empty", "give a new or empty directory"
        )
    if req.injections or req.ca_bundle:
        reporter(
            Event(
                "warning",
                "--inject/--ca-bundle are not written into the Dockerfile (a COPY would keep "
                f"them in a layer); mount a CA on {ca.CA_DIR} with your build tool instead",
            )
        )
    builder = req.builder or default_builder()
    info = builder_info(builder, reporter)
    with open_source(req.source, ref=req.ref, context_dir=req.context_dir) as source:
        facts = read_source(req, source, dict(info.config.labels))
        the_plan = planning.plan(req, builder, info, facts, shipped_assemble_digest())
        upload = out_dir / "upload"
        upload.mkdir(parents=True)
        reporter(Event("step", f"Writing the build context into {upload}"))
        stream = tar_stream(
            source.root,
            uid=the_plan.uid,
            epoch=source.epoch,
            prefix="src",
            excludes=req.excludes,
            extra=the_plan.scripts.uploads(),
        )
        _unpack(stream, upload)
        if the_plan.deps and not the_plan.deps.whole_source:
            files = [TarFile(f"deps/{rel}", data=data) for rel, data in the_plan.deps.files]
            _unpack(files_tar(files, uid=the_plan.uid, epoch=source.epoch, dirs=["deps"]), upload)
    dockerfile = out_dir / "Dockerfile"
    text = "\n".join(dockerfile_lines(the_plan, has_scripts=(upload / "scripts").is_dir()))
    dockerfile.write_text(text + "\n", encoding="utf-8")
    reporter(Event("done", f"Wrote {dockerfile}", {"dockerfile": str(dockerfile)}))
    return dockerfile


def dockerfile_lines(the_plan: planning.BuildPlan, *, has_scripts: bool) -> list[str]:
    """The Dockerfile, from the plan."""
    dest = the_plan.scripts.destination
    uid, assemble = the_plan.uid, the_plan.assemble.path
    found = [
        f"# Written by nbs2i {__version__}: builds what `nbs2i build` builds, with any",
        "# Dockerfile builder (docker build, buildah, kaniko). Context: this directory.",
        f"FROM {the_plan.builder}",
        "LABEL " + " \\\n      ".join(f"{quote(k)}={quote(v)}" for k, v in the_plan.labels.items()),
    ]
    if the_plan.deps and the_plan.deps.apt:
        found += [
            "# Debian packages from apt.txt, installed as root by nbs2i's fixed command,",
            "# before the repository's ENV and with an empty environment.",
            "USER 0",
            "RUN " + json.dumps([*APT_COMMAND, *the_plan.deps.apt.packages]),
        ]
    found.append(f"USER {the_plan.user}")
    if the_plan.env:
        found.append("ENV " + " \\\n    ".join(f"{k}={quote(v)}" for k, v in the_plan.env.items()))
    if the_plan.deps:
        # A course installed as a package needs its whole source for that step.
        deps = "upload/src/" if the_plan.deps.whole_source else "upload/deps/"
        found += [
            "# The dependency files alone first: this layer is reused while they do not change.",
            f"COPY --chown={uid}:0 {deps} {dest}/src/",
            f"RUN {planning.PHASE_VAR}=deps {assemble}",
        ]
    found.append(f"COPY --chown={uid}:0 upload/src/ {dest}/src/")
    if has_scripts:
        found.append(f"COPY --chown={uid}:0 upload/scripts/ {dest}/scripts/")
    found.append(f"RUN {assemble}")
    if the_plan.user != the_plan.builder_config.user:
        found.append(f"USER {the_plan.builder_config.user}")
    found.append(f"CMD {json.dumps([the_plan.run.path])}")
    return found
