"""`nbs2i build --as-dockerfile DIR`: the same build as a Dockerfile and its context.

For CI with no engine at hand (kaniko, buildah, `docker build`): DIR gets a
Dockerfile and `upload/` holding exactly what `nbs2i build` would stream (same
selection, owners set by `COPY --chown`, modes with group bits = user bits,
times clamped to the commit), written from the same `BuildPlan`:

    FROM builder AS deps; LABEL/CMD as the dependency layer has them;
    RUN apt-get as root (apt.txt)                    (its own cached layer)
    ENV as nbs2i sets it (the build environment)
    COPY dependency files, RUN assemble's deps phase  (its own cached layer)
    FROM deps; LABEL as nbs2i sets them;
    COPY source (and uploaded scripts), RUN assemble; CMD run

The root step comes before the repository's ENV, and runs with an empty
environment besides (`APT_COMMAND`): apt reads its configuration from its
environment, and no variable of the repository's may reach a root step.

The `deps` stage (when the course has dependency files) is the dependency
layer's cache entry: `buildah bud --target deps` builds it, and pushed as
`REPO:$(cat DIR/deps-cache-tag)` it is what `--cache-from REPO` looks for, on
a runner with an engine or with none.

Classic Dockerfile syntax only (no BuildKit). `--inject` and `--ca-bundle` are
NOT written: anything a Dockerfile COPYs stays in a layer. Give a CA to the
build tool as a mount on /run/nbs2i/ca (buildah/podman `-v DIR:/run/nbs2i/ca:ro`).

The builder's labels and USER are read from the engine when one answers, else
from its registry; without either, the nbs2i builder's layout is assumed and
a warning says so (then no cache entry can be named).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from nbs2i import __version__, ca, labels
from nbs2i.archive import TarFile, files_tar, readable, tar_stream
from nbs2i.building import plan as planning
from nbs2i.building.assemble import APT_COMMAND
from nbs2i.building.cache import deps_entry
from nbs2i.building.request import BuildRequest, check
from nbs2i.engine import ImageConfig, ImageInfo
from nbs2i.errors import Nbs2iError, UsageError
from nbs2i.progress import Event, Reporter, silent
from nbs2i.source import open_source

# Where --as-dockerfile writes the dependency stage's cache tag (deps-KEY).
CACHE_TAG_FILE = "deps-cache-tag"
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


def builder_info(req: BuildRequest, builder: str, reporter: Reporter) -> ImageInfo:
    """The builder as the engine or its registry knows it, or the nbs2i builder's
    layout."""
    from nbs2i.building.cache import Cache
    from nbs2i.building.direct import read_image
    from nbs2i.engine import Engine

    try:
        with Engine.connect() as engine:
            return engine.inspect_image(builder)
    except Nbs2iError:
        pass
    try:
        with Cache(req, reporter) as registries:
            return read_image(registries, builder).info
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
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(into, filter=_keep_group_write, numeric_owner=True)
            return
        # Python before 3.11.4 (Debian bookworm's 3.11.2) has no extraction
        # filters: the same checks, member by member.
        for member in tar:
            _check_member(member)
            tar.extract(member, into, numeric_owner=True)


def _check_member(member: tarfile.TarInfo) -> None:
    """What the "tar" filter refuses: absolute or parent paths, links out of dest."""
    name = PurePosixPath(member.name)
    target = PurePosixPath(member.linkname)
    inside = os.path.normpath(name.parent / target) if member.issym() else str(target)
    bad = name.is_absolute() or ".." in name.parts
    if member.issym() or member.islnk():
        bad = bad or target.is_absolute() or inside == ".." or inside.startswith("../")
    if bad or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UsageError(
            f"the build context holds {member.name!r}, which cannot be written safely",
            "remove that file or link from the course",
        )


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
    info = builder_info(req, builder, reporter)
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
    data = {"dockerfile": str(dockerfile)}
    if the_plan.deps is not None and info.id:
        cache_tag = deps_entry(the_plan.deps).tag()
        (out_dir / CACHE_TAG_FILE).write_text(cache_tag + "\n", encoding="utf-8")
        data["deps_cache_tag"] = cache_tag
    reporter(Event("done", f"Wrote {dockerfile}", data))
    return dockerfile


def dockerfile_lines(the_plan: planning.BuildPlan, *, has_scripts: bool) -> list[str]:
    """The Dockerfile, from the plan: a `deps` stage when there is a dependency
    layer, then the notebooks."""
    found = [
        f"# Written by nbs2i {__version__}: builds what `nbs2i build` builds, with any",
        "# Dockerfile builder (docker build, buildah, kaniko). Context: this directory.",
    ]
    if the_plan.deps is None:
        found += [f"FROM {the_plan.builder}", *_env(the_plan.env)]
    else:
        found += _deps_stage(the_plan, the_plan.deps)
    found.append(_label(the_plan.labels))
    dest, uid, assemble = the_plan.scripts.destination, the_plan.uid, the_plan.assemble.path
    found.append(f"USER {the_plan.user}")
    found.append(f"COPY --chown={uid}:0 upload/src/ {dest}/src/")
    if has_scripts:
        found.append(f"COPY --chown={uid}:0 upload/scripts/ {dest}/scripts/")
    found.append(f"RUN {assemble}")
    if the_plan.user != the_plan.builder_config.user:
        found.append(f"USER {the_plan.builder_config.user}")
    found.append(f"CMD {json.dumps([the_plan.run.path])}")
    return found


def _deps_stage(the_plan: planning.BuildPlan, deps: planning.DepsStep) -> list[str]:
    """The dependency layer as nbs2i makes it: its labels, environment and command
    (the cache entry's config), the Debian packages, the dependency files."""
    uid, assemble = the_plan.uid, the_plan.assemble.path
    builder_labels = the_plan.builder_config.labels
    found = [
        f"# The dependency layer: `--target deps` builds the cache entry {deps_entry(deps).tag()}.",
        f"FROM {the_plan.builder} AS deps",
        _label({k: v for k, v in deps.config.labels.items() if builder_labels.get(k) != v}),
    ]
    if deps.apt:
        found += [
            "# Debian packages from apt.txt, installed as root by nbs2i's fixed command,",
            "# before the repository's ENV and with an empty environment.",
            "USER 0",
            "RUN " + json.dumps([*APT_COMMAND, *deps.apt.packages]),
        ]
    # A course installed as a package needs its whole source for that step.
    files = "upload/src/" if deps.whole_source else "upload/deps/"
    found += [
        *_env(the_plan.env),
        f"USER {the_plan.user}",
        "# The dependency files alone first: this layer is reused while they do not change.",
        f"COPY --chown={uid}:0 {files} {the_plan.scripts.destination}/src/",
        f"RUN {planning.PHASE_VAR}=deps {assemble}",
    ]
    if the_plan.user != deps.config.user:
        found.append(f"USER {deps.config.user}")
    found += [f"CMD {json.dumps(list(deps.config.cmd))}", "FROM deps"]
    return found


def _label(values: Mapping[str, str]) -> str:
    return "LABEL " + " \\\n      ".join(f"{quote(k)}={quote(v)}" for k, v in values.items())


def _env(values: Mapping[str, str]) -> list[str]:
    if not values:
        return []
    return ["ENV " + " \\\n    ".join(f"{k}={quote(v)}" for k, v in values.items())]
