"""sample-notebooks/ built with the real builder: labels, owners and modes, every
notebook executed top to bottom as a random UID with GID 0, a file:// Git URL with
--ref and --context-dir that reuses the dependency layer, the CA bundle in no
layer of the build, the notebook layer nbs2i writes itself equal to the one
assemble makes, and the same image id from the same commit."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from nbs2i import restricted
from nbs2i.building import build
from nbs2i.ca import default_ca_bundle
from nbs2i.engine import Engine
from nbs2i.errors import BuildError
from tests.support.builds import SAMPLES, Events
from tests.support.builds import request as build_request
from tests.support.cli import Running, nbs2i
from tests.support.gitrepo import git, make_repo, one_notebook
from tests.support.inside import run_in_image
from tests.support.layers import find_in_layers, top_layer
from tests.support.leftovers import assert_nothing_left
from tests.support.session import SESSION_FILTER, SESSION_ID, label_args, tag
from tests.support.tracker import Tracker

NOTEBOOKS = sorted(p.name for p in SAMPLES.glob("*.ipynb"))
DEST = "/opt/app-root/src"


@pytest.mark.matrix
def test_sample_image_metadata_owners_and_modes(
    engine: Engine, sample_build: Any, builder_image: str
) -> None:
    config = engine.inspect_image(sample_build.tag).config
    builder = engine.inspect_image(builder_image).config
    assert config.entrypoint == builder.entrypoint
    assert config.cmd == ("/usr/libexec/s2i/run",)
    assert config.user == builder.user
    labels = config.labels
    assert labels["io.openshift.s2i.build.image"] == builder_image
    assert labels["io.openshift.s2i.build.source-location"] == str(SAMPLES)
    assert labels["io.k8s.display-name"] == sample_build.tag
    # The image describes itself, not its builder.
    assert labels["org.opencontainers.image.title"] == "sample"
    assert labels["org.opencontainers.image.version"] == SESSION_ID
    assert "builder" not in labels["io.openshift.tags"]
    assert builder.labels["org.opencontainers.image.title"] == "nbs2i-builder"
    assert not {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} & set(config.env)
    code, listing = run_in_image(
        engine, sample_build.tag, ["find", DEST, "-printf", "%U:%G %m %p\\n"]
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
    # The notebook layer holds the notebooks once, and nothing else (upstream keeps
    # a second copy at /tmp/src).
    assert sample_build.method == "layer"
    names = {entry.name for entry in top_layer(engine, sample_build.tag)}
    assert {"opt", "opt/app-root", DEST.lstrip("/")} <= names
    outside = {n for n in names if not n.startswith(DEST.lstrip("/"))}
    assert outside == {"opt", "opt/app-root"}, outside


def test_every_sample_notebook_runs_as_a_random_uid(engine: Engine, sample_build: Any) -> None:
    uid = restricted.random_uid()
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
        engine, sample_build.tag, ["/bin/sh", "-c", script], user=f"{uid}:0", timeout=600
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
    out = track.image(tag("sample-url"))
    events = Events()
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
        events,
    )
    assert result.deps_reused and result.deps_image == sample_build.deps_image
    labels = engine.inspect_image(out).config.labels
    assert labels["io.openshift.s2i.build.commit.id"] == commit
    assert labels["io.openshift.s2i.build.commit.ref"] == "week-1"
    assert labels["io.openshift.s2i.build.source-context-dir"] == "courses/intro"
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.created"] == "2024-03-01T10:00:00Z"
    code, listing = run_in_image(engine, out, ["ls", DEST])
    assert code == 0 and set(NOTEBOOKS) <= set(listing.split())
    assert "05-later.ipynb" not in listing.split()
    # pip did not run again on top of the dependency layer; no container ran at all
    assert result.method == "layer" and events.outputs == []
    assert_nothing_left(engine)


def test_uncommitted_edit_is_built(
    engine: Engine, track: Tracker, sample_build: Any, builder_image: str, tmp_path: Path
) -> None:
    repo = tmp_path / "course"
    make_repo(repo, SAMPLES)
    marker = f"edited-{SESSION_ID}"
    (repo / "README.md").write_text(marker)
    out = track.image(tag("sample-edit"))
    result = build(engine, build_request(repo, out, builder_image, ca_bundle=default_ca_bundle()))
    assert result.deps_reused
    code, text = run_in_image(engine, out, ["cat", f"{DEST}/README.md"])
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
    out = track.image(tag("sample-nodeps"))
    result = build(engine, build_request(src, out, builder_image))
    assert result.deps_image == ""
    assert (
        len(engine.inspect_image(out).layers) == len(engine.inspect_image(builder_image).layers) + 1
    )
    assert len(engine.history(out)) == len(engine.history(builder_image)) + 1, "one layer a build"
    assert_nothing_left(engine)


def _tree(engine: Engine, image: str) -> list[str]:
    """Owner, mode, size, checksum and name of everything under DEST."""
    script = (
        f"cd {DEST} && find . -printf '%U:%G %m %s %p\\n' | sort"
        " && find . -type f | sort | xargs md5sum"
    )
    code, text = run_in_image(engine, image, ["sh", "-c", script])
    assert code == 0, text
    return text.splitlines()


@pytest.mark.matrix
def test_the_layer_nbs2i_writes_equals_the_one_assemble_makes(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path
) -> None:
    """With nothing for assemble to do but move the files, nbs2i writes the notebook
    layer itself: the image must be the one assemble makes."""
    src = tmp_path / "nodeps"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").unlink()
    (src / "tools").mkdir()
    (src / "tools" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "tools" / "run.sh").chmod(0o700)
    (src / "latest.ipynb").symlink_to("01-python-basics.ipynb")
    (src / ".s2i").mkdir()
    (src / ".s2i" / "environment").write_text("COURSE=equal\n")
    written_tag = track.image(tag("sample-written"))
    assembled_tag = track.image(tag("sample-assembled"))
    events = Events()
    written = build(engine, build_request(src, written_tag, builder_image), events)
    assembled = build(
        engine, build_request(src, assembled_tag, builder_image, always_assemble=True)
    )
    assert (written.method, assembled.method) == ("layer", "assemble")
    assert events.outputs == [], "assemble ran"
    assert _tree(engine, written_tag) == _tree(engine, assembled_tag)
    assert "./tools/run.sh" in " ".join(_tree(engine, written_tag))
    one, two = (engine.inspect_image(t).config for t in (written_tag, assembled_tag))
    assert (one.entrypoint, one.cmd, one.user, one.working_dir) == (
        two.entrypoint,
        two.cmd,
        two.user,
        two.working_dir,
    )
    assert (one.env, one.exposed_ports, one.healthcheck) == (
        two.env,
        two.exposed_ports,
        two.healthcheck,
    )
    different = {"io.k8s.display-name", "org.opencontainers.image.title"}
    assert {k: v for k, v in one.labels.items() if k not in different} == {
        k: v for k, v in two.labels.items() if k not in different
    }
    # The written layer holds the notebooks and nothing else (no /tmp, no mount points).
    outside = {
        e.name for e in top_layer(engine, written_tag) if not e.name.startswith("opt/app-root/src")
    }
    assert outside == {"opt", "opt/app-root"}, outside
    assert_nothing_left(engine)


def test_the_same_commit_gives_the_same_image_id(
    engine: Engine, track: Tracker, sample_build: Any, builder_image: str, tmp_path: Path
) -> None:
    repo = tmp_path / "course"
    make_repo(repo, SAMPLES)
    out = track.image(tag("sample-same"))
    first = build(engine, build_request(f"file://{repo}", out, builder_image))
    engine.remove_image(out)
    second = build(engine, build_request(f"file://{repo}", out, builder_image))
    assert first.image_id == second.image_id
    # As on another machine: another umask, another clone directory.
    engine.remove_image(out)
    previous = os.umask(0o077)
    try:
        elsewhere = build(engine, build_request(f"file://{repo}", out, builder_image))
    finally:
        os.umask(previous)
    assert elsewhere.image_id == first.image_id
    # A directory with SOURCE_DATE_EPOCH: times newer than it are clamped.
    plain = tmp_path / "plain"
    shutil.copytree(SAMPLES, plain)
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        third = build(engine, build_request(plain, out, builder_image))
        (plain / "README.md").touch()
        engine.remove_image(out)
        fourth = build(engine, build_request(plain, out, builder_image))
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    assert third.image_id == fourth.image_id
    labels = engine.inspect_image(out).config.labels
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert_nothing_left(engine)


def test_build_then_run(
    engine: Engine, track: Tracker, sample_build: Any, builder_image: str
) -> None:
    """`nbs2i build --run`: the built image serves; Ctrl-C stops and removes it."""
    out = track.image(tag("sample-run"))
    running = Running(
        "build",
        str(SAMPLES),
        out,
        "--builder",
        builder_image,
        "--run",
        "--port",
        "0",
        "--quiet",
        *label_args("--container-label"),
    )
    try:
        running.wait_for("ready in", timeout=300)
        assert engine.containers(labels=[SESSION_FILTER])
        running.signal(signal.SIGINT)
    finally:
        done = running.finish(timeout=60)
    url = next(line for line in done.stdout.splitlines() if line.startswith("http://127.0.0.1:"))
    assert "token=" in url
    assert done.code == 0, done.stderr[-2000:]
    assert_nothing_left(engine)


def test_a_failing_requirement_fails_the_build_with_pips_lines(
    engine: Engine, builder_image: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path, "bad")
    (src / "requirements.txt").write_text("nbs2i-surely-no-such-package-here==0.0.1\n")
    out = tag("sample-bad")
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
    import nbs2i.builder
    import nbs2i.building

    default = track.image(tag("default-builder"))
    monkeypatch.setattr(nbs2i.building, "default_tags", lambda: (default,))
    monkeypatch.setattr(nbs2i.builder, "default_tags", lambda: (default,))
    assert not engine.image_exists(default)
    src = tmp_path / "lecture"
    src.mkdir()
    (src / "hello.ipynb").write_text((SAMPLES / "01-python-basics.ipynb").read_text())
    out = track.image(tag("on-default"))
    events = Events()
    result = build(engine, build_request(src, out, ""), events)
    assert result.builder == default and engine.image_exists(default)
    assert any("(first use)" in step for step in events.steps)
    code, listing = run_in_image(engine, out, ["ls", DEST])
    assert (code, listing.split()) == (0, ["hello.ipynb"])
    assert_nothing_left(engine)


@pytest.mark.matrix
def test_a_notebook_only_rebuild_replaces_the_image(
    engine: Engine, builder_image: str, track: Tracker, tmp_path: Path
) -> None:
    """A notebook-only build writes the layer itself, also when it replaces the
    image its tag named; the replaced image is removed, not left untagged."""
    src = one_notebook(tmp_path)
    out = track.image(tag("rebuilt"))
    made = []
    for edit in ("first", "second"):
        (src / "a.ipynb").write_text(json.dumps({"metadata": {"edit": edit}}))
        done = nbs2i(
            *("build", str(src), out, "--builder", builder_image, "--json"),
            *label_args("--container-label"),
        )
        assert done.code == 0, done.stderr
        result = json.loads(done.stdout.splitlines()[-1])
        assert result["method"] == "layer"
        made.append(result["image"])
    assert made[0] != made[1] and not engine.image_exists(made[0]), "the replaced image is left"
