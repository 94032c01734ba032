"""Output labels, the built image's config, and the allowed-UIDs check."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i.engine import ImageConfig
from nbs2i.errors import SecurityError, UsageError
from nbs2i.image import check_user, created, image_config, output_labels, parse_uid_range
from nbs2i.source import Source


def source(**kw: object) -> Source:
    base = dict(
        location="https://user:pw@git.example.org/course.git",
        ref="main",
        commit="a" * 40,
        author="Teacher <t@example.org>",
        date="Fri Mar 1 10:00:00 2024 +0000",
        message="Lecture 3",
        context_dir="notebooks",
        root=Path("/tmp/x"),
        epoch=1709287200,
    )
    base.update(kw)
    return Source(**base)  # type: ignore[arg-type]


def test_output_labels_are_upstreams_plus_oci_without_credentials() -> None:
    labels = output_labels(source(), builder="nbs2i/builder:0.1.0", tag="course:3")
    assert labels == {
        "io.openshift.s2i.build.image": "nbs2i/builder:0.1.0",
        "io.openshift.s2i.build.commit.id": "a" * 40,
        "io.openshift.s2i.build.commit.ref": "main",
        "io.openshift.s2i.build.commit.author": "Teacher <t@example.org>",
        "io.openshift.s2i.build.commit.date": "Fri Mar 1 10:00:00 2024 +0000",
        "io.openshift.s2i.build.commit.message": "Lecture 3",
        "io.openshift.s2i.build.source-location": "https://***@git.example.org/course.git",
        "io.openshift.s2i.build.source-context-dir": "notebooks",
        "io.k8s.display-name": "course:3",
        "io.k8s.description": "Jupyter notebooks from https://***@git.example.org/course.git",
        "io.openshift.tags": "jupyter,notebooks",
        "org.opencontainers.image.title": "course",
        "org.opencontainers.image.description": "Jupyter notebooks from "
        "https://***@git.example.org/course.git",
        "org.opencontainers.image.version": "3",
        "org.opencontainers.image.source": "https://***@git.example.org/course.git",
        "org.opencontainers.image.revision": "a" * 40,
        "org.opencontainers.image.created": "2024-03-01T10:00:00Z",
        "org.opencontainers.image.licenses": "NOASSERTION",
    }


def test_plain_directory_has_no_commit_labels() -> None:
    plain = source(
        location="/home/t/course",
        ref="",
        commit="",
        author="",
        date="",
        message="",
        context_dir="",
        epoch=None,
    )
    labels = output_labels(plain, builder="b", tag="t")
    assert set(labels) == {
        "io.openshift.s2i.build.image",
        "io.openshift.s2i.build.source-location",
        "io.k8s.display-name",
        "io.k8s.description",
        "io.openshift.tags",
        "org.opencontainers.image.source",
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    }
    assert created(plain.epoch) == ""


def test_image_config_keeps_the_builder_but_its_identity() -> None:
    builder = ImageConfig(
        user="1001",
        entrypoint=("tini", "-g", "--"),
        cmd=("/usr/libexec/s2i/usage",),
        env={"PATH": "/usr/bin", "HOME": "/home/jovyan"},
        labels={
            "io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i",
            "org.opencontainers.image.title": "nbs2i-builder",
            "org.opencontainers.image.version": "0.2.0",
            "io.openshift.tags": "builder,jupyter",
        },
        working_dir="/opt/app-root/src",
        exposed_ports=("8888/tcp",),
    )
    conf = image_config(
        builder, cmd=("/usr/libexec/s2i/run",), env={"HOME": "/h", "A": "1"}, extra={"x": "y"}
    )
    assert conf.entrypoint == ("tini", "-g", "--") and conf.user == "1001"
    assert conf.cmd == ("/usr/libexec/s2i/run",)
    assert list(conf.env.items()) == [("PATH", "/usr/bin"), ("HOME", "/h"), ("A", "1")]
    assert conf.labels == {"io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i", "x": "y"}
    assert conf.exposed_ports == ("8888/tcp",) and conf.working_dir == "/opt/app-root/src"
    raw = conf.to_api()
    assert raw["Env"] == ["PATH=/usr/bin", "HOME=/h", "A=1"]
    assert raw["ExposedPorts"] == {"8888/tcp": {}} and raw["Entrypoint"] == ["tini", "-g", "--"]


@pytest.mark.parametrize(
    ("text", "allowed", "refused"),
    [
        ("1-", [1, 1001, 10**9], [0]),
        ("1000-2000", [1000, 2000], [999, 2001, 0]),
        ("1001", [1001], [1000, 1002]),
        ("1-10,1000-", [5, 5000], [0, 11, 999]),
    ],
)
def test_uid_ranges(text: str, allowed: list[int], refused: list[int]) -> None:
    rng = parse_uid_range(text)
    assert all(rng.allows(u) for u in allowed)
    assert not any(rng.allows(u) for u in refused)


@pytest.mark.parametrize("text", ["", "-5", "a-b", "10-5", "1--"])
def test_bad_uid_ranges(text: str) -> None:
    with pytest.raises(UsageError):
        parse_uid_range(text)


def test_users() -> None:
    rng = parse_uid_range("1-")
    assert check_user("1001", rng, "x") == 1001
    assert check_user("1001:0", rng, "x") == 1001
    for bad in ["", "0", "root", "jovyan", "0:0", "1001abc"]:
        with pytest.raises(SecurityError, match="numeric and within the range of allowed users"):
            check_user(bad, rng, "builder b")
