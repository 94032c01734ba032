"""The `docker load` archive of an image nbs2i wrote, built in memory: an OCI
image layout and a Docker manifest.json over the same three blobs (manifest,
config, new layer; two when only the config is new), the lower layers named and
not shipped."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbs2i.building.load import (
    BLOBS,
    LAYER_TYPE,
    Descriptor,
    Layer,
    by_diff_id,
    full_name,
    load_archive,
    manifest_json,
)

TAG = "course/lectures:2026"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LOWER = by_diff_id(["sha256:" + "1" * 64, "sha256:" + "2" * 64])


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


@pytest.fixture
def layer(tmp_path: Path) -> Layer:
    data = tar_of([("opt/app-root/src/a.ipynb", b"{}")])
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    return Layer(path, digest(data), len(data))


def members(archive: Iterator[bytes]) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive))) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_the_archive_holds_the_manifest_config_and_new_layer_only(layer: Layer) -> None:
    manifest = manifest_json(CONFIG, LOWER, layer)
    found = members(load_archive(TAG, CONFIG, manifest, LOWER, layer))
    blob = {d: BLOBS + d.removeprefix("sha256:") for d in (digest(manifest), digest(CONFIG))}
    assert set(found) == {
        "oci-layout",
        "index.json",
        "manifest.json",
        blob[digest(manifest)],
        blob[digest(CONFIG)],
        BLOBS + layer.diff_id.removeprefix("sha256:"),
    }
    assert json.loads(found["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert found[blob[digest(manifest)]] == manifest
    assert found[blob[digest(CONFIG)]] == CONFIG
    assert digest(found[BLOBS + layer.diff_id.removeprefix("sha256:")]) == layer.diff_id


def test_the_index_names_the_manifest_and_the_tag_as_oci_stores_keep_it(layer: Layer) -> None:
    manifest = manifest_json(CONFIG, LOWER, layer)
    index = json.loads(members(load_archive(TAG, CONFIG, manifest, LOWER, layer))["index.json"])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = index["manifests"]
    assert (entry["digest"], entry["size"]) == (digest(manifest), len(manifest))
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"] == {
        "io.containerd.image.name": "docker.io/course/lectures:2026",
        "org.opencontainers.image.ref.name": "2026",
    }


def test_the_manifest_names_config_lower_layers_and_the_new_layer(layer: Layer) -> None:
    document = json.loads(manifest_json(CONFIG, LOWER, layer))
    assert document["schemaVersion"] == 2
    assert document["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": digest(CONFIG),
        "size": len(CONFIG),
    }
    assert document["layers"] == [
        {"mediaType": LAYER_TYPE, "digest": "sha256:" + "1" * 64, "size": -1},
        {"mediaType": LAYER_TYPE, "digest": "sha256:" + "2" * 64, "size": -1},
        {"mediaType": LAYER_TYPE, "digest": layer.diff_id, "size": layer.size},
    ]


def test_compressed_lower_layers_are_named_as_given(layer: Layer) -> None:
    gzip = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + "3" * 64, 1234)
    document = json.loads(manifest_json(CONFIG, (gzip,), layer))
    assert document["layers"][0] == gzip.to_json()


def test_the_docker_manifest_points_at_the_same_blobs(layer: Layer) -> None:
    manifest = manifest_json(CONFIG, LOWER, layer)
    found = members(load_archive(TAG, CONFIG, manifest, LOWER, layer))
    (entry,) = json.loads(found["manifest.json"])
    assert entry["RepoTags"] == [TAG]
    assert found[entry["Config"]] == CONFIG
    lower_paths, new_path = entry["Layers"][:-1], entry["Layers"][-1]
    assert lower_paths == [BLOBS + "1" * 64, BLOBS + "2" * 64]
    assert not set(lower_paths) & set(found), "a lower layer was shipped"
    assert digest(found[new_path]) == layer.diff_id


def test_a_config_only_image_ships_no_layer_and_names_the_lower_ones() -> None:
    """A config written over committed layers: the manifest and manifest.json name
    the layers the engine has, the archive holds two blobs."""
    manifest = manifest_json(CONFIG, LOWER, None)
    found = members(load_archive(TAG, CONFIG, manifest, LOWER, None))
    assert set(found) == {
        "oci-layout",
        "index.json",
        "manifest.json",
        BLOBS + digest(manifest).removeprefix("sha256:"),
        BLOBS + digest(CONFIG).removeprefix("sha256:"),
    }
    assert json.loads(manifest)["layers"] == [d.to_json() for d in LOWER]
    (entry,) = json.loads(found["manifest.json"])
    assert entry["Layers"] == [BLOBS + "1" * 64, BLOBS + "2" * 64]


def test_the_archive_is_the_same_bytes_each_time(layer: Layer) -> None:
    manifest = manifest_json(CONFIG, LOWER, layer)
    one = b"".join(load_archive(TAG, CONFIG, manifest, LOWER, layer))
    assert one == b"".join(load_archive(TAG, CONFIG, manifest, LOWER, layer))


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("lectures:1", "docker.io/library/lectures:1"),
        ("lectures", "docker.io/library/lectures:latest"),
        ("course/lectures:1", "docker.io/course/lectures:1"),
        ("docker.io/lectures:1", "docker.io/library/lectures:1"),
        ("docker.io/course/lectures:1", "docker.io/course/lectures:1"),
        ("registry.example.org/c/lectures:1", "registry.example.org/c/lectures:1"),
        ("localhost:5000/lectures:1", "localhost:5000/lectures:1"),
        ("localhost/lectures:1", "localhost/lectures:1"),
        ("a/b/c:1", "docker.io/a/b/c:1"),
    ],
)
def test_full_name_as_the_containerd_store_and_podman_keep_it(tag: str, name: str) -> None:
    assert full_name(tag) == name
