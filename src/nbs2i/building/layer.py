"""Write the notebook layer and the image config, and hand the engine only those.

When assemble would only move the notebooks into place, the new layer is just
files with known owners (the assemble user, group 0), modes (group = user),
and times (clamped to the commit time), below directories whose owners and
modes the builder declares. So nbs2i writes it: a sorted, deterministic tar;
its sha256 is the layer's diff id; the config is the base image's, with the
new layer, the build's CMD, environment and labels, and `created` set to the
commit time. The engine receives a `docker load` archive holding the manifest,
the config and this one layer. The lower layers are named in the manifest but
not shipped: an engine loading an image reuses every layer it already has (the
base is in it), so no container is created, nothing is committed, and
building the same commit twice gives the same image, with the same config
digest on every engine.

One archive suits every engine: an OCI image layout, which the containerd
image store and podman read, and a Docker `manifest.json` over the same
blobs, which the classic store reads. What the engines differ in: the image id
(the config's digest; on the containerd store the manifest's), and how the
lower layers must be named (by diff id for the classic store and podman; on the
containerd store as its own manifest of the base names them, often
compressed, or a later save or push of the image misses them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbs2i import labels
from nbs2i.archive import CHUNK, TarFile, files_tar, readable, tar_stream
from nbs2i.building.plan import BuildPlan, LayerPlan
from nbs2i.engine import Docker, HistoryEntry, ImageInfo
from nbs2i.errors import EngineError
from nbs2i.image import created
from nbs2i.reference import split
from nbs2i.source import Source

LAYER_PREFIX = "nbs2i-layer-"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
BLOBS = "blobs/sha256/"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
# Bounds on reading a base's manifest from a save: a blob larger than this is a
# layer, and an index of indexes deeper than this is not followed.
MAX_MANIFEST = 4 << 20
MAX_INDEX_DEPTH = 3


class LoadRefused(EngineError):
    """The engine did not take the image as written; the container path can."""


@dataclass(frozen=True)
class Descriptor:
    """A blob as an OCI manifest names it."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer:
    path: Path  # the layer tar, on disk while the image is loaded
    diff_id: str  # sha256:... of the tar
    size: int

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(LAYER_TYPE, self.diff_id, self.size)


def write_layer(plan: BuildPlan, layer: LayerPlan, source: Source, into: Path) -> Layer:
    """The notebook layer as a tar file in `into`, hashed as it is written."""
    digest = hashlib.sha256()
    size = 0
    path = into / "layer.tar"
    with path.open("wb") as out:
        for chunk in tar_stream(
            source.root,
            uid=plan.uid,
            epoch=source.epoch,
            prefix=layer.notebook_dir.lstrip("/"),
            excludes=layer.excludes,
            dirs=layer.dirs,
        ):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return Layer(path, f"sha256:{digest.hexdigest()}", size)


def history(entries: list[HistoryEntry]) -> list[dict[str, object]]:
    """The base's history, oldest first, in the config's own shape. A step that
    added no bytes is marked as making no layer."""
    found: list[dict[str, object]] = []
    for entry in reversed(entries):
        item: dict[str, object] = {
            "created": created(entry.created) or created(0),
            "created_by": entry.created_by,
        }
        if entry.comment:
            item["comment"] = entry.comment
        if entry.size == 0:
            item["empty_layer"] = True
        found.append(item)
    return found


def image_json(
    plan: BuildPlan, base: ImageInfo, base_history: list[HistoryEntry], layer: Layer, epoch: int
) -> bytes:
    """The image config file, canonical JSON: its sha256 is the image id."""
    when = created(epoch)
    document = {
        "architecture": base.architecture or "amd64",
        "os": base.os or "linux",
        "config": plan.config.to_api(),
        "created": when,
        "history": [
            *history(base_history),
            {
                "created": when,
                "created_by": f"nbs2i build {plan.labels.get(labels.BUILD_SOURCE_LOCATION, '')}",
                "comment": "notebooks placed by nbs2i",
            },
        ],
        "rootfs": {"type": "layers", "diff_ids": [*base.layers, layer.diff_id]},
    }
    return _canonical(document)


def manifest_json(config: bytes, lower: Sequence[Descriptor], layer: Layer) -> bytes:
    """The OCI image manifest: the config, the base's layers, the new layer."""
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": Descriptor(CONFIG_TYPE, _digest(config), len(config)).to_json(),
        "layers": [d.to_json() for d in (*lower, layer.descriptor)],
    }
    return _canonical(document)


def load_archive(
    tag: str, config: bytes, manifest: bytes, lower: Sequence[Descriptor], layer: Layer
) -> Iterator[bytes]:
    """A `docker load` archive that every engine takes: an OCI image layout (what
    the containerd store and podman read) and a Docker `manifest.json` (what the
    classic store reads) over the same blobs: the manifest, the config and the
    new layer. The lower layers are named, not shipped."""
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                **Descriptor(MANIFEST_TYPE, _digest(manifest), len(manifest)).to_json(),
                "annotations": {
                    "io.containerd.image.name": full_name(tag),
                    "org.opencontainers.image.ref.name": split(tag)[1],
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": _blob(_digest(config)),
            "RepoTags": [tag],
            "Layers": [_blob(d.digest) for d in (*lower, layer.descriptor)],
        }
    ]
    return files_tar(
        [
            TarFile("oci-layout", data=OCI_LAYOUT),
            TarFile("index.json", data=_canonical(index)),
            TarFile(_blob(_digest(manifest)), data=manifest),
            TarFile(_blob(_digest(config)), data=config),
            TarFile(_blob(layer.diff_id), path=layer.path),
            TarFile("manifest.json", data=_canonical(docker_manifest)),
        ],
        uid=0,
    )


def full_name(tag: str) -> str:
    """The name as the containerd store and podman keep it from an OCI layout:
    `x:t` is `docker.io/library/x:t`, `org/x:t` is `docker.io/org/x:t`, and a
    name with a registry host stays as it is."""
    repository, label = split(tag)
    first, _, rest = repository.partition("/")
    has_host = "." in first or ":" in first or first == "localhost" or first.startswith("[")
    if not rest:
        repository = f"docker.io/library/{repository}"
    elif first == "docker.io" and "/" not in rest:
        repository = f"docker.io/library/{rest}"
    elif not has_host:
        repository = f"docker.io/{repository}"
    return f"{repository}:{label}"


def by_diff_id(diff_ids: Sequence[str]) -> tuple[Descriptor, ...]:
    """Lower layers named by their diff ids, which is how the classic store and
    podman find the layers they have. Their size is unknown here (-1, as
    containers/image writes it): neither reads it."""
    return tuple(Descriptor(LAYER_TYPE, diff_id, -1) for diff_id in diff_ids)


def write_image(engine: Docker, plan: BuildPlan, source: Source) -> str:
    """Write and load the image; the engine's id for it (the config's digest, or
    the manifest's on the containerd store). LoadRefused when the engine does not
    end up with exactly that image."""
    assert plan.layer is not None
    base = engine.inspect_image(plan.base)
    base_history = engine.history(base.id)
    epoch = source.epoch if source.epoch is not None else int(time.time())
    tag = plan.request.tag
    with tempfile.TemporaryDirectory(prefix=f"{LAYER_PREFIX}{os.getpid()}-") as tmp:
        layer = write_layer(plan, plan.layer, source, Path(tmp))
        config = image_json(plan, base, base_history, layer, epoch)
        known = _known_layers(base)
        loaded, manifest_id = _load(engine, tag, config, known or by_diff_id(base.layers), layer)
        if loaded == manifest_id and known is None:
            # The engine keeps manifests and their blobs (the containerd store):
            # the lower layers must be named as its own manifest of the base names
            # them (often compressed), or a later save or push of the image misses
            # them. Learnt once per base.
            first = loaded
            try:
                loaded, _ = _load(engine, tag, config, stored_layers(engine, base), layer)
            except LoadRefused:
                with contextlib.suppress(EngineError):
                    engine.remove_image(tag)  # the first one, whose save would miss layers
                raise
            if first != loaded:
                with contextlib.suppress(EngineError):
                    engine.remove_image(first)
    return loaded


def _load(
    engine: Docker, tag: str, config: bytes, lower: Sequence[Descriptor], layer: Layer
) -> tuple[str, str]:
    """Load the image as `tag`; (the engine's id for it, the manifest's digest)."""
    manifest = manifest_json(config, lower, layer)
    try:
        engine.load_image(_chunked(load_archive(tag, config, manifest, lower, layer)))
    except EngineError as exc:
        raise LoadRefused(exc.problem, exc.fix) from exc
    loaded = engine.inspect_image(tag).id
    if loaded not in (_digest(config), _digest(manifest)):
        raise LoadRefused(f"the engine made {loaded[:19]} of the image {_digest(config)[:19]}")
    return loaded, _digest(manifest)


# -- the lower layers as the containerd store names them ------------------------------
#
# The engine API has no call that returns an image's manifest; a `docker save`
# of the base holds it (blobs in digest order, so the read stops at the
# manifest's). The answer depends only on the base's id, a digest of that
# manifest (or of its index), so it is kept on disk.


def stored_layers(engine: Docker, base: ImageInfo) -> tuple[Descriptor, ...]:
    """The base's layers as the manifest the engine keeps for it names them."""
    try:
        manifest = saved_manifest(engine.export_image(base.id), base)
    except EngineError as exc:
        raise LoadRefused(f"cannot read the manifest of {base.id[:19]}: {exc.problem}") from exc
    found = _descriptors(manifest, len(base.layers))
    if found is None:
        raise LoadRefused(
            f"the manifest of {base.id[:19]} does not name its {len(base.layers)} layers"
        )
    _remember(base, found)
    return found


def saved_manifest(stream: Iterator[bytes], base: ImageInfo) -> bytes:
    """The manifest of `base` (for its platform, when its id names an index) in
    the OCI layout of a `docker save` stream."""
    blobs: dict[str, bytes] = {}
    with tarfile.open(fileobj=readable(stream), mode="r|") as archive:
        for member in archive:
            if not (member.isfile() and member.name.startswith(BLOBS)):
                continue
            if member.size > MAX_MANIFEST:
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            digest = "sha256:" + member.name[len(BLOBS) :]
            blobs[digest] = handle.read()
            found = _manifest_in(blobs, base.id, base)
            if found is not None:
                return found
    raise LoadRefused(f"the engine's save of {base.id[:19]} holds no manifest for it")


def _manifest_in(blobs: Mapping[str, bytes], digest: str, base: ImageInfo) -> bytes | None:
    """The platform's manifest under `digest` when the blobs read so far hold it."""
    for _ in range(MAX_INDEX_DEPTH):
        data = blobs.get(digest)
        if data is None:
            return None
        document = json.loads(data)
        if "manifests" not in document:
            return data
        digest = _platform_entry(document, base)
    return None


def _platform_entry(index: Mapping[str, Any], base: ImageInfo) -> str:
    for entry in index.get("manifests") or ():
        platform = entry.get("platform") or {}
        if (
            platform.get("os", base.os) == base.os
            and platform.get("architecture", base.architecture) == base.architecture
        ):
            return str(entry.get("digest") or "")
    return ""


def _descriptors(manifest: bytes, count: int) -> tuple[Descriptor, ...] | None:
    """The manifest's layers, or None when they are not `count` well-formed ones."""
    try:
        layers = json.loads(manifest)["layers"]
        found = tuple(
            Descriptor(str(d["mediaType"]), str(d["digest"]), int(d["size"])) for d in layers
        )
    except (ValueError, KeyError, TypeError):
        return None
    return found if len(found) == count else None


def _cache_file(base: ImageInfo) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "nbs2i" / "manifests" / (base.id.removeprefix("sha256:") + ".json")


def _known_layers(base: ImageInfo) -> tuple[Descriptor, ...] | None:
    """The base's layers as its engine's manifest names them, when learnt before."""
    try:
        return _descriptors(_cache_file(base).read_bytes(), len(base.layers))
    except OSError:
        return None


def _remember(base: ImageInfo, layers: Sequence[Descriptor]) -> None:
    path = _cache_file(base)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(_canonical({"layers": [d.to_json() for d in layers]}))
        os.replace(partial, path)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(digest: str) -> str:
    return BLOBS + digest.removeprefix("sha256:")


def _canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _chunked(stream: Iterator[bytes]) -> Iterator[bytes]:
    """Chunks of at most CHUNK bytes (the upload's buffer stays small)."""
    for chunk in stream:
        for start in range(0, len(chunk), CHUNK):
            yield chunk[start : start + CHUNK]
