"""The manifest an engine keeps for an image, found in the OCI layout a
containerd store's `docker save` writes: the read stops at its blob."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator

import pytest

from nbs2i.engine import ImageConfig, ImageInfo
from nbs2i.engine.manifests import BLOBS, manifest_in_save
from nbs2i.errors import EngineError


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def oci_save(blobs: list[bytes], top: str) -> list[tuple[str, bytes]]:
    """A save as the containerd store writes it: blobs in digest order, then the index."""
    found = [(BLOBS + digest(b).removeprefix("sha256:"), b) for b in blobs]
    index = {"schemaVersion": 2, "manifests": [{"digest": top, "size": 0}]}
    return [*sorted(found), ("index.json", json.dumps(index).encode())]


def chunks(data: bytes, read: list[int]) -> Iterator[bytes]:
    for start in range(0, len(data), 512):
        read.append(start)
        yield data[start : start + 512]


def test_the_base_manifest_is_found_and_the_read_stops_there() -> None:
    manifest = json.dumps({"layers": [{"digest": "sha256:" + "4" * 64}]}).encode()
    big = b"x" * (1 << 20)  # a layer: its digest sorts after the manifest's here
    saved = oci_save([manifest, big], digest(manifest))
    assert digest(manifest) < digest(big)
    data, read = tar_of(saved), []
    base = ImageInfo(digest(manifest), (), ImageConfig())
    assert manifest_in_save(chunks(data, read), base) == manifest
    assert len(read) * 512 < len(data) / 2, "read on past the manifest"


def test_an_index_leads_to_the_manifest_of_the_base_platform() -> None:
    arm = json.dumps({"layers": [], "for": "arm64"}).encode()
    amd = json.dumps({"layers": [], "for": "amd64"}).encode()
    index = json.dumps(
        {
            "manifests": [
                {"digest": digest(arm), "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": digest(amd), "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }
    ).encode()
    base = ImageInfo(digest(index), (), ImageConfig(), architecture="amd64", os="linux")
    found = manifest_in_save(iter([tar_of(oci_save([arm, amd, index], digest(index)))]), base)
    assert found == amd


def test_a_save_without_the_manifest_is_refused() -> None:
    """A classic store's save (a Docker archive) names no manifest by digest."""
    saved = tar_of([("manifest.json", b"[]"), ("abc/layer.tar", b"")])
    base = ImageInfo("sha256:" + "5" * 64, (), ImageConfig())
    with pytest.raises(EngineError):
        manifest_in_save(iter([saved]), base)
