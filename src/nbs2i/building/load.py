"""An image nbs2i wrote, handed to the engine: one `docker load` archive that
every engine takes, holding the manifest, the config and the new layer (none,
when only the config is new). The lower layers are named, not shipped: the
engine has them.

The archive is an OCI image layout, which the containerd image store and
podman read, with a Docker `manifest.json` over the same blobs, which the
classic store reads. What the engines differ in (`Docker.keeps_manifests`):

- how the lower layers must be named: by diff id on the classic store and
  podman; on the containerd store as its own manifest of the base names them
  (often compressed), or a later save or push of the image misses them. That
  manifest is read once per base (`Docker.image_manifest`) and kept on disk;
- the image's id: the config's digest, or on the containerd store the
  manifest's. The load is checked against exactly that id, so the engine holds
  the bytes nbs2i wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nbs2i.archive import CHUNK, TarFile, files_tar
from nbs2i.engine import Docker, ImageInfo
from nbs2i.engine.types import store_words
from nbs2i.errors import EngineError
from nbs2i.localcache import cache_dir
from nbs2i.reference import registry_host, split

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
BLOBS = "blobs/sha256/"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


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


def written_as(kind: str, keeps_manifests: bool) -> str:
    """How a written image reaches an engine of this kind and store, in a few words."""
    how = "its manifest of the base" if keeps_manifests else "diff id"
    return f"an OCI archive for {store_words(kind, keeps_manifests)}, lower layers named by {how}"


def load(
    engine: Docker, tag: str, config: bytes, lower: Sequence[Descriptor], layer: Layer | None
) -> str:
    """Load the image as `tag`: the engine's id for it, which must be the one
    this config (or, on the containerd store, this manifest) gives."""
    manifest = manifest_json(config, lower, layer)
    try:
        engine.load_image(_chunked(load_archive(tag, config, manifest, lower, layer)))
    except EngineError as exc:
        raise LoadRefused(exc.problem, exc.fix) from exc
    expected = digest(manifest if engine.keeps_manifests else config)
    loaded = engine.inspect_image(tag).id
    if loaded != expected:
        raise LoadRefused(f"the engine made {loaded[:19]} of the image {expected[:19]}")
    return loaded


def manifest_json(config: bytes, lower: Sequence[Descriptor], layer: Layer | None) -> bytes:
    """The OCI image manifest: the config, the lower layers, the new layer."""
    layers = (*lower, layer.descriptor) if layer else tuple(lower)
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": Descriptor(CONFIG_TYPE, digest(config), len(config)).to_json(),
        "layers": [d.to_json() for d in layers],
    }
    return canonical(document)


def load_archive(
    tag: str, config: bytes, manifest: bytes, lower: Sequence[Descriptor], layer: Layer | None
) -> Iterator[bytes]:
    """A `docker load` archive that every engine takes: an OCI image layout (what
    the containerd store and podman read) and a Docker `manifest.json` (what the
    classic store reads) over the same blobs: the manifest, the config and the
    new layer."""
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                **Descriptor(MANIFEST_TYPE, digest(manifest), len(manifest)).to_json(),
                "annotations": {
                    "io.containerd.image.name": full_name(tag),
                    "org.opencontainers.image.ref.name": split(tag)[1],
                },
            }
        ],
    }
    layers = (*lower, layer.descriptor) if layer else tuple(lower)
    docker_manifest = [
        {
            "Config": _blob(digest(config)),
            "RepoTags": [tag],
            "Layers": [_blob(d.digest) for d in layers],
        }
    ]
    files = [
        TarFile("oci-layout", data=OCI_LAYOUT),
        TarFile("index.json", data=canonical(index)),
        TarFile(_blob(digest(manifest)), data=manifest),
        TarFile(_blob(digest(config)), data=config),
    ]
    if layer:
        files.append(TarFile(_blob(layer.diff_id), path=layer.path))
    files.append(TarFile("manifest.json", data=canonical(docker_manifest)))
    return files_tar(files, uid=0)


def full_name(tag: str) -> str:
    """The name as the containerd store and podman keep it from an OCI layout:
    `x:t` is `docker.io/library/x:t`, `org/x:t` is `docker.io/org/x:t`, and a
    name with a registry host stays as it is."""
    repository, label = split(tag)
    first, _, rest = repository.partition("/")
    if not rest:
        repository = f"docker.io/library/{repository}"
    elif first == "docker.io" and "/" not in rest:
        repository = f"docker.io/library/{rest}"
    elif not registry_host(repository):
        repository = f"docker.io/{repository}"
    return f"{repository}:{label}"


# -- the lower layers ----------------------------------------------------------------


def lower_layers(engine: Docker, image: ImageInfo) -> tuple[Descriptor, ...]:
    """The layers of `image` (in the engine) as a manifest over them must name
    them on this engine."""
    if not engine.keeps_manifests:
        return by_diff_id(image.layers)
    known = _known_layers(image)
    return known if known is not None else stored_layers(engine, image)


def by_diff_id(diff_ids: Sequence[str]) -> tuple[Descriptor, ...]:
    """Layers named by their diff ids, which is how the classic store and podman
    find the layers they have. Their size is unknown here (-1, as
    containers/image writes it): neither reads it."""
    return tuple(Descriptor(LAYER_TYPE, diff_id, -1) for diff_id in diff_ids)


def stored_layers(engine: Docker, image: ImageInfo) -> tuple[Descriptor, ...]:
    """The layers of `image` as the manifest the engine keeps for it names them;
    kept on disk under the image's id (a digest of that manifest, or of its
    index), so the engine is asked once."""
    try:
        manifest = engine.image_manifest(image.id)
    except EngineError as exc:
        raise LoadRefused(f"cannot read the manifest of {image.id[:19]}: {exc.problem}") from exc
    found = _descriptors(manifest, len(image.layers))
    if found is None:
        raise LoadRefused(
            f"the manifest of {image.id[:19]} does not name its {len(image.layers)} layers"
        )
    _remember(image, found)
    return found


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


def _cache_file(image: ImageInfo) -> Path:
    return cache_dir("manifests", image.id.removeprefix("sha256:") + ".json")


def _known_layers(image: ImageInfo) -> tuple[Descriptor, ...] | None:
    """The layers as the engine's manifest names them, when learnt before."""
    try:
        return _descriptors(_cache_file(image).read_bytes(), len(image.layers))
    except OSError:
        return None


def _remember(image: ImageInfo, layers: Sequence[Descriptor]) -> None:
    path = _cache_file(image)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(canonical({"layers": [d.to_json() for d in layers]}))
        os.replace(partial, path)


# -- bytes ---------------------------------------------------------------------------


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: object) -> bytes:
    """JSON as nbs2i writes every document it hashes: sorted, no spaces."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _blob(of: str) -> str:
    return BLOBS + of.removeprefix("sha256:")


def _chunked(stream: Iterator[bytes]) -> Iterator[bytes]:
    """Chunks of at most CHUNK bytes (the upload's buffer stays small)."""
    for chunk in stream:
        for start in range(0, len(chunk), CHUNK):
            yield chunk[start : start + CHUNK]
