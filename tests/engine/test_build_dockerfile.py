"""--as-dockerfile: the written Dockerfile and context build, with a real `docker build`
through the engine, the same files, owners, modes, labels and command as `nbs2i build`."""

from __future__ import annotations

import shutil
from pathlib import Path

from nbs2i.build import build
from nbs2i.dockerfile import write
from nbs2i.engine import Engine
from tests.conftest import SESSION_ID, TEST_LABELS, Tracker
from tests.engine.test_build import SAMPLES, assert_nothing_left, build_request
from tests.tiny_builder import make_repo, run_in_image

LISTING = ["find", "/opt/app-root/src", "-printf", "%U:%G %m %y %p\\n"]


def test_dockerfile_builds_the_same_image(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    repo = tmp_path / "course"
    make_repo(repo, SAMPLES)
    (repo / "requirements.txt").write_text(f"# dockerfile {SESSION_ID}\nnumpy\n")
    (repo / "notes.md").write_text('price: $5 "quoted"\n')
    via_nbs2i = track.image(f"nbs2i-test/df-nbs2i:{SESSION_ID}")
    via_docker = track.image(f"nbs2i-test/df-docker:{SESSION_ID}")
    req = build_request(repo, via_nbs2i, tiny_builder, env=(("GREETING", "hello $USER"),))
    result = build(engine, req)
    track.image(result.deps_image)

    out = tmp_path / "ctx"
    dockerfile = write(req, out)
    text = dockerfile.read_text()
    assert text.count("RUN ") == 2 and "NBS2I_ASSEMBLE_PHASE=deps" in text
    assert "COPY --chown=1001:0 upload/src/ /tmp/src/" in text
    log = []
    for event in engine.build(path=str(out), tag=via_docker, labels=TEST_LABELS):
        assert "error" not in event, "".join(log) + str(event)
        log.append(str(event.get("stream", "")))
    assert "requirements unchanged: not installing" in "".join(log)

    a = engine.inspect_image(via_nbs2i)["Config"]
    b = engine.inspect_image(via_docker)["Config"]
    assert a["Cmd"] == b["Cmd"] == ["/usr/libexec/s2i/run"]
    assert a["Entrypoint"] == b["Entrypoint"] and a["User"] == b["User"] == "1001"
    assert "GREETING=hello $USER" in b["Env"] and "GREETING=hello $USER" in a["Env"]
    skip = {"nbs2i.role", "nbs2i.deps-key", *TEST_LABELS}
    assert {k: v for k, v in a["Labels"].items() if k not in skip} == {
        k: v for k, v in b["Labels"].items() if k not in skip
    }
    _, listing_a = run_in_image(engine, via_nbs2i, LISTING, TEST_LABELS)
    _, listing_b = run_in_image(engine, via_docker, LISTING, TEST_LABELS)
    assert sorted(listing_a.splitlines()) == sorted(listing_b.splitlines())
    assert "1001:0 664 f /opt/app-root/src/notes.md" in listing_b.splitlines()
    shutil.rmtree(out)
    assert_nothing_left(engine)
