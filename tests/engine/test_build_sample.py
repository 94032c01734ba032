"""sample-notebooks/ built with the real builder: labels, owners and modes, every
notebook executed top to bottom as a random UID with GID 0, a file:// Git URL with
--ref and --context-dir that reuses the dependency layer, and the CA bundle in no
layer of the build."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from nbs2i.build import build, default_ca_bundle
from nbs2i.engine import Engine
from nbs2i.errors import BuildError
from nbs2i.progress import Event
from tests.conftest import SESSION_ID, TEST_LABELS, Tracker
from tests.engine.test_build import SAMPLES, assert_nothing_left, build_request
from tests.tiny_builder import find_in_layers, git, make_repo, one_notebook, run_in_image

NOTEBOOKS = sorted(p.name for p in SAMPLES.glob("*.ipynb"))
DEST = "/opt/app-root/src"


def test_sample_image_metadata_owners_and_modes(
    engine: Engine, sample_build: Any, builder_image: str
) -> None:
    info = engine.inspect_image(sample_build.tag)
    builder = engine.inspect_image(builder_image)["Config"]
    config = info["Config"]
    assert config["Entrypoint"] == builder["Entrypoint"]
    assert config["Cmd"] == ["/usr/libexec/s2i/run"]
    assert config["User"] == builder["User"]
    labels = config["Labels"]
    assert labels["io.openshift.s2i.build.image"] == builder_image
    assert labels["io.openshift.s2i.build.source-location"] == str(SAMPLES)
    assert labels["io.k8s.display-name"] == sample_build.tag
    env = dict(e.split("=", 1) for e in config["Env"])
    assert not {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} & set(env)
    code, listing = run_in_image(
        engine, sample_build.tag, ["find", DEST, "-printf", "%U:%G %m %p\\n"], TEST_LABELS
    )
    assert code == 0, listing
    rows = [line.split(" ", 2) for line in listing.splitlines()]
    names = {row[2] for row in rows}
    assert {f"{DEST}/{n}" for n in NOTEBOOKS} <= names
    assert f"{DEST}/data/weather.csv" in names
    for owner, mode, name in rows:
        assert owner == "1001:0", name
        bits = int(mode, 8)
        assert bits >> 6 & 7 == bits >> 3 & 7, f"{name}: {mode} is not g=u"
    # The source is not left at /tmp/src (upstream keeps a second copy there).
    code, text = run_in_image(engine, sample_build.tag, ["ls", "-A", "/tmp"], TEST_LABELS)
    assert "src" not in text.split()


def test_every_sample_notebook_runs_as_a_random_uid(engine: Engine, sample_build: Any) -> None:
    uid = 1_000_000_000 + secrets.randbelow(1_000_000)
    script = (
        "set -eu; "
        f"test -w {DEST}/{NOTEBOOKS[0]}; "  # g=u, group 0: writable by any UID in group 0
        "mkdir -p /tmp/out; "
        f"for nb in {DEST}/*.ipynb; do "
        "  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=300 "
        '    --output-dir /tmp/out "$nb"; '
        "done; "
        "ls /tmp/out"
    )
    code, output = run_in_image(
        engine,
        sample_build.tag,
        ["/bin/sh", "-c", script],
        TEST_LABELS,
        user=f"{uid}:0",
        timeout=600,
    )
    assert code == 0, output[-3000:]
    assert sorted(output.split()[-len(NOTEBOOKS) :]) == NOTEBOOKS, output[-2000:]


def test_file_url_ref_context_dir_reuses_the_dependency_layer(
    engine: Engine, track: Tracker, sample_build: Any, builder_image: str, tmp_path: Path
) -> None:
    repo = tmp_path / "school"
    commit = make_repo(repo, SAMPLES, subdir="courses/intro")
    git(repo, "tag", "week-1")
    (repo / "courses/intro/05-later.ipynb").write_text("{}")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "week 2")
    out = track.image(f"nbs2i-test/sample-url:{SESSION_ID}")
    events: list[Event] = []
    result = build(
        engine,
        build_request(
            f"file://{repo}",
            out,
            builder_image,
            ref="week-1",
            context_dir="courses/intro",
            ca_bundle=default_ca_bundle(),
        ),
        events.append,
    )
    assert result.deps_reused and result.deps_image == sample_build.deps_image
    labels = engine.inspect_image(out)["Config"]["Labels"]
    assert labels["io.openshift.s2i.build.commit.id"] == commit
    assert labels["io.openshift.s2i.build.commit.ref"] == "week-1"
    assert labels["io.openshift.s2i.build.source-context-dir"] == "courses/intro"
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.created"] == "2024-03-01T10:00:00Z"
    code, listing = run_in_image(engine, out, ["ls", DEST], TEST_LABELS)
    assert code == 0 and set(NOTEBOOKS) <= set(listing.split())
    assert "05-later.ipynb" not in listing.split()
    # pip did not run again on top of the dependency layer
    outputs = " ".join(e.message for e in events if e.kind == "output")
    assert "Installing requirements.txt" not in outputs
    assert_nothing_left(engine)


def test_uncommitted_edit_is_built(
    engine: Engine, track: Tracker, sample_build: Any, builder_image: str, tmp_path: Path
) -> None:
    repo = tmp_path / "course"
    make_repo(repo, SAMPLES)
    marker = f"edited-{SESSION_ID}"
    (repo / "README.md").write_text(marker)
    out = track.image(f"nbs2i-test/sample-edit:{SESSION_ID}")
    result = build(engine, build_request(repo, out, builder_image, ca_bundle=default_ca_bundle()))
    assert result.deps_reused
    code, text = run_in_image(engine, out, ["cat", f"{DEST}/README.md"], TEST_LABELS)
    assert (code, text) == (0, marker)


def test_ca_bundle_is_in_no_layer_of_the_build(
    engine: Engine, sample_build: Any, builder_image: str
) -> None:
    bundle = default_ca_bundle()
    if bundle is None:
        pytest.skip("no CA bundle on this machine ($PIP_CERT and friends unset)")
    # A distinctive slice of the bundle: the builder ships Debian's own bundle, which
    # may equal the host's, so only entries that are not the builder's count.
    needle = bundle.read_bytes()[-400:]
    built = set(find_in_layers(engine, sample_build.tag, [needle, b"ca-bundle.crt"]))
    base = set(find_in_layers(engine, builder_image, [needle, b"ca-bundle.crt"]))
    deps = set(find_in_layers(engine, sample_build.deps_image, [needle, b"ca-bundle.crt"]))
    assert built - base == set(), f"CA bundle found in the build's layers: {built - base}"
    assert deps - base == set(), f"CA bundle found in the dependency layer: {deps - base}"


def test_sample_copy_without_requirements_has_no_dependency_layer(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path
) -> None:
    src = tmp_path / "nodeps"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").unlink()
    out = track.image(f"nbs2i-test/sample-nodeps:{SESSION_ID}")
    result = build(engine, build_request(src, out, builder_image))
    assert result.deps_image == ""
    history = engine.history(out)
    builder_layers = len(engine.history(builder_image))
    assert len(history) == builder_layers + 1, "one layer per build"
    assert_nothing_left(engine)


def _tree(engine: Engine, image: str) -> list[str]:
    """Owner, mode, size, checksum and name of everything under DEST."""
    script = (
        f"cd {DEST} && find . -printf '%U:%G %m %s %p\\n' | sort"
        " && find . -type f | sort | xargs md5sum"
    )
    code, text = run_in_image(engine, image, ["sh", "-c", script], TEST_LABELS)
    assert code == 0, text
    return text.splitlines()


def test_placing_files_directly_equals_running_assemble(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path
) -> None:
    """With nothing for assemble to do but move the files, nbs2i writes them into
    the notebook directory itself: the image must be the one assemble makes."""
    src = tmp_path / "nodeps"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").unlink()
    (src / "tools").mkdir()
    (src / "tools" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "tools" / "run.sh").chmod(0o700)
    (src / "latest.ipynb").symlink_to("01-python-basics.ipynb")
    direct_tag = track.image(f"nbs2i-test/sample-direct:{SESSION_ID}")
    assembled_tag = track.image(f"nbs2i-test/sample-assembled:{SESSION_ID}")
    events: list[Event] = []
    direct = build(engine, build_request(src, direct_tag, builder_image), events.append)
    assembled = build(
        engine, build_request(src, assembled_tag, builder_image, always_assemble=True)
    )
    assert direct.direct and not assembled.direct
    assert not [e for e in events if e.kind == "output"], "assemble ran"
    assert _tree(engine, direct_tag) == _tree(engine, assembled_tag)
    assert "./tools/run.sh" in " ".join(_tree(engine, direct_tag))
    one, two = (engine.inspect_image(t)["Config"] for t in (direct_tag, assembled_tag))
    for key in ("Entrypoint", "Cmd", "User", "Env", "WorkingDir", "ExposedPorts"):
        assert one[key] == two[key], key
    ignore = {"io.k8s.display-name", "org.opencontainers.image.created"}
    assert {k: v for k, v in one["Labels"].items() if k not in ignore} == {
        k: v for k, v in two["Labels"].items() if k not in ignore
    }
    # The direct layer holds the notebooks and nothing else (no /tmp, no mount points).
    assert len(engine.history(direct_tag)) == len(engine.history(builder_image)) + 1
    needles = [b"tmp/", b"run/nbs2i"]
    extra = set(find_in_layers(engine, direct_tag, needles)) - set(
        find_in_layers(engine, builder_image, needles)
    )
    assert extra == set(), f"the direct layer holds more than the notebooks: {extra}"
    assert_nothing_left(engine)


def test_build_then_run(
    engine: Engine, track: Tracker, sample_build: Any, builder_image: str, tmp_path: Path
) -> None:
    """`nbs2i build --run`: the built image serves; Ctrl-C stops and removes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from nbs2i.run import http_status

    out = track.image(f"nbs2i-test/sample-run:{SESSION_ID}")
    labels = [a for k, v in TEST_LABELS.items() for a in ("--container-label", f"{k}={v}")]
    err = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbs2i",
            "build",
            str(SAMPLES),
            out,
            "--builder",
            builder_image,
            "--run",
            "--port",
            "0",
            "--quiet",
            *labels,
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(lines) < 5:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("http://127.0.0.1:"):
                break
        assert lines and lines[-1].startswith("http://127.0.0.1:"), (
            lines,
            (tmp_path / "stderr.txt").read_text()[-2000:],
        )
        status = http_status(lines[-1])  # the printed URL, token included
        assert status is not None and 200 <= status < 400, status
        assert engine.containers(labels=[f"nbs2i.test.session={SESSION_ID}"])
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        err.close()
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert_nothing_left(engine)


def test_a_failing_requirement_fails_the_build_with_pips_lines(
    engine: Engine, builder_image: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path, "bad")
    (src / "requirements.txt").write_text("nbs2i-surely-no-such-package-here==0.0.1\n")
    out = f"nbs2i-test/sample-bad:{SESSION_ID}"
    with pytest.raises(BuildError) as caught:
        build(engine, build_request(src, out, builder_image, ca_bundle=default_ca_bundle()))
    assert caught.value.problem.startswith("dependency install failed with exit code")
    assert "nbs2i-surely-no-such-package-here" in caught.value.details
    assert len(caught.value.details.splitlines()) <= 20
    assert not engine.image_exists(out)
    assert_nothing_left(engine)


def test_the_default_builder_is_built_on_first_use(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """No --builder and no nbs2i/builder:<version>: the build makes the builder first.
    (The default tags are redirected to a test tag so the user's builder is untouched;
    builder_image has warmed the build cache, so this is a cached build.)"""
    import nbs2i.build

    default = track.image(f"nbs2i-test/default-builder:{SESSION_ID}")
    monkeypatch.setattr(nbs2i.build, "builder_tags", lambda: (default,))
    assert not engine.image_exists(default)
    src = tmp_path / "lecture"
    src.mkdir()
    (src / "hello.ipynb").write_text((SAMPLES / "01-python-basics.ipynb").read_text())
    out = track.image(f"nbs2i-test/on-default:{SESSION_ID}")
    events: list[Event] = []
    result = build(engine, build_request(src, out, ""), events.append)
    assert result.builder == default and engine.image_exists(default)
    assert any("(first use)" in e.message for e in events if e.kind == "step")
    code, listing = run_in_image(engine, out, ["ls", DEST], TEST_LABELS)
    assert (code, listing.split()) == (0, ["hello.ipynb"])
    assert_nothing_left(engine)
