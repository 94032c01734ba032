"""A build with no engine: the notebook layer and the config put straight into
the registry, as jib, ko and `crane append` do.

When nbs2i would write the notebook layer itself anyway (plan.py's `layer`),
an engine only stores what nbs2i wrote. With `--push` and no engine, nbs2i
then does the rest against the registry:

1. the builder's manifest and config are read from its registry
   (`--builder REGISTRY/...`); the plan is made from the values an engine
   would report for it (its id is its config's digest), so it is the plan the
   engine path makes, with the same dependency-layer key;
2. the dependency layer, when there is one, must be a `--cache-from` entry;
3. `decide` (pure, before anything is uploaded) says whether this build can
   go without an engine, else why not and what to do;
4. the layer and the config are written by the engine path's own functions
   (`layer.write_layer`, `layer.image_json`): the same config bytes, so the
   same config digest, as an engine build of that commit;
5. the base's layers the target repository lacks are mounted from the base's
   repository (HEAD first), or copied when it lives in another registry; then
   the new layer (gzip; the config names it by its uncompressed digest, so
   the compression changes no config byte), the config, and the manifest, in
   the base's format, written under the tag last.

An interrupted push leaves at most blobs that no manifest names, which the
registry's garbage collection removes; the tag moves only with the last
request, to a manifest whose blobs are all there.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nbs2i import labels
from nbs2i.builder import shipped_assemble_digest
from nbs2i.building import cache, layer, plan, request
from nbs2i.building.cache import Cache
from nbs2i.building.plan import BuildPlan
from nbs2i.building.request import BuildRequest, BuildResult
from nbs2i.engine import ImageInfo
from nbs2i.errors import NeedsEngine, RegistryError
from nbs2i.progress import Event, Reporter, silent
from nbs2i.reference import ImageRef
from nbs2i.registry import Repository, manifest
from nbs2i.registry.manifest import Descriptor, Manifest
from nbs2i.source import Source, open_source, redact

FIX = (
    "run the build where an engine answers (with --cache-to REPO it fills the cache "
    "for the next runner), or build `nbs2i build --as-dockerfile DIR` with buildah or kaniko"
)
GZIP_LEVEL = 6


@dataclass(frozen=True)
class RemoteImage:
    """An image as a registry holds it: where, its manifest, its config."""

    ref: str
    repository: Repository
    manifest: Manifest
    config: bytes

    @property
    def info(self) -> ImageInfo:
        return manifest.image_info(self.config, self.manifest.config.digest)


# -- the decision (pure) -------------------------------------------------------------


def request_needs_engine(req: BuildRequest) -> str:
    """Why this request needs an engine whatever the source holds; "" when it may not."""
    reasons = (
        (
            not req.builder,
            "the default builder is made by an engine on first use; push it "
            "once and give --builder REGISTRY/NAME:TAG",
        ),
        (req.pull_policy == "never", "--pull-policy never takes the builder from an engine"),
        (req.always_assemble, "--always-assemble runs assemble in a container"),
        (req.incremental, "--incremental runs save-artifacts and assemble in containers"),
        (bool(req.injections), "--inject mounts files into an assemble container"),
    )
    return next((why for applies, why in reasons if applies), "")


def decide(the_plan: BuildPlan, cache_hit: str) -> str:
    """The image the notebook layer goes on (the builder, or the dependency
    layer's cache entry); NeedsEngine, saying why, when only an engine can build it."""
    if the_plan.layer is None:
        raise NeedsEngine(
            f"no engine answers, and {the_plan.why_assemble}: assemble must run in a container", FIX
        )
    step = the_plan.deps
    if step is not None and not cache_hit:
        where = ", ".join(the_plan.request.cache_from) or "no --cache-from was given"
        raise NeedsEngine(
            f"no engine answers, and the dependency layer {cache.deps_entry(step).tag()} "
            f"(pip, apt) is not in the cache ({where})",
            FIX,
        )
    return cache_hit or the_plan.builder


def onto_cache_entry(the_plan: BuildPlan, local: bool, hit: str) -> bool:
    """With an engine: whether to build in the registry instead, on the
    dependency layer's cache entry, rather than pull it. Only for a push that
    nothing here needs (no --test, no --run), when nbs2i writes the notebook
    layer, the layer is not in this engine, and the entry is already where
    --cache-to would put it: a new CI runner then sends its notebook layer
    alone, as a runner with no engine does."""
    req, step = the_plan.request, the_plan.deps
    wanted = req.push and req.test is None and not req.then_run
    if not wanted or the_plan.layer is None or step is None or local or not hit:
        return False
    return not req.cache_to or hit == cache.deps_entry(step).ref(req.cache_to)


def build_on_entry(
    registries: Cache, the_plan: BuildPlan, hit: str, source: Source, reporter: Reporter
) -> tuple[str, str]:
    """The image built in the registry on the cache entry `hit` (see
    `onto_cache_entry`): (its id, the pushed reference pinned by digest)."""
    assert the_plan.deps is not None
    base = _cache_entry(registries, the_plan, hit)
    how = f"used from {hit}, in the registry (not pulled: the image is built there)"
    reporter(cache.origin(the_plan.deps.tag, how))
    return _write_and_push(registries, the_plan, base, source, reporter)


# -- the build -----------------------------------------------------------------------


def build(req: BuildRequest, reporter: Reporter = silent) -> BuildResult:
    """Build `req` straight into its registry; see the module docstring."""
    from nbs2i.building import finish, read_source

    started = time.monotonic()
    request.check(req)
    why = request_needs_engine(req)
    if why:
        raise NeedsEngine(f"no engine answers, and {why}", FIX)
    with Cache(req, reporter) as registries:
        reporter(Event("step", f"Reading the builder {req.builder} from its registry"))
        builder = read_image(registries, req.builder)
        reporter(Event("step", f"Fetching source {redact(req.source)}"))
        with open_source(req.source, ref=req.ref, context_dir=req.context_dir) as source:
            facts = read_source(req, source, dict(builder.info.config.labels))
            the_plan = plan.plan(req, req.builder, builder.info, facts, shipped_assemble_digest())
            hit = registries.find(cache.deps_entry(the_plan.deps)) if the_plan.deps else ""
            base_ref = decide(the_plan, hit)
            base = builder if base_ref == req.builder else _cache_entry(registries, the_plan, hit)
            if the_plan.deps is not None:
                reporter(cache.origin(the_plan.deps.tag, f"used from {hit}, in the registry"))
            image_id, pushed = _write_and_push(registries, the_plan, base, source, reporter)
    result = BuildResult(
        tag=req.tag,
        image_id=image_id,
        builder=req.builder,
        labels=dict(the_plan.labels),
        deps_image=hit,
        deps_reused=bool(hit),
        method="layer",
        pushed=pushed,
        seconds=round(time.monotonic() - started, 3),
    )
    finish(result, reporter)
    return result


def read_image(registries: Cache, ref: str) -> RemoteImage:
    """An image's manifest and config, from its registry."""
    parsed = ImageRef.parse(ref)
    repository = registries.repository(parsed.repository)
    found = repository.image(parsed.digest or parsed.tag or "latest")
    config = repository.blob(found.config.digest, manifest.CONFIG_MAX)
    image = RemoteImage(ref, repository, found, config)
    if len(image.info.layers) != len(found.layers):
        raise RegistryError(f"{ref}: its config and manifest list different layers")
    return image


def _cache_entry(registries: Cache, the_plan: BuildPlan, ref: str) -> RemoteImage:
    """The dependency layer's cache entry, checked to be the one the plan wants."""
    assert the_plan.deps is not None
    image = read_image(registries, ref)
    found = image.info.config.labels.get(labels.DEPS_KEY, "")
    if found != the_plan.deps.key:
        raise RegistryError(
            f"{ref} is not the dependency layer {the_plan.deps.key} (its label says {found!r})",
            "remove that tag from the cache repository",
        )
    return image


def _write_and_push(
    registries: Cache, the_plan: BuildPlan, base: RemoteImage, source: Source, reporter: Reporter
) -> tuple[str, str]:
    """(the image id, the pushed reference pinned by digest)."""
    assert the_plan.layer is not None
    target_ref = ImageRef.parse(the_plan.request.tag)
    target = registries.repository(target_ref.repository)
    epoch = source.epoch if source.epoch is not None else int(time.time())
    with tempfile.TemporaryDirectory(prefix=f"{layer.LAYER_PREFIX}{os.getpid()}-") as tmp:
        reporter(Event("step", f"Writing the notebook layer into {the_plan.layer.notebook_dir}"))
        written = layer.write_layer(the_plan, the_plan.layer, source, Path(tmp))
        config = layer.image_json(
            the_plan, base.info, manifest.history(base.config), written, epoch
        )
        config_kind, layer_kind = manifest.FORMATS[base.manifest.media_type]
        packed = _gzip(written.path, Path(tmp) / "layer.tar.gz")
        new_layer = manifest.new_descriptor(layer_kind, *packed)
        new_config = manifest.new_descriptor(config_kind, manifest.sha256(config), len(config))
        reporter(Event("step", f"Pushing {target_ref} straight to its registry"))
        counts = _base_layers(target, base, reporter)
        _blob(target, new_layer, Path(tmp) / "layer.tar.gz", reporter)
        _blob(target, new_config, [config], reporter)
        data = manifest.compose(base.manifest, new_config, new_layer)
        digest = target.put_manifest(target_ref.tag or "latest", data)
        for ref in request.also_refs(the_plan.request):
            target.put_manifest(ImageRef.parse(ref).tag, data)
    reporter(
        Event(
            "step",
            f"Pushed {target_ref}: the notebook layer ({new_layer.size} bytes "
            f"compressed), the config and the manifest; {counts}",
        )
    )
    return new_config.digest, str(target_ref.pinned(digest))


def _gzip(path: Path, into: Path) -> tuple[str, int]:
    """The layer compressed (no name, no time: the same bytes each time); its
    digest and size."""
    with (
        path.open("rb") as raw,
        into.open("wb") as out,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=out, mtime=0, compresslevel=GZIP_LEVEL
        ) as packed,
    ):
        shutil.copyfileobj(raw, packed, 1 << 20)
    with into.open("rb") as done:
        digest = hashlib.file_digest(done, "sha256").hexdigest()
    return f"sha256:{digest}", into.stat().st_size


def _base_layers(target: Repository, base: RemoteImage, reporter: Reporter) -> str:
    """Every layer of the base in the target repository: already there, mounted
    from the base's repository, or copied from another registry."""
    counts = {"present": 0, "mounted": 0, "copied": 0}
    same = target.registry is base.repository.registry
    for item in base.manifest.layers:
        if item.foreign:
            continue
        if target.has_blob(item.digest):
            action = "present"
        elif same and target.mount(item.digest, base.repository.name):
            action = "mounted"
        else:
            target.upload(item.digest, base.repository.stream(item.digest))
            action = "copied"
        counts[action] += 1
        _blob_event(reporter, action, item)
    return ", ".join(f"{n} base layers {action}" for action, n in counts.items() if n)


def _blob(
    target: Repository, item: Descriptor, data: Path | list[bytes], reporter: Reporter
) -> None:
    if target.has_blob(item.digest):
        _blob_event(reporter, "present", item)
        return
    target.upload(item.digest, data)
    _blob_event(reporter, "uploaded", item)


def _blob_event(reporter: Reporter, action: str, item: Descriptor) -> None:
    data = {"action": action, "digest": item.digest, "size": item.size}
    reporter(Event("blob", f"{action} {item.digest[:19]} ({item.size} bytes)", data))
