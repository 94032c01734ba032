"""Decide a build before acting: from the request, the builder's config and what
was read from the source to a `BuildPlan`. Pure: no engine, no files; a unit
test calls it with values.

What is decided here:

- who runs assemble (the builder's USER, `--assemble-user`, the builder's
  label), refused when not a numeric UID in `--allowed-uids`;
- the scripts (assemble and run are required) and the environment;
- the dependency layer: when the course has dependency files, they are
  installed first, alone, into `nbs2i-cache/deps:<key>` (Debian packages from
  apt.txt into `nbs2i-cache/apt:<key>` below it), reused by every later build
  with that key; a course installed as a package gets the whole source for
  that step, keyed by its package files (setup.py, setup.cfg, pyproject.toml),
  so a change to its code or notebooks reuses the layer;
- how the notebooks get into the image: nbs2i writes the layer itself
  (`layer`) when running assemble would only move them there, which it knows
  when the builder's assemble is, byte for byte, the one this nbs2i ships and
  nothing overrides or adds to it; else a container runs assemble (`assemble`);
- the image's labels and config, the same whichever way is taken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from nbs2i import labels
from nbs2i.archive import DirEntry
from nbs2i.building.deps import Dependencies, Notice, key
from nbs2i.building.request import BuildRequest, Injection
from nbs2i.engine import ImageConfig, ImageInfo
from nbs2i.errors import BuildError
from nbs2i.image import check_user, image_config, output_labels, parse_uid_range
from nbs2i.scripts import Script, Scripts
from nbs2i.source import Source

DEPS_REPOSITORY = "nbs2i-cache/deps"
APT_REPOSITORY = "nbs2i-cache/apt"
# Tells nbs2i's assemble which phase runs (the dependency layer's: "deps").
PHASE_VAR = "NBS2I_ASSEMBLE_PHASE"
# Left out of a layer nbs2i writes: assemble removes it from the notebooks.
S2I_DIR_EXCLUDE = r"^\.s2i(/|$)"


@dataclass(frozen=True)
class Facts:
    """What was read from the source before planning."""

    source: Source
    scripts: Scripts
    env: Mapping[str, str]
    deps: Dependencies | None
    # A line for each dependency file that is known but not installed, or
    # installed in a way worth saying (runtime.txt, environment.yml).
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class AptStep:
    tag: str
    packages: tuple[str, ...]
    config: ImageConfig  # the builder's, with the labels its container carries


@dataclass(frozen=True)
class DepsStep:
    tag: str
    key: str
    files: tuple[tuple[str, bytes], ...]
    apt: AptStep | None
    # A builder that is nbs2i's knows the dependency phase; with another one a
    # failed dependency step falls back to one assemble with everything.
    builder_knows_phase: bool
    config: ImageConfig
    # The repository is installed as a package: the step gets the whole source
    # (the key still covers only the dependency files).
    whole_source: bool = False


@dataclass(frozen=True)
class LayerPlan:
    """The notebook layer nbs2i writes itself."""

    notebook_dir: str
    dirs: tuple[DirEntry, ...]  # from / down to notebook_dir, as the builder has them
    excludes: tuple[str, ...]


@dataclass(frozen=True)
class BuildPlan:
    request: BuildRequest
    builder: str
    user: str
    uid: int
    scripts: Scripts
    assemble: Script
    run: Script
    env: Mapping[str, str]
    deps: DepsStep | None
    layer: LayerPlan | None  # None: a container runs assemble
    why_assemble: str  # why a container runs assemble ("" with a layer)
    labels: Mapping[str, str]
    builder_config: ImageConfig
    config: ImageConfig  # the built image's
    injections: tuple[Injection, ...]
    # Restore the previous image's artifacts. Not with a dependency layer: that
    # layer already holds what the artifacts would bring, a second time.
    incremental: bool = False

    @property
    def base(self) -> str:
        """The image the notebooks go on."""
        return self.deps.tag if self.deps else self.builder


def plan(
    request: BuildRequest,
    builder: str,
    info: ImageInfo,
    facts: Facts,
    shipped_assemble: str = "",
) -> BuildPlan:
    """The whole build, decided. `shipped_assemble` is the sha256 of the assemble
    script this nbs2i ships ("" when unknown)."""
    config = info.config
    allowed = parse_uid_range(request.allowed_uids)
    check_user(config.user, allowed, f"builder {builder}")
    user = request.assemble_user or config.labels.get(labels.ASSEMBLE_USER) or config.user
    uid = check_user(user, allowed, "assemble")
    assemble = facts.scripts.require("assemble", builder)
    run = facts.scripts.require("run", builder)
    deps = _deps_step(request, builder, info, facts, assemble, run)
    layer, why = _placement(request, config, facts, deps, shipped_assemble, uid)
    image_labels = {
        **dict(request.container_labels),
        **output_labels(facts.source, builder=builder, tag=request.tag),
        labels.ROLE: labels.ROLE_IMAGE,
        **dict(request.labels),
    }
    base = deps.config if deps else config
    return BuildPlan(
        request=request,
        builder=builder,
        user=user,
        uid=uid,
        scripts=facts.scripts,
        assemble=assemble,
        run=run,
        env=facts.env,
        deps=deps,
        layer=layer,
        why_assemble=why,
        labels=image_labels,
        builder_config=config,
        config=image_config(base, cmd=(run.path,), env=facts.env, extra=image_labels),
        injections=request.injections,
        incremental=request.incremental and deps is None,
    )


def _deps_step(
    request: BuildRequest,
    builder: str,
    info: ImageInfo,
    facts: Facts,
    assemble: Script,
    run: Script,
) -> DepsStep | None:
    deps = facts.deps
    if deps is None or not request.dependency_layer or deps.one_step:
        if deps is not None and deps.apt_packages:
            raise BuildError(
                "apt.txt needs the dependency layer (Debian packages are installed in it)",
                "leave out --no-dependency-layer, and keep requirements free of local paths",
            )
        return None
    apt = None
    base_id = info.id
    if deps.apt_packages:
        apt_key = key({"builder": info.id}, (("apt.txt", "\n".join(deps.apt_packages).encode()),))
        apt_labels = {**dict(request.container_labels), labels.ROLE: labels.ROLE_DEPS}
        apt_config = replace(info.config, labels={**info.config.labels, **apt_labels})
        apt = AptStep(f"{APT_REPOSITORY}:{apt_key}", deps.apt_packages, apt_config)
        base_id = apt.tag
    identity = assemble.path + (_digest(assemble.content) if assemble.content else "")
    deps_key = key(
        {"base": base_id, "assemble": identity, "env": repr(sorted(facts.env.items()))},
        deps.files,
    )
    deps_labels = {
        **dict(request.container_labels),
        labels.ROLE: labels.ROLE_DEPS,
        labels.DEPS_KEY: deps_key,
        labels.BUILD_IMAGE: builder,
    }
    config = replace(
        info.config,
        cmd=(run.path,),
        env={**info.config.env, **facts.env},
        labels={**info.config.labels, **deps_labels},
    )
    return DepsStep(
        tag=f"{DEPS_REPOSITORY}:{deps_key}",
        key=deps_key,
        files=deps.files,
        apt=apt,
        builder_knows_phase=info.config.labels.get(labels.OCI_TITLE) == labels.BUILDER_TITLE,
        config=config,
        whole_source=deps.whole_source,
    )


def _placement(
    request: BuildRequest,
    config: ImageConfig,
    facts: Facts,
    deps: DepsStep | None,
    shipped_assemble: str,
    uid: int,
) -> tuple[LayerPlan | None, str]:
    """(the layer to write, "") or (None, why assemble must run)."""
    notebook_dir = config.env.get("NOTEBOOK_DIR", "")
    reasons = (
        (request.always_assemble, "--always-assemble"),
        (request.incremental and deps is None, "--incremental"),
        (bool(request.injections), "--inject"),
        (bool(facts.scripts.uploads()), "the repository or --scripts-url brings its own scripts"),
        (
            facts.deps is not None and deps is None,
            "the dependencies are installed with the notebooks",
        ),
        (not shipped_assemble, "this nbs2i does not know its own assemble script"),
        (
            config.labels.get(labels.ASSEMBLE_DIGEST) != shipped_assemble,
            "the builder's assemble is not the one this nbs2i ships",
        ),
        (not notebook_dir.startswith("/"), "the builder sets no NOTEBOOK_DIR"),
        (facts.env.get("NOTEBOOK_DIR", notebook_dir) != notebook_dir, "NOTEBOOK_DIR is changed"),
    )
    for applies, why in reasons:
        if applies:
            return None, why
    dirs = notebook_dirs(config.labels.get(labels.NOTEBOOK_DIRS, ""), notebook_dir)
    if dirs is None:
        return None, f"the builder does not declare its {labels.NOTEBOOK_DIRS}"
    excludes = (*request.excludes, S2I_DIR_EXCLUDE)
    return LayerPlan(notebook_dir.rstrip("/"), dirs, excludes), ""


def notebook_dirs(declared: str, notebook_dir: str) -> tuple[DirEntry, ...] | None:
    """The builder's declared directories, "path uid:gid mode" joined by ";", when
    they are exactly the chain from / down to notebook_dir; else None."""
    entries = []
    for item in filter(None, (part.strip() for part in declared.split(";"))):
        fields = item.split()
        if len(fields) != 3 or ":" not in fields[1]:
            return None
        uid, _, gid = fields[1].partition(":")
        if not (uid.isdigit() and gid.isdigit()) or not _is_octal(fields[2]):
            return None
        entries.append(DirEntry(fields[0].strip("/"), int(uid), int(gid), int(fields[2], 8)))
    chain = notebook_dir.strip("/").split("/")
    wanted = ["/".join(chain[: i + 1]) for i in range(len(chain))]
    return tuple(entries) if [e.name for e in entries] == wanted else None


def _is_octal(text: str) -> bool:
    return bool(text) and all(c in "01234567" for c in text)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
