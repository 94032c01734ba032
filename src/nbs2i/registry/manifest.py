"""Manifests and image configs as a registry holds them. Pure: bytes in, values out.

Two manifest formats carry one image: Docker's v2 schema 2 and OCI's. A new
image is written in its base's format, so every layer descriptor of the base
is kept byte for byte and the media types never mix. A tag may name an index
(a manifest list): the entry for this machine's platform is the image.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nbs2i.engine import HistoryEntry, ImageConfig, ImageInfo
from nbs2i.errors import RegistryError
from nbs2i.reference import DIGEST

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPTED = (*IMAGE_MANIFESTS, *INDEXES)
# Layers a registry does not hold (Windows' foreign layers): never mounted or copied.
_FOREIGN = ("foreign", "nondistributable")
# (config media type, new layer's media type) for each manifest format.
FORMATS = {
    DOCKER_MANIFEST: (DOCKER_CONFIG, DOCKER_LAYER_GZIP),
    OCI_MANIFEST: (OCI_CONFIG, OCI_LAYER_GZIP),
}
# Bounds on what a registry may send back: a manifest (the distribution
# project's own limit) and an image config.
MANIFEST_MAX = 4 << 20
CONFIG_MAX = 8 << 20
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}
# An absent time, as Go's zero time reads in whole seconds.
_NO_TIME = -62135596800
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    raw: Mapping[str, Any]  # as the registry wrote it: written back unchanged

    @property
    def foreign(self) -> bool:
        return any(word in self.media_type for word in _FOREIGN)


@dataclass(frozen=True)
class Manifest:
    """An image manifest (not an index)."""

    media_type: str
    digest: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        found = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{what} is not JSON") from None
    if not isinstance(found, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return found


def media_type(data: dict[str, Any], header: str) -> str:
    """A manifest's media type: its own field, else the Content-Type it came with."""
    found = str(data.get("mediaType") or header.partition(";")[0].strip())
    if found not in ACCEPTED:
        raise RegistryError(f"the registry sent a manifest of type {found!r}")
    return found


def descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise RegistryError(f"{what} is not a descriptor")
    digest, size = str(raw.get("digest") or ""), raw.get("size")
    if not DIGEST.fullmatch(digest) or not isinstance(size, int) or size < 0:
        raise RegistryError(f"{what} has no sha256 digest and size")
    return Descriptor(str(raw.get("mediaType") or ""), digest, size, raw)


def parse_manifest(data: bytes, digest: str, kind: str) -> Manifest:
    document = parse_json(data, "the manifest")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise RegistryError("the manifest lists no layers")
    return Manifest(
        media_type=kind,
        digest=digest,
        config=descriptor(document.get("config"), "the manifest's config"),
        layers=tuple(descriptor(item, "a layer of the manifest") for item in layers),
    )


def this_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _ARCHITECTURES.get(machine, machine)


def pick_platform(data: bytes, wanted: tuple[str, str]) -> str:
    """The digest of the entry of an index for (os, architecture)."""
    document = parse_json(data, "the manifest list")
    for entry in document.get("manifests") or ():
        if not isinstance(entry, dict):
            continue
        found = entry.get("platform") or {}
        if (found.get("os"), found.get("architecture")) == wanted:
            return descriptor(entry, "an entry of the manifest list").digest
    raise RegistryError(f"the manifest list has no image for {'/'.join(wanted)}")


def compose(base: Manifest, config: Descriptor, layer: Descriptor) -> bytes:
    """The manifest of `base` plus one layer, with a new config, in base's format."""
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": base.media_type}
    document["config"] = dict(config.raw)
    document["layers"] = [dict(d.raw) for d in base.layers] + [dict(layer.raw)]
    return json.dumps(document, indent=3).encode()


def new_descriptor(media: str, data_digest: str, size: int) -> Descriptor:
    raw = {"mediaType": media, "size": size, "digest": data_digest}
    return Descriptor(media, data_digest, size, raw)


# -- the image config --------------------------------------------------------------


def image_info(config: bytes, digest: str) -> ImageInfo:
    """The engine's view of an image, from its config in a registry: the same
    values `docker inspect` gives once it is pulled (its id is the config's
    digest, as on Docker's classic store and podman)."""
    document = parse_json(config, "the image config")
    rootfs = document.get("rootfs") or {}
    return ImageInfo(
        id=digest,
        tags=(),
        config=ImageConfig.from_api(document.get("config") or {}),
        layers=tuple(str(d) for d in rootfs.get("diff_ids") or ()),
        created=str(document.get("created") or ""),
        architecture=str(document.get("architecture") or ""),
        os=str(document.get("os") or ""),
    )


def history(config: bytes) -> list[HistoryEntry]:
    """The config's history as an engine's history answer gives it: newest
    first, times in whole seconds, a step that made no layer with size 0."""
    document = parse_json(config, "the image config")
    found = []
    for item in document.get("history") or ():
        if not isinstance(item, dict):
            continue
        found.append(
            HistoryEntry(
                created=epoch(str(item.get("created") or "")),
                created_by=str(item.get("created_by") or ""),
                comment=str(item.get("comment") or ""),
                size=0 if item.get("empty_layer") else 1,
            )
        )
    return list(reversed(found))


def epoch(text: str) -> int:
    """Whole seconds of an RFC 3339 time (fractions dropped, as an engine does)."""
    match = _TIME.match(text)
    if not match:
        return _NO_TIME
    zone = "+00:00" if match.group(2) == "Z" else match.group(2)
    return int(datetime.fromisoformat(match.group(1) + zone).astimezone(UTC).timestamp())
