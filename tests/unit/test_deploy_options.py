"""Deploy options and image references: bad input is refused with a fix,
good input goes through unchanged, and a push hands back a pinned reference."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nbs2i import deploy, reference, registry
from nbs2i.deploy.options import DeployOptions, check
from nbs2i.errors import EngineError, Nbs2iError, UsageError
from tests.support.fake_engine import FakeEngine

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = "registry.example.org:5000/course/lectures:2026"


@pytest.mark.parametrize(
    ("ref", "repository", "tag", "digest"),
    [
        ("lectures", "lectures", "", ""),
        ("my/lectures:1", "my/lectures", "1", ""),
        ("localhost:5000/lectures", "localhost:5000/lectures", "", ""),
        ("127.0.0.1:5000/a/b:v1.2-rc_3", "127.0.0.1:5000/a/b", "v1.2-rc_3", ""),
        (f"reg.example.org/a@{DIGEST}", "reg.example.org/a", "", DIGEST),
        (f"reg.example.org/a:t@{DIGEST}", "reg.example.org/a", "t", DIGEST),
        ("[::1]:5000/a:b", "[::1]:5000/a", "b", ""),
    ],
)
def test_references_parse(ref: str, repository: str, tag: str, digest: str) -> None:
    parsed = reference.ImageRef.parse(ref)
    assert (parsed.repository, parsed.tag, parsed.digest) == (repository, tag, digest)
    assert str(parsed) == ref


@pytest.mark.parametrize(
    "ref",
    ["", "UPPER/case", "a//b", "a:", "a:b c", "a@sha256:short", "a@md5:" + "0" * 32, "-a", "a/-b"],
)
def test_bad_references_are_refused(ref: str) -> None:
    with pytest.raises(UsageError, match="not an image reference"):
        reference.ImageRef.parse(ref)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000/a/b", "latest")),
        ("127.0.0.1:5000/a/b:v1", ("127.0.0.1:5000/a/b", "v1")),
        (f"127.0.0.1:5000/a/b@{DIGEST}", ("127.0.0.1:5000/a/b", DIGEST)),
        (f"127.0.0.1:5000/a/b:v1@{DIGEST}", ("127.0.0.1:5000/a/b", DIGEST)),
    ],
)
def test_the_engine_pulls_a_pinned_reference_by_its_digest(
    ref: str, expected: tuple[str, str]
) -> None:
    assert reference.split(ref) == expected


def test_pinned_drops_the_tag_for_the_digest() -> None:
    assert reference.pinned(IMAGE, DIGEST) == f"registry.example.org:5000/course/lectures@{DIGEST}"
    with pytest.raises(UsageError):
        reference.pinned(IMAGE, "sha256:nope")


def test_push_returns_the_pinned_reference() -> None:
    engine = FakeEngine(push_digest=DIGEST)
    assert registry.push(engine, IMAGE) == reference.pinned(IMAGE, DIGEST)
    assert engine.calls == ["push"]


def test_push_refuses_a_digest_reference_and_a_bad_answer() -> None:
    with pytest.raises(UsageError, match="already pushed"):
        registry.push(FakeEngine(push_digest=DIGEST), f"{IMAGE}@{DIGEST}")
    with pytest.raises(EngineError, match="bad digest"):
        registry.push(FakeEngine(push_digest="sha256:garbage"), IMAGE)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"target": "nomad"}, "unknown target"),
        ({"target": "kubernetes"}, "needs the image"),
        ({"target": "kubernetes", "image": IMAGE, "name": "Bad_Name"}, "--name"),
        ({"target": "kubernetes", "image": IMAGE, "name": "x" * 41}, "--name"),
        ({"target": "kubernetes", "image": IMAGE, "storage": "lots"}, "--storage"),
        ({"target": "kubernetes", "image": IMAGE, "memory": "1 GB"}, "--memory"),
        ({"target": "kubernetes", "image": IMAGE, "digest": "sha256:12"}, "--digest"),
        (
            {"target": "kubernetes", "image": f"{IMAGE}@{DIGEST}", "digest": "sha256:" + "f" * 64},
            "already names",
        ),
        ({"target": "kubernetes", "image": IMAGE, "uid": 0}, "UID 0"),
        ({"target": "kubernetes", "image": IMAGE, "token": "short"}, "token"),
        ({"target": "kubernetes", "image": IMAGE, "token": "x" * 20 + "&y"}, "token"),
        ({"target": "kubernetes", "image": IMAGE, "password_hash": "plain"}, "password hash"),
        ({"target": "openshift", "hostname": "not a host"}, "--hostname"),
        ({"target": "openshift", "digest": DIGEST}, "OpenShift builds its own"),
        ({"target": "zero-to-jupyterhub", "image": IMAGE, "token": "t" * 20}, "from the hub"),
    ],
)
def test_bad_options_are_refused_with_a_fix(given: dict[str, object], message: str) -> None:
    with pytest.raises(Nbs2iError, match=message) as caught:
        check(DeployOptions(**given))  # type: ignore[arg-type]
    assert caught.value.fix


def test_options_from_a_command_line_take_the_library_defaults() -> None:
    opts = deploy.options("kubernetes", IMAGE, name=None, storage="5Gi", uid=None)
    assert opts == DeployOptions(target="kubernetes", image=IMAGE, storage="5Gi")
    assert deploy.options("openshift").image.startswith("nbs2i/builder:")
    with pytest.raises(TypeError, match="unknown deploy options"):
        deploy.options("kubernetes", IMAGE, colour="blue")


def test_a_password_is_hashed_and_never_kept() -> None:
    opts = deploy.options("kubernetes", IMAGE, password="correct horse")
    assert opts.password_hash.startswith("sha512:")
    assert "correct horse" not in repr(opts)


def test_write_makes_a_token_keeps_the_secret_private_and_refuses_to_overwrite(
    tmp_path: Path,
) -> None:
    opts = deploy.options("kubernetes", IMAGE)
    result = deploy.write(opts, tmp_path / "out")
    assert len(result.token) == 48
    names = sorted(p.name for p in result.files)
    assert names == [
        "deployment.yaml",
        "persistentvolumeclaim.yaml",
        "secret.yaml",
        "service.yaml",
    ]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in result.files}
    assert modes["secret.yaml"] == 0o600
    assert modes["deployment.yaml"] == 0o644
    assert result.token in (tmp_path / "out" / "secret.yaml").read_text()
    assert not list((tmp_path / "out").glob(".*partial"))
    with pytest.raises(UsageError, match="already exist"):
        deploy.write(opts, tmp_path / "out")
    again = deploy.write(opts, tmp_path / "out", force=True)
    assert again.token != result.token


def test_render_is_deterministic() -> None:
    for target, image in (
        ("openshift", None),
        ("kubernetes", IMAGE),
        ("zero-to-jupyterhub", IMAGE),
    ):
        opts = deploy.options(target, image, token="t" * 24 if target == "kubernetes" else None)
        assert deploy.render(opts) == deploy.render(opts)


@pytest.mark.parametrize(
    ("target", "image", "expected"),
    [
        ("openshift", None, "oc new-app -f"),
        ("kubernetes", IMAGE, "kubectl apply -n <ns> -f"),
        ("zero-to-jupyterhub", IMAGE, "helm upgrade --install"),
    ],
)
def test_next_steps_name_the_files(
    tmp_path: Path, target: str, image: str | None, expected: str
) -> None:
    result = deploy.write(deploy.options(target, image), tmp_path / "out dir")
    steps = deploy.next_steps(result)
    assert any(expected in line and "'" in line for line in steps), steps
