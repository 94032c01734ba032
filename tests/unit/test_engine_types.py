"""The engine's answers read into nbs2i's types.

engine_answers/ holds /version and /info answers: docker-20.10-* recorded from
Debian bookworm's docker.io; docker-28-containerd-* (Docker with the containerd
image store) and podman-4.3-* (podman's Docker-compatible service) written
from the Docker Engine API and podman compat API references, reduced to the
fields that matter here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from nbs2i.engine import (
    BuildEvent,
    ContainerInfo,
    ContainerSpec,
    EngineInfo,
    ImageInfo,
    ImageSummary,
    Tmpfs,
)
from nbs2i.engine.mapping import host_config, pull_params, push_params, tmpfs_options
from nbs2i.engine.types import image_id, path_kind, stream_digest, stream_error
from nbs2i.errors import EngineError

ANSWERS = Path(__file__).parent / "engine_answers"


def answer(name: str) -> Any:
    return json.loads((ANSWERS / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (
            "docker-20.10",
            EngineInfo("docker", "20.10.24+dfsg1", "1.41", "overlay2", "linux", "amd64"),
        ),
        (
            "docker-28-containerd",
            EngineInfo("docker", "28.5.2", "1.51", "containerd", "linux", "amd64"),
        ),
        ("podman-4.3", EngineInfo("podman", "4.3.1", "1.41", "overlay", "linux", "amd64")),
    ],
)
def test_engine_kind_version_and_image_store(engine: str, expected: EngineInfo) -> None:
    assert EngineInfo.from_api(answer(f"{engine}-version"), answer(f"{engine}-info")) == expected


def test_an_engine_that_says_little_is_still_described() -> None:
    assert EngineInfo.from_api({}, {"DriverStatus": None}) == EngineInfo(
        "docker", "", "", "", "", ""
    )


def test_untagged_images_have_no_tags() -> None:
    raw = {"Id": "sha256:1", "RepoTags": ["<none>:<none>", "a:1"], "Labels": {"k": "v"}}
    assert ImageSummary.from_api(raw) == ImageSummary("sha256:1", ("a:1",), {"k": "v"})
    assert ImageInfo.from_api(raw).tags == ("a:1",)
    assert ImageInfo.from_api({"Id": "sha256:1", "RepoTags": None}).tags == ()


def test_image_info_reads_config_and_layers() -> None:
    raw = {
        "Id": "sha256:abc",
        "RepoTags": ["nbs2i/builder:1"],
        "Config": {"User": "1001", "Env": ["A=1", "B=x=y"], "Labels": None, "Cmd": ["run"]},
        "RootFS": {"Type": "layers", "Layers": ["sha256:l1", "sha256:l2"]},
        "Architecture": "amd64",
        "Os": "linux",
    }
    info = ImageInfo.from_api(raw)
    assert info.config.user == "1001" and info.config.cmd == ("run",)
    assert dict(info.config.env) == {"A": "1", "B": "x=y"} and info.config.labels == {}
    assert info.layers == ("sha256:l1", "sha256:l2") and (info.os, info.architecture) == (
        "linux",
        "amd64",
    )


@pytest.mark.parametrize(
    ("event", "said"),
    [
        ({"errorDetail": {"message": "no space\n left"}, "error": "short"}, "no space left"),
        ({"error": "refused  here"}, "refused here"),
        ({"error": "", "stream": "Step 1/2\n"}, ""),
        ({"status": "Pushing"}, ""),
    ],
)
def test_a_stream_error_is_one_line(event: dict[str, Any], said: str) -> None:
    assert stream_error(event) == said


def test_a_push_digest_comes_from_its_aux_message_or_its_last_line() -> None:
    assert stream_digest({"aux": {"Tag": "1", "Digest": "sha256:d", "Size": 5}}) == "sha256:d"
    assert stream_digest({"aux": "not an object"}) == ""
    assert stream_digest({"status": "Pushed"}) == ""
    # The containerd store and podman say it only in the line that ends the push.
    digest = "sha256:" + "c3" * 32
    assert stream_digest({"status": f"t: digest: {digest} size: 429"}) == digest
    assert stream_digest({"status": f"t: digest: {digest[:-1]} size: 429"}) == ""
    assert stream_digest({"status": f"my digest: {digest} size: 1 and more"}) == ""


@pytest.mark.parametrize(
    ("repository", "podman_params"),
    [
        ("127.0.0.1:5000/c/l", {"tag": "1", "tlsVerify": "false"}),
        ("localhost:5000/c/l", {"tag": "1", "tlsVerify": "false"}),
        ("[::1]:5000/c/l", {"tag": "1", "tlsVerify": "false"}),
        ("registry.example.org/c/l", {"tag": "1"}),
        ("127.0.0.1.example.org/c/l", {"tag": "1"}),
        ("c/l", {"tag": "1"}),
    ],
)
def test_podman_is_told_a_loopback_registry_needs_no_tls(
    repository: str, podman_params: dict[str, str]
) -> None:
    docker = "docker"
    podman = "podman"
    assert push_params(repository, "1", podman) == podman_params
    assert push_params(repository, "1", docker) == {"tag": "1"}
    compat = ("/images/create", {"fromImage": repository, "tag": "1"})
    assert pull_params(repository, "1", docker) == compat
    if "tlsVerify" in podman_params:  # podman's Docker API cannot be told: its own can
        own = {"reference": f"{repository}:1", "tlsVerify": "false"}
        assert pull_params(repository, "1", podman) == ("/libpod/images/pull", own)
        digest = "sha256:" + "a" * 64
        assert pull_params(repository, digest, podman)[1]["reference"] == f"{repository}@{digest}"
    else:
        assert pull_params(repository, "1", podman) == compat


def test_build_messages_become_events() -> None:
    assert BuildEvent.from_api({"stream": "Step 1/2 : FROM x\n"}) == [
        BuildEvent(stream="Step 1/2 : FROM x\n")
    ]
    assert BuildEvent.from_api({"aux": {"ID": "sha256:i"}}) == [BuildEvent(image_id="sha256:i")]
    assert BuildEvent.from_api(
        {"error": "failed", "errorDetail": {"message": "RUN failed: exit 1"}}
    ) == [BuildEvent(error="RUN failed: exit 1")]
    assert BuildEvent.from_api({"status": "Downloading"}) == []


def _stat(mode: int) -> str:
    return base64.b64encode(json.dumps({"name": "x", "mode": mode}).encode()).decode()


@pytest.mark.parametrize(
    ("mode", "kind"),
    [(0o644, "file"), (1 << 31 | 0o755, "dir"), (1 << 27 | 0o777, "link"), (1 << 26, "other")],
)
def test_a_path_kind_is_read_from_the_engines_stat(mode: int, kind: str) -> None:
    assert path_kind(_stat(mode)) == kind


def test_an_unreadable_stat_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="unreadable"):
        path_kind("%%% not base64")


def test_container_info_ports_mounts_and_health() -> None:
    raw = {
        "Id": "c1",
        "Name": "/nbs2i-run--host--1-abcd",
        "Image": "sha256:i",
        "State": {"Running": False, "ExitCode": 3, "Health": {"Status": "unhealthy"}},
        "Config": {"User": "1000680000:0", "Env": ["HOME=/home/jovyan"], "Labels": {"a": "b"}},
        "NetworkSettings": {
            "Ports": {
                "8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "49154"}],
                "9000/tcp": None,
            }
        },
        "Mounts": [
            {"Type": "volume", "Name": "alice", "Source": "/var/lib/x", "Destination": "/home"},
            {"Type": "bind", "Source": "/srv/course", "Destination": "/data"},
        ],
    }
    info = ContainerInfo.from_api(raw)
    assert (info.name, info.running, info.exit_code, info.health) == (
        "nbs2i-run--host--1-abcd",
        False,
        3,
        "unhealthy",
    )
    assert info.ports == {8888: 49153}
    assert [(m.kind, m.name, m.destination) for m in info.mounts] == [
        ("volume", "alice", "/home"),
        ("bind", "/srv/course", "/data"),
    ]
    assert info.user == "1000680000:0" and info.labels == {"a": "b"}


def test_a_bare_image_id_gets_dockers_prefix_so_short_ids_are_prefixes() -> None:
    bare = "09ec94f2d40dfd1371a2da102f69c14541296d92f32131ec4addd85e19860cab"
    assert image_id(bare) == f"sha256:{bare}"
    assert image_id(f"sha256:{bare}") == f"sha256:{bare}"
    assert image_id("") == "" and image_id("not-an-id") == "not-an-id"
    assert BuildEvent.from_api({"aux": {"ID": bare}}) == [BuildEvent(image_id=f"sha256:{bare}")]
    assert ImageInfo.from_api({"Id": bare}).id == f"sha256:{bare}"


@pytest.mark.parametrize(
    ("info", "store", "keeps"),
    [
        (
            EngineInfo("docker", "20.10", "1.41", "overlay2", "linux", "amd64"),
            "Docker's classic image store (overlay2)",
            False,
        ),
        (
            EngineInfo("docker", "28.5", "1.51", "containerd", "linux", "amd64"),
            "Docker's containerd image store",
            True,
        ),
        (
            EngineInfo("podman", "4.3.1", "1.41", "overlay", "linux", "amd64"),
            "podman's image store (overlay)",
            False,
        ),
    ],
)
def test_the_image_store_in_words(info: EngineInfo, store: str, keeps: bool) -> None:
    assert (info.store, info.keeps_manifests) == (store, keeps)


def test_a_tmpfs_is_mounted_empty_on_every_engine() -> None:
    docker = "docker"
    podman = "podman"
    scratch = Tmpfs("/tmp")
    home = Tmpfs("/home/jovyan", 0o775, 512 << 20, exec=True)
    assert tmpfs_options(scratch, docker) == "rw,nosuid,nodev,noexec,mode=1777"
    assert tmpfs_options(home, docker) == "rw,nosuid,nodev,exec,mode=0775,size=536870912"
    # podman copies the image's files at the path into a tmpfs unless told not to.
    assert tmpfs_options(scratch, podman) == "rw,nosuid,nodev,noexec,mode=1777,notmpcopyup"
    spec = ContainerSpec("img", tmpfs=(scratch, home))
    assert host_config(spec, docker)["tmpfs"] == {
        "/tmp": scratch.options(),
        "/home/jovyan": home.options(),
    }
    assert host_config(ContainerSpec("img"), podman)["tmpfs"] is None


def test_a_fresh_volume_has_its_own_mode_on_every_engine() -> None:
    # Docker's runtime gives a tmpfs the mode of the image's directory at its
    # path: there a fresh volume is a tmpfs-backed anonymous volume, labelled.
    home = Tmpfs("/home/jovyan", 0o775, 512 << 20, exec=True, volume=True)
    spec = ContainerSpec("img", labels={"nbs2i.owner": "t"}, tmpfs=(Tmpfs("/tmp"), home))
    on_docker = host_config(spec, "docker")
    assert on_docker["tmpfs"] == {"/tmp": "rw,nosuid,nodev,noexec,mode=1777"}
    (mount,) = on_docker["mounts"]
    assert mount["Target"] == "/home/jovyan" and mount["Type"] == "volume"
    options = mount["VolumeOptions"]
    assert options["NoCopy"] and options["Labels"] == {"nbs2i.owner": "t"}
    assert options["DriverConfig"]["Options"] == {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": "rw,nosuid,nodev,exec,mode=0775,size=536870912",
    }
    # podman refuses a size for a volume; it keeps a tmpfs's mode when not copying up.
    on_podman = host_config(spec, "podman")
    assert on_podman["mounts"] is None
    assert on_podman["tmpfs"]["/home/jovyan"].endswith("mode=0775,size=536870912,notmpcopyup")
