"""--as-dockerfile: the written Dockerfile and context build, with a real `docker build`
through the engine, the same files, owners, modes, labels and command as `nbs2i build`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nbs2i.building import build
from nbs2i.building.dockerfile import write
from nbs2i.engine import Engine
from tests.support import hostile
from tests.support.builds import SAMPLES
from tests.support.builds import request as build_request
from tests.support.gitrepo import make_repo
from tests.support.hostile import notebook_tree
from tests.support.images import build_directory
from tests.support.inside import run_in_image
from tests.support.leftovers import assert_nothing_left
from tests.support.session import LABELS, SESSION_ID, tag
from tests.support.tracker import Tracker

LISTING = ["find", "/opt/app-root/src", "-printf", "%U:%G %m %y %p\\n"]


@pytest.mark.matrix
def test_dockerfile_builds_the_same_image(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    repo = tmp_path / "course"
    make_repo(repo, SAMPLES)
    (repo / "requirements.txt").write_text(f"# dockerfile {SESSION_ID}\nnumpy\n")
    (repo / "notes.md").write_text('price: $5 "quoted"\n')
    via_nbs2i = track.image(tag("df-nbs2i"))
    via_docker = track.image(tag("df-docker"))
    req = build_request(repo, via_nbs2i, tiny_builder, env=(("GREETING", "hello $USER"),))
    result = build(engine, req)
    track.image(result.deps_image)

    out = tmp_path / "ctx"
    dockerfile = write(req, out)
    text = dockerfile.read_text()
    assert text.count("RUN ") == 2 and "NBS2I_ASSEMBLE_PHASE=deps" in text
    assert "COPY --chown=1001:0 upload/src/ /tmp/src/" in text
    log = build_directory(engine, out, via_docker)
    assert "requirements unchanged: not installing" in log

    a = engine.inspect_image(via_nbs2i).config
    b = engine.inspect_image(via_docker).config
    assert a.cmd == b.cmd == ("/usr/libexec/s2i/run",)
    assert a.entrypoint == b.entrypoint and a.user == b.user == "1001"
    assert a.env["GREETING"] == b.env["GREETING"] == "hello $USER"
    skip = {"nbs2i.deps-key", *LABELS}
    assert {k: v for k, v in a.labels.items() if k not in skip} == {
        k: v for k, v in b.labels.items() if k not in skip
    }
    _, listing_a = run_in_image(engine, via_nbs2i, LISTING)
    _, listing_b = run_in_image(engine, via_docker, LISTING)
    assert sorted(listing_a.splitlines()) == sorted(listing_b.splitlines())
    assert "1001:0 664 f /opt/app-root/src/notes.md" in listing_b.splitlines()
    shutil.rmtree(out)
    assert_nothing_left(engine)


def build_offline(context: Path, ref: str) -> str:
    """`docker build` of a directory with no network at all; the whole log,
    failed or not (the attack must not need the network, nor its proof)."""
    import io
    import tarfile

    import docker

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(context), arcname=".")
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    log = []
    try:
        for event in client.build(
            fileobj=io.BytesIO(buffer.getvalue()),
            custom_context=True,
            tag=ref,
            labels=dict(LABELS),
            network_mode="none",
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        ):
            log.append(str(event.get("stream") or event.get("error") or ""))
    finally:
        client.close()
    return "".join(log)


def test_the_root_step_never_sees_the_repository_environment(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    # apt.txt names a package the builder has: apt-get runs, offline, as root.
    repo = notebook_tree(tmp_path / "course")
    hostile.write(repo, "apt.txt", "bash\n")
    hostile.write(repo, ".s2i/environment", hostile.APT_HOOK_ENVIRONMENT)
    image = track.image(tag("df-apt-hook"))
    out = tmp_path / "ctx"
    dockerfile = write(build_request(repo, image, tiny_builder), out)
    text = dockerfile.read_text()
    assert text.index("\nUSER 0\n") < text.index("\nENV "), text
    log = build_offline(out, image)
    assert not hostile.APT_HOOK_RAN.search(log), log
    assert engine.image_exists(image), log
    code, mode = run_in_image(engine, image, ["stat", "-c", "%a", "/etc/passwd"])
    assert (code, mode.strip()) == (0, "644")
    # The repository's environment still reaches its image, as upstream's does.
    assert engine.inspect_image(image).config.env["APT_CONFIG"] == "/proc/self/environ"
    shutil.rmtree(out)
    assert_nothing_left(engine)
