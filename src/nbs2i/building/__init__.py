"""The S2I build: from a source to a tagged image.

1. Check the request: every input that can be wrong is refused before
   anything slow happens.
2. The builder: present, pulled, or (nbs2i's default builder) built on first
   use, as `--pull-policy` says.
3. The source: cloned or taken as it is on disk; its scripts, environment and
   dependency files read, each through `read_control_file` (the dependency
   files through `nbs2i.depfiles`, the definition the builder's assemble
   follows too); a line for each dependency file that is not installed.
4. The plan (`plan.py`, pure): who assembles, the dependency layer, whether
   nbs2i writes the notebook layer itself or a container runs assemble, the
   image's labels and config.
5. The dependency layer: reused when its key is in the engine, else pulled
   from a `--cache-from` registry (`cache.py`), else made (Debian packages as
   root by a fixed command, then assemble's deps phase); pushed to
   `--cache-to`.
6. The notebooks: nbs2i writes the layer and loads it (`layer.py`), or a
   container runs assemble and is committed (`assemble.py`), with `--inject`
   volumes and `--incremental` artifacts. Should an engine refuse the written
   image, the container path takes over, with a line saying why.
7. The tag moves to the new image; the one it replaced is removed when nothing
   else uses it (`tagging.py`).
8. `--test`: the notebooks run in the new image (`nbs2i.nbtest`); one that
   does not pass fails the build here, before anything is pushed. The tag
   stays on the new image, so that it can be run and looked into.
9. `--push`: to the registry the tag names, with the usual Docker credentials.

With no engine at all, `--push` builds straight into the registry when it can
(`direct.py`): see `build_anywhere`.

Everything a build creates in the engine is removed in a `finally`: after
success, failure, Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import replace
from typing import TYPE_CHECKING

from nbs2i import interrupts, registry
from nbs2i.builder import default_tags, ensure_builder, shipped_assemble_digest
from nbs2i.building import assemble, cache, deps, direct, layer, load, plan, request, tagging
from nbs2i.building.cache import Cache
from nbs2i.building.commit import commit
from nbs2i.building.deps import Notice
from nbs2i.building.plan import BuildPlan, DepsStep, Facts
from nbs2i.building.request import BuildRequest, BuildResult, Injection
from nbs2i.cleanup import Leftovers
from nbs2i.engine import Docker
from nbs2i.errors import BuildError, EngineError, EngineUnavailable
from nbs2i.image import image_config
from nbs2i.progress import Event, Reporter, silent
from nbs2i.prune import find_orphans
from nbs2i.scripts import Scripts, build_environment, resolve_scripts
from nbs2i.source import Source, open_source, redact

if TYPE_CHECKING:
    from nbs2i.engine import Engine

__all__ = [
    "BuildRequest",
    "BuildResult",
    "Injection",
    "build",
    "build_anywhere",
    "default_builder",
]


def default_builder() -> str:
    """nbs2i/builder:<version>, as `nbs2i builder build` tags it."""
    return default_tags()[0]


def build(engine: Docker, req: BuildRequest, reporter: Reporter = silent) -> BuildResult:
    """Build `req.source` into `req.tag`; see the module docstring. Raises
    Nbs2iError subclasses."""
    started = time.monotonic()
    request.check(req)
    _mention_leftovers(engine, reporter)
    builder = req.builder or default_builder()
    reporter(Event("step", f"Checking builder {builder}"))
    info = ensure_builder(
        engine, builder, req.pull_policy, is_default=not req.builder, report=reporter
    )
    reporter(Event("step", f"Fetching source {redact(req.source)}"))
    with open_source(req.source, ref=req.ref, context_dir=req.context_dir) as source:
        facts = read_source(req, source, info.config.labels)
        for kind, line in facts.notices:
            reporter(Event("warning" if kind == "ignored" else "step", line))
        the_plan = plan.plan(req, builder, info, facts, shipped_assemble_digest())
        if req.incremental and the_plan.deps is not None:
            reporter(
                Event(
                    "step",
                    f"--incremental: the dependency layer {the_plan.deps.tag} holds the "
                    "installed packages; no artifacts needed",
                )
            )
        leftovers = Leftovers(engine)
        try:
            with Cache(req, reporter) as registries:
                return _execute(engine, the_plan, source, leftovers, registries, reporter, started)
        except KeyboardInterrupt as stop:
            name = str(stop) or "SIGINT"
            raise interrupts.Interrupted(name, _clean_up(leftovers, name)) from None
        finally:
            leftovers.remove_all()  # nothing left to do after an interrupt


def _clean_up(leftovers: Leftovers, signal_name: str) -> str:
    """Remove what the build made, after a stop signal (a second one waits);
    the line that says what was removed and what could not be."""
    made = [
        *(["container"] * len(leftovers.containers)),
        *(["volume"] * len(leftovers.volumes)),
    ]
    left: list[str] = []
    with suppress(KeyboardInterrupt), interrupts.deferred():
        left = leftovers.remove_all()
    done = f"interrupted ({signal_name})"
    if not left:
        removed = f" ({_counted(made)})" if made else ""
        return f"{done}; everything this run started was removed{removed}"
    for item in left:
        made.remove(item.split()[0])
    removed = f"removed {_counted(made)}, but " if made else ""
    return (
        f"{done}; {removed}could not remove {', '.join(left)}: `nbs2i prune` removes what is left"
    )


def _counted(kinds: list[str]) -> str:
    """["container", "volume", "volume"] -> "1 container and 2 volumes"."""
    counts = {kind: kinds.count(kind) for kind in kinds}
    parts = [f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items()]
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)


def build_anywhere(
    req: BuildRequest, reporter: Reporter, connect: Callable[[], Engine]
) -> BuildResult:
    """`build` on the engine `connect` finds; with none and `--push`, straight
    into the registry (`direct.py`), or one line saying why that cannot be."""
    try:
        engine = connect()
    except EngineUnavailable as exc:
        if not req.push:
            raise
        from nbs2i.building import direct

        reporter(Event("step", f"{exc.problem}: building straight into the registry"))
        return direct.build(req, reporter)
    with engine:
        return build(engine, req, reporter)


def read_source(req: BuildRequest, source: Source, builder_labels: Mapping[str, str]) -> Facts:
    """Everything planning needs from the source (the only reads of it before the
    tar streams)."""
    from nbs2i.archive import check_source

    check_source(source.root, req.excludes)
    scripts = resolve_scripts(
        scripts_url=req.scripts_url, source_root=source.root, image_labels=builder_labels
    )
    env = build_environment(source.root, req.env_files, dict(req.env))
    found = deps.find(source.root, builder_labels)
    return Facts(source, scripts, env, found.deps, (*found.notices, *_script_notices(scripts)))


def _script_notices(scripts: Scripts) -> tuple[Notice, ...]:
    """A run script the builder did not bring starts the server its own way:
    what the image promises (a login, the server's environment) is then up to
    it, and a person should know before the class does."""
    run = scripts.get("run")
    if run is None or run.content is None:
        return ()
    return (
        (
            "ignored",
            "the repository (or --scripts-url) replaces the builder's run script: the "
            "server's login and environment are then up to it; `nbs2i verify IMAGE` "
            "checks that the server still refuses requests without credentials",
        ),
    )


def _execute(
    engine: Docker,
    the_plan: BuildPlan,
    source: Source,
    leftovers: Leftovers,
    registries: Cache,
    reporter: Reporter,
    started: float,
) -> BuildResult:
    req = the_plan.request
    found = _in_cache(engine, the_plan, registries)
    if found and direct.onto_cache_entry(the_plan, False, found):
        return _in_registry(registries, the_plan, found, source, reporter, started)
    containers = assemble.Containers(engine, the_plan, leftovers)
    deps_tag, reused, made = _dependency_layer(containers, registries, source, reporter, found)
    if the_plan.deps is not None and not deps_tag:
        the_plan = containers.plan = _without_deps(the_plan)
    image_id, method, used_artifacts = _notebooks(containers, the_plan, source, reporter)
    if req.test is not None:
        from nbs2i import nbtest

        nbtest.gate(containers.engine, req.tag, req.test, req.push, reporter)
    pushed = _push(engine, req, reporter) if req.push else ""
    result = BuildResult(
        tag=req.tag,
        image_id=image_id,
        builder=the_plan.builder,
        labels=dict(the_plan.labels),
        deps_image=deps_tag,
        deps_reused=reused,
        caches_made=made,
        incremental=used_artifacts,
        method=method,
        pushed=pushed,
        seconds=round(time.monotonic() - started, 3),
    )
    finish(result, reporter)
    return result


def _in_cache(engine: Docker, the_plan: BuildPlan, registries: Cache) -> str | None:
    """The dependency layer's --cache-from entry, looked up once, when a push
    could be built on it in the registry (None: not looked up)."""
    step, req = the_plan.deps, the_plan.request
    if step is None or not req.push or the_plan.layer is None or engine.image_exists(step.tag):
        return None
    return registries.find(cache.deps_entry(step))


def _in_registry(
    registries: Cache,
    the_plan: BuildPlan,
    found: str,
    source: Source,
    reporter: Reporter,
    started: float,
) -> BuildResult:
    """A push built in the registry on the dependency layer's cache entry."""
    image_id, pushed = direct.build_on_entry(registries, the_plan, found, source, reporter)
    reporter(
        Event(
            "step",
            f"{the_plan.request.tag} is in its registry only (this engine did not need the "
            f"dependency layer): `docker pull {pushed}` runs it here",
        )
    )
    result = BuildResult(
        tag=the_plan.request.tag,
        image_id=image_id,
        builder=the_plan.builder,
        labels=dict(the_plan.labels),
        deps_image=found,
        deps_reused=True,
        method="layer",
        pushed=pushed,
        seconds=round(time.monotonic() - started, 3),
    )
    finish(result, reporter)
    return result


def _push(engine: Docker, req: BuildRequest, reporter: Reporter) -> str:
    """Push TAG, then the same image under each --also-tag; TAG pinned by digest."""
    reporter(Event("step", f"Pushing {req.tag}"))
    pushed = registry.push(engine, req.tag)
    for ref in request.also_refs(req):
        engine.tag(req.tag, ref)
        try:
            registry.push(engine, ref)
        finally:
            engine.remove_image(ref)
        reporter(Event("step", f"Pushed the same image as {ref}"))
    return pushed


def finish(result: BuildResult, reporter: Reporter) -> None:
    """The build's last line (and event), whichever way it was made."""
    data = {
        "tag": result.tag,
        "image": result.image_id,
        "seconds": result.seconds,
        "deps_image": result.deps_image,
        "deps_reused": result.deps_reused,
        "method": result.method,
        **({"pushed": result.pushed} if result.pushed else {}),
    }
    as_pushed = f", pushed as {result.pushed}" if result.pushed else ""
    took = f"{result.seconds:.1f}s"
    message = f"Built {result.tag} ({result.image_id[7:19]}) in {took}{as_pushed}"
    reporter(Event("done", message, data))


def _dependency_layer(
    containers: assemble.Containers,
    registries: Cache,
    source: Source,
    reporter: Reporter,
    found: str | None = None,
) -> tuple[str, bool, tuple[str, ...]]:
    """(the dependency layer's tag, whether it was reused, the cache images made);
    ("", False, ...) without one. Builds that need the same layer at once wait
    for the first one to make it, then reuse it. `found`: the --cache-from
    entry when it was looked up already ("" for none), None when not."""
    step = containers.plan.deps
    if step is None:
        return "", False, ()

    def waiting() -> None:
        reporter(Event("step", f"Waiting for another build making {step.tag}"))

    entry = cache.deps_entry(step)
    with tagging.tag_lock(step.tag, waiting):
        made: tuple[str, ...] = ()
        if containers.engine.image_exists(step.tag):
            how = "reused from the engine"
        elif found := (registries.find(entry) if found is None else found):
            registries.pull(containers.engine, entry, found)
            how = f"pulled from {found}"
        else:
            names = ", ".join(rel for rel, _ in step.files)
            reporter(Event("step", f"Installing {names} into {step.tag}"))
            containers.inject(containers.plan.request.ca_bundle)
            made = _make_dependency_layer(containers, registries, step, source, reporter)
            if step.tag not in made:
                return "", False, made
            how = "installed here"
        reporter(cache.origin(step.tag, how, registries.push(containers.engine, entry)))
        return step.tag, not made, made


def _make_dependency_layer(
    containers: assemble.Containers,
    registries: Cache,
    step: DepsStep,
    source: Source,
    reporter: Reporter,
) -> tuple[str, ...]:
    """The cache images made; without step.tag among them when the layer failed
    and the build falls back to one step."""
    made: tuple[str, ...] = ()
    try:
        if step.apt is not None:
            made = _apt_layer(containers, registries, step, reporter)
        assemble.deps_layer(containers, step, source, reporter)
    except BuildError as exc:
        # nbs2i's builder knows the deps phase: its failure is the user's to see.
        # Another S2I builder may need the whole source: build in one step.
        if step.builder_knows_phase or step.apt is not None:
            raise
        reporter(
            Event(
                "warning",
                f"the dependency layer failed ({exc.problem}); this builder may not know "
                f"{plan.PHASE_VAR}: building in one step (--no-dependency-layer skips the "
                "attempt)",
            )
        )
        return made
    return (*made, step.tag)


def _apt_layer(
    containers: assemble.Containers, registries: Cache, step: DepsStep, reporter: Reporter
) -> tuple[str, ...]:
    """The Debian packages' layer, unless it exists or is in the cache; another
    dependency layer may need the same packages at the same time."""
    entry = cache.apt_entry(step)
    assert entry is not None and step.apt is not None
    with tagging.tag_lock(step.apt.tag):
        made: tuple[str, ...] = ()
        if containers.engine.image_exists(step.apt.tag):
            how = "reused from the engine"
        elif found := registries.find(entry):
            registries.pull(containers.engine, entry, found)
            how = f"pulled from {found}"
        else:
            assemble.apt_layer(containers, step, reporter)
            made, how = (step.apt.tag,), "installed here"
        reporter(cache.origin(step.apt.tag, how, registries.push(containers.engine, entry)))
        return made


def _without_deps(the_plan: BuildPlan) -> BuildPlan:
    """The plan once the dependency layer fell back to one step: assemble runs on
    the builder."""
    config = image_config(
        the_plan.builder_config,
        cmd=(the_plan.run.path,),
        env=the_plan.env,
        extra=the_plan.labels,
    )
    return replace(
        the_plan,
        deps=None,
        layer=None,
        why_assemble="the dependency layer failed",
        config=config,
        incremental=the_plan.request.incremental,
    )


def _notebooks(
    containers: assemble.Containers, the_plan: BuildPlan, source: Source, reporter: Reporter
) -> tuple[str, str, bool]:
    """(image id, "layer" or "assemble", whether artifacts were used)."""
    engine, req = containers.engine, the_plan.request
    if the_plan.layer is not None:
        reporter(
            Event(
                "step",
                f"Writing the notebook layer into {the_plan.layer.notebook_dir} as "
                f"{load.written_as(engine.kind, engine.keeps_manifests)} (assemble would only "
                "move the files there; --always-assemble runs it)",
            )
        )
        try:
            image_id = tagging.replace(
                engine, req.tag, lambda: layer.write_image(engine, the_plan, source)
            )
            return image_id, "layer", False
        except layer.LoadRefused as exc:
            reporter(
                Event(
                    "warning",
                    f"the engine refused the image nbs2i wrote ({exc.problem}); "
                    "running assemble instead",
                )
            )
    previous = tagging.current(engine, req.tag) if the_plan.incremental else ""
    if not containers.mounts:
        containers.inject(req.ca_bundle)
    cid, used = assemble.assemble_image(containers, source, previous, reporter)
    reporter(Event("step", f"Committing {req.tag}"))
    image_id = tagging.replace(
        engine, req.tag, lambda: commit(engine, cid, req.tag, the_plan.config, "nbs2i build")
    )
    return image_id, "assemble", used


def _mention_leftovers(engine: Docker, reporter: Reporter) -> None:
    """One line when earlier runs that died left things behind."""
    with suppress(EngineError, OSError):
        found = find_orphans(engine)
        if found:
            reporter(
                Event(
                    "warning",
                    f"{len(found)} leftovers of interrupted nbs2i runs are in the engine or "
                    "the temp directory; `nbs2i prune` removes them",
                )
            )


def usage(engine: Docker, image: str, container_labels: dict[str, str] | None = None) -> str:
    """The output of an image's usage script (`nbs2i usage`)."""
    return assemble.run_usage(engine, image, container_labels or {})
