"""The manifest an engine keeps for an image, read from its `docker save`.

The engine API has no call that returns an image's manifest (inspect gives its
digest, on the containerd image store, and the layers' diff ids). A save of
the image holds it: an OCI image layout whose blobs come in digest order, so
the read stops at the manifest's blob and the rest of the image is never
streamed. When the image's id names an index (a multi-platform image), the
entry for the image's own platform is followed.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any

from nbs2i.engine.types import ImageInfo
from nbs2i.errors import EngineError

BLOBS = "blobs/sha256/"
# A blob larger than this is a layer, not a manifest or an index; an index of
# indexes deeper than this is not followed.
MAX_MANIFEST = 4 << 20
MAX_INDEX_DEPTH = 3


def manifest_in_save(stream: Iterable[bytes], image: ImageInfo) -> bytes:
    """The manifest of `image` (for its platform, when its id names an index) in
    the OCI layout of a `docker save` stream; EngineError when it holds none."""
    from nbs2i.archive import readable

    blobs: dict[str, bytes] = {}
    with tarfile.open(fileobj=readable(stream), mode="r|") as archive:
        for member in archive:
            if not (member.isfile() and member.name.startswith(BLOBS)):
                continue
            if member.size > MAX_MANIFEST:
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            blobs["sha256:" + member.name[len(BLOBS) :]] = handle.read()
            found = _manifest_in(blobs, image.id, image)
            if found is not None:
                return found
    raise EngineError(f"the engine's save of {image.id[:19]} holds no manifest for it")


def _manifest_in(blobs: Mapping[str, bytes], digest: str, image: ImageInfo) -> bytes | None:
    """The platform's manifest under `digest` when the blobs read so far hold it."""
    for _ in range(MAX_INDEX_DEPTH):
        data = blobs.get(digest)
        if data is None:
            return None
        try:
            document = json.loads(data)
        except ValueError:
            return None
        if not isinstance(document, dict) or "manifests" not in document:
            return data
        digest = _platform_entry(document, image)
    return None


def _platform_entry(index: Mapping[str, Any], image: ImageInfo) -> str:
    for entry in index.get("manifests") or ():
        platform = entry.get("platform") or {}
        if (
            platform.get("os", image.os) == image.os
            and platform.get("architecture", image.architecture) == image.architecture
        ):
            return str(entry.get("digest") or "")
    return ""
