"""What a build does differently by engine, against a fake engine that plays
each one: the commit checked and its config written over it where the engine
did not keep it (podman), the lower layers named as each store needs them
(asked once per base on the containerd store, and never loaded twice), the
engine's own id printed, and one line saying how the layer is written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.building import build
from nbs2i.building.commit import commit
from nbs2i.engine import ContainerSpec, EngineInfo
from nbs2i.engine.types import store_words
from nbs2i.errors import BuildError
from tests.support.builds import Events
from tests.support.fake_builds import BUILDER, BUILDER_CONFIG, request
from tests.support.fake_engine import FakeEngine

CONFIG = replace(BUILDER_CONFIG, healthcheck={"Test": ["CMD", "true"], "Interval": 10_000_000_000})
CLASSIC = EngineInfo("docker", "20.10.24", "1.41", "overlay2", "linux", "amd64")
CONTAINERD = EngineInfo("docker", "28.5.2", "1.51", "containerd", "linux", "amd64")
PODMAN = EngineInfo("podman", "4.3.1", "1.41", "overlay", "linux", "amd64")
# The base's manifest as the containerd store keeps it: its layers gzipped.
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
BASE_MANIFEST = json.dumps(
    {"layers": [{"mediaType": GZIP, "digest": f"sha256:{n * 64}", "size": 10} for n in "ab"]}
).encode()


def engine_like(info: EngineInfo) -> FakeEngine:
    fake = FakeEngine(info=info, commit_ignores_config=info.kind == "podman")
    base = fake.add_image(BUILDER, CONFIG, ("sha256:base1", "sha256:base2"))
    fake.manifests[base.id] = BASE_MANIFEST if info.keeps_manifests else b""
    return fake


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "course"
    src.mkdir()
    (src / "a.ipynb").write_text("{}")
    return src


@pytest.mark.parametrize(
    "info", [CLASSIC, CONTAINERD, PODMAN], ids=["classic", "containerd", "podman"]
)
def test_the_container_path_gives_the_written_paths_config(info: EngineInfo, course: Path) -> None:
    engine = engine_like(info)
    written = build(engine, request(course, tag="class/written:1"))
    assembled = build(engine, request(course, tag="class/assembled:1", always_assemble=True))
    assert (written.method, assembled.method) == ("layer", "assemble")
    one, two = (engine.inspect_image(t).config for t in ("class/written:1", "class/assembled:1"))
    different = {labels.OCI_TITLE, "io.k8s.display-name"}
    assert replace(one, labels={}) == replace(two, labels={})
    assert {k: v for k, v in one.labels.items() if k not in different} == {
        k: v for k, v in two.labels.items() if k not in different
    }
    assert engine.inspect_image("class/assembled:1").id == assembled.image_id
    assert engine.live == ([], [])


def test_a_commit_the_engine_keeps_exactly_is_left_alone() -> None:
    engine = engine_like(CLASSIC)
    cid = engine.create_container(ContainerSpec(BUILDER, command=("assemble",), env={"A": "1"}))
    wanted = replace(CONFIG, env={**CONFIG.env, "A": "1"})
    made = commit(engine, cid, "class/c:1", wanted, "m")
    assert "load_image" not in engine.calls
    assert engine.inspect_image("class/c:1").id == made


def test_podmans_commit_gets_the_planned_config_written_over_its_layers() -> None:
    engine = engine_like(PODMAN)
    cid = engine.create_container(ContainerSpec(BUILDER, command=("assemble",), entrypoint=()))
    committed_layers = (*engine.inspect_image(BUILDER).layers, f"sha256:layer-of-{cid}")
    made = commit(engine, cid, "class/c:1", CONFIG, "m")
    steps = [c for c in engine.calls if c != "inspect_image"]
    assert steps[steps.index("commit") :] == ["commit", "history", "load_image", "remove_image"]
    image = engine.inspect_image("class/c:1")
    assert image.id == made and image.config == CONFIG
    assert image.layers == committed_layers
    # The image the commit made is gone: only the builder and the rewritten one are left.
    assert {i.id for i in engine.images()} == {made, engine.inspect_image(BUILDER).id}


def test_a_config_the_engine_will_not_take_fails_the_commit_and_leaves_no_image() -> None:
    engine = engine_like(PODMAN)
    cid = engine.create_container(ContainerSpec(BUILDER, command=("assemble",)))
    engine.fail_at = "load_image"
    with pytest.raises(BuildError, match="another config than asked"):
        commit(engine, cid, "class/c:1", CONFIG, "m")
    assert not engine.image_exists("class/c:1")


def test_the_containerd_store_gets_its_base_manifests_layers_in_one_load(course: Path) -> None:
    engine = engine_like(CONTAINERD)
    result = build(engine, request(course))
    assert engine.calls.count("load_image") == 1 and engine.calls.count("image_manifest") == 1
    manifest = engine.manifests[result.image_id]  # its id is its manifest's digest
    layers = json.loads(manifest)["layers"]
    assert layers[:2] == json.loads(BASE_MANIFEST)["layers"]
    # Learnt once per base: the next build asks the engine nothing about it.
    engine.remove_image("class/w1:1")
    assert build(engine, request(course)).image_id == result.image_id
    assert engine.calls.count("image_manifest") == 1


@pytest.mark.parametrize("info", [CLASSIC, PODMAN], ids=["classic", "podman"])
def test_stores_that_keep_no_manifest_get_diff_ids(info: EngineInfo, course: Path) -> None:
    engine = engine_like(info)
    result = build(engine, request(course))
    assert "image_manifest" not in engine.calls
    assert engine.inspect_image("class/w1:1").layers[:2] == ("sha256:base1", "sha256:base2")
    assert result.image_id == engine.inspect_image("class/w1:1").id


@pytest.mark.parametrize(
    "info", [CLASSIC, CONTAINERD, PODMAN], ids=["classic", "containerd", "podman"]
)
def test_the_build_says_once_how_it_writes_the_layer_and_prints_the_engines_id(
    info: EngineInfo, course: Path
) -> None:
    engine = engine_like(info)
    events = Events()
    result = build(engine, request(course), events)
    said = [m for m in events.of("step") if "OCI archive" in m]
    assert len(said) == 1 and store_words(info.kind, info.keeps_manifests) in said[0]
    (done,) = events.of("done")
    assert f"({result.image_id[7:19]})" in done
