"""The build flow against the real engine, with the tiny test builder (seconds a build).

The container path itself: labels, config, owners and modes, environment
precedence, script lookup, the dependency layer, --incremental,
--inject/--ca-bundle (absent from every layer), --json, `nbs2i usage`, stop
signals. The tiny builder does not declare what its assemble does, so every
build here runs assemble in a container. The real builder (and nbs2i writing
the notebook layer itself) is in test_build_sample.py.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from nbs2i.building import Injection, build, usage
from nbs2i.engine import Engine
from tests.support.builds import SAMPLES, Events, request
from tests.support.cli import Running, nbs2i
from tests.support.gitrepo import git, make_repo, one_notebook
from tests.support.inside import run_in_image
from tests.support.layers import find_in_layers
from tests.support.leftovers import assert_nothing_left
from tests.support.session import LABELS, SESSION_FILTER, SESSION_ID, label_args, tag
from tests.support.tracker import Tracker


@pytest.mark.matrix
def test_build_a_git_checkout_as_it_is_on_disk(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    repo = tmp_path / "course"
    commit = make_repo(repo, SAMPLES)
    (repo / ".s2i").mkdir()
    (repo / ".s2i" / "environment").write_text("# course settings\nCOURSE=physics\nLEVEL=1\n")
    (repo / "01-python-basics.ipynb").write_text('{"edited": "not committed"}')
    (repo / "scratch.txt").write_text("untracked file\n")
    out = track.image(tag("dir"))
    events = Events()
    result = build(
        engine,
        request(repo, out, tiny_builder, env=(("LEVEL", "2"),), labels=(("course", "phys101"),)),
        events,
    )
    if result.deps_image:
        track.image(result.deps_image)
    info = engine.inspect_image(out)
    assert info.id == result.image_id
    assert result.method == "assemble"
    labels = info.config.labels
    assert labels["io.openshift.s2i.build.image"] == tiny_builder
    assert labels["io.openshift.s2i.build.commit.id"] == commit
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["io.openshift.s2i.build.commit.author"] == "Teacher <teacher@example.org>"
    assert labels["io.openshift.s2i.build.commit.message"] == "Lecture notebooks"
    assert labels["org.opencontainers.image.created"] == "2024-03-01T10:00:00Z"
    assert labels["io.openshift.s2i.build.source-location"] == str(repo)
    assert labels["org.opencontainers.image.source"] == str(repo)
    assert labels["io.k8s.display-name"] == out
    assert labels["course"] == "phys101"
    assert labels["nbs2i.role"] == "image"
    # The builder's ENTRYPOINT restored, CMD = run, USER kept, env: builder + build.
    config = info.config
    assert config.entrypoint == ("/usr/bin/env",)
    assert config.cmd == ("/usr/libexec/s2i/run",)
    assert config.user == "1001"
    assert config.env["TINY_BUILDER"] == "1"
    assert config.env["COURSE"] == "physics" and config.env["LEVEL"] == "2"
    assert not {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} & set(config.env)
    assert "assemble done" in events.outputs
    assert events.all[-1].kind == "done"

    code, listing = run_in_image(
        engine, out, ["find", "/opt/app-root/src", "-printf", "%U:%G %m %p\\n"]
    )
    assert code == 0, listing
    rows = [line.split(" ", 2) for line in listing.splitlines()]
    names = {row[2] for row in rows}
    assert "/opt/app-root/src/data/weather.csv" in names
    assert "/opt/app-root/src/scratch.txt" in names
    assert not any("/.git" in n for n in names), "the .git directory was built in"
    for owner, mode, name in rows:
        assert owner == "1001:0", name
        user, group = int(mode, 8) >> 6 & 7, int(mode, 8) >> 3 & 7
        assert user == group, f"{name}: mode {mode} is not g=u"
    code, text = run_in_image(engine, out, ["cat", "/opt/app-root/src/01-python-basics.ipynb"])
    assert text == '{"edited": "not committed"}'
    assert_nothing_left(engine)


def test_file_url_with_ref_and_context_dir(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    repo = tmp_path / "monorepo"
    first = make_repo(repo, SAMPLES, subdir="courses/intro")
    git(repo, "tag", "v1")
    (repo / "courses/intro/later.txt").write_text("added after v1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "later")
    out = track.image(tag("url"))
    result = build(
        engine, request(f"file://{repo}", out, tiny_builder, ref="v1", context_dir="courses/intro")
    )
    if result.deps_image:
        track.image(result.deps_image)
    labels = engine.inspect_image(out).config.labels
    assert labels["io.openshift.s2i.build.commit.id"] == first
    assert labels["io.openshift.s2i.build.commit.ref"] == "v1"
    assert labels["io.openshift.s2i.build.source-context-dir"] == "courses/intro"
    assert labels["io.openshift.s2i.build.source-location"] == f"file://{repo}"
    code, listing = run_in_image(engine, out, ["ls", "/opt/app-root/src"])
    assert code == 0 and "03-plotting.ipynb" in listing.split()
    assert "later.txt" not in listing.split()
    assert_nothing_left(engine)


def test_environment_precedence(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    (src / ".s2i").mkdir(parents=True)
    (src / ".s2i" / "environment").write_text("A=from-s2i\nB=from-s2i\nC=from-s2i\n")
    env_file = tmp_path / "build.env"
    env_file.write_text("B=from-E\nC=from-E\n")
    out = track.image(tag("env"))
    build(engine, request(src, out, tiny_builder, env_files=(env_file,), env=(("C", "from-e"),)))
    env = engine.inspect_image(out).config.env
    assert (env["A"], env["B"], env["C"]) == ("from-s2i", "from-E", "from-e")


@pytest.mark.matrix
def test_scripts_from_the_repository_then_scripts_url(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    (src / ".s2i" / "bin").mkdir(parents=True)
    (src / ".s2i" / "bin" / "assemble").write_text(
        "#!/bin/sh\nset -eu\necho 'repo assemble override'\nexec /usr/libexec/s2i/assemble\n"
    )
    (src / ".s2i" / "bin" / "run").write_text("#!/bin/sh\necho repo run\n")
    events = Events()
    out = track.image(tag("scripts"))
    build(engine, request(src, out, tiny_builder), events)
    assert "repo assemble override" in events.outputs and "assemble done" in events.outputs
    # The server is then started the repository's way: said, once, before the class.
    said = [w for w in events.warnings if "replaces the builder's run script" in w]
    assert len(said) == 1, events.warnings
    assert engine.inspect_image(out).config.cmd == ("/tmp/scripts/run",)
    code, text = run_in_image(engine, out, ["/tmp/scripts/run"])
    assert (code, text.strip()) == (0, "repo run")

    # --scripts-url file:// wins over the repository's .s2i/bin.
    url_dir = tmp_path / "scripts"
    url_dir.mkdir()
    (url_dir / "assemble").write_text(
        "#!/bin/sh\nset -eu\necho 'url assemble'\nexec /usr/libexec/s2i/assemble\n"
    )
    (url_dir / "assemble").chmod(0o755)
    events = Events()
    build(engine, request(src, out, tiny_builder, scripts_url=f"file://{url_dir}"), events)
    assert "url assemble" in events.outputs and "repo assemble override" not in events.outputs
    assert any("replaces the builder's run script" in w for w in events.warnings)
    assert engine.inspect_image(out).config.cmd == ("/tmp/scripts/run",)
    assert_nothing_left(engine)  # the first image, untagged by the rebuild, was removed


@pytest.mark.matrix
def test_dependency_layer_is_reused_by_a_notebook_only_rebuild(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").write_text(f"# {SESSION_ID}\n-r more.txt\n")
    (src / "more.txt").write_text("numpy==2.4.6\n")
    out = track.image(tag("deps"))
    events = Events()
    first = build(engine, request(src, out, tiny_builder), events)
    track.image(first.deps_image)
    assert first.deps_image.startswith("nbs2i-cache/deps:") and not first.deps_reused
    assert "assemble: phase=deps uid=1001 gid=0" in events.outputs
    assert "requirements unchanged: not installing" in events.outputs

    (src / "02-reading-a-csv.ipynb").write_text('{"cells": []}')
    events = Events()
    second = build(engine, request(src, out, tiny_builder), events)
    assert second.deps_reused and second.deps_image == first.deps_image
    assert not any("phase=deps" in line for line in events.outputs)
    deps_layers = engine.inspect_image(first.deps_image).layers
    image_layers = engine.inspect_image(out).layers
    assert image_layers[: len(deps_layers)] == deps_layers, "not on top of the dependency layer"

    # An included file changes: a new dependency layer.
    (src / "more.txt").write_text("numpy==2.4.5\n")
    third = build(engine, request(src, out, tiny_builder))
    track.image(third.deps_image)
    assert third.deps_image != first.deps_image and not third.deps_reused
    assert_nothing_left(engine)


@pytest.mark.matrix
def test_incremental_hands_artifacts_to_assemble(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    out = track.image(tag("incr"))
    events = Events()
    first = build(engine, request(src, out, tiny_builder, incremental=True), events)
    assert not first.incremental
    assert any("no previous" in w for w in events.warnings)
    events = Events()
    second = build(engine, request(src, out, tiny_builder, incremental=True), events)
    assert second.incremental
    restored = [line for line in events.outputs if line.startswith("restored artifacts:")]
    assert restored and "build-" in restored[0]
    code, listing = run_in_image(engine, out, ["ls", "/opt/app-root/cache"])
    assert code == 0 and len(listing.split()) == 2, listing  # the first build's file and its own
    assert_nothing_left(engine)


def test_incremental_falls_back_to_a_clean_build(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    (src / ".s2i" / "bin").mkdir(parents=True)
    (src / ".s2i" / "bin" / "save-artifacts").write_text("#!/bin/sh\necho broken >&2\nexit 4\n")
    out = track.image(tag("incr-fail"))
    build(engine, request(src, out, tiny_builder))
    events = Events()
    result = build(engine, request(src, out, tiny_builder, incremental=True), events)
    assert not result.incremental
    assert any("save-artifacts exited with code 4" in w for w in events.warnings), events.warnings
    assert not any(line.startswith("restored artifacts") for line in events.outputs)
    assert_nothing_left(engine)


@pytest.mark.matrix
def test_injected_files_and_ca_bundle_are_in_no_layer(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)  # with requirements.txt: the deps container gets them too
    (src / "requirements.txt").write_text(f"# inject {SESSION_ID}\n")
    secret = f"s3cret-{SESSION_ID}-token".encode()
    ca_marker = f"-----BEGIN CERTIFICATE----- test-ca-{SESSION_ID}".encode()
    secret_file = tmp_path / "api-token.txt"
    secret_file.write_bytes(secret)
    conf_dir = tmp_path / "conf"
    (conf_dir / "pip").mkdir(parents=True)
    conf_marker = f"index-url = https://pypi.internal/{SESSION_ID}".encode()
    (conf_dir / "pip" / "pip.conf").write_bytes(conf_marker)
    ca = tmp_path / "corp-ca.pem"
    ca.write_bytes(ca_marker + b"\n")
    out = track.image(tag("inject"))
    events = Events()
    result = build(
        engine,
        request(
            src,
            out,
            tiny_builder,
            injections=(
                Injection.parse(f"{secret_file}:/run/secrets/course"),
                Injection.parse(f"{conf_dir}:/run/secrets/course"),  # same dir: one volume
            ),
            ca_bundle=ca,
            env=(("TINY_SHOW", "/run/secrets/course/api-token.txt"),),
        ),
        events,
    )
    track.image(result.deps_image)
    assert f"show: {secret.decode()}" in events.outputs  # present while assemble ran
    assert "ca bundle readable" in events.outputs
    needles = [secret, ca_marker, conf_marker, b"api-token.txt", b"corp-ca", b"pip.conf"]
    hits = find_in_layers(engine, out, needles)
    assert hits == [], f"injected content found in layers: {hits}"
    env = engine.inspect_image(out).config.env
    assert "PIP_CERT" not in env and "SSL_CERT_FILE" not in env
    assert_nothing_left(engine)


def test_usage_runs_the_usage_script(engine: Engine, tiny_builder: str) -> None:
    text = usage(engine, tiny_builder, LABELS)
    assert text.strip() == "tiny builder: nbs2i build SOURCE TAG --builder THIS"
    assert_nothing_left(engine)


def test_cli_json_events_and_usage(tiny_builder: str, track: Tracker, tmp_path: Path) -> None:
    src = one_notebook(tmp_path)
    out = track.image(tag("json"))
    labels = label_args("--container-label")
    done = nbs2i("build", str(src), out, "--builder", tiny_builder, "--json", *labels)
    assert done.code == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"step", "output", "done"} <= {e["event"] for e in events}
    assert events[-1]["event"] == "done" and events[-1]["tag"] == out
    assert events[-1]["method"] == "assemble"
    shown = nbs2i("usage", out, *labels)
    assert shown.code == 0, shown.stderr
    assert "tiny builder" in shown.stdout


# SIGTERM on every engine; the three on the host's.
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.matrix), signal.SIGHUP]
)
def test_a_stop_signal_during_assemble_leaves_nothing(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path, signum: int
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").write_text(f"# stop {SESSION_ID} {signum}\n")
    secret = tmp_path / "token"
    secret.write_text("x")
    out = track.image(tag(f"stop-{signum}"))
    running = Running(
        "build",
        str(src),
        out,
        "--builder",
        tiny_builder,
        "-e",
        "TINY_SLEEP=120",
        "--inject",
        f"{secret}:/run/secrets/x",
        *label_args("--container-label"),
    )
    try:
        running.wait_for("sleeping", timeout=120)
        assert engine.containers(labels=[SESSION_FILTER]), "no assemble container running"
        running.signal(signum)
    finally:
        done = running.finish(timeout=60)
    assert done.code == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("nbs2i: interrupted")
    assert not engine.image_exists(out)
    # the dependency layer finished before the signal: a tagged cache, not litter
    for image in engine.images(labels=[SESSION_FILTER, "nbs2i.role=deps"]):
        for ref in image.tags:
            track.image(ref)
    assert_nothing_left(engine)


@pytest.mark.matrix
def test_network_and_assemble_user_options(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    out = track.image(tag("opts"))
    events = Events()
    build(
        engine,
        request(
            src, out, tiny_builder, network="none", assemble_user="1002", env=(("TINY_NET", "1"),)
        ),
        events,
    )
    assert "net: lo " in events.outputs, events.outputs  # --network none: loopback only
    assert "assemble: phase=all uid=1002 gid=0" in events.outputs
    assert engine.inspect_image(out).config.user == "1001"  # the image USER is kept
    code, text = run_in_image(engine, out, ["stat", "-c", "%u:%g", "/opt/app-root/src/a.ipynb"])
    assert (code, text.strip()) == (0, "1002:0")  # the source is owned by the assemble user
    assert_nothing_left(engine)


def test_a_builder_without_the_deps_phase_builds_in_one_step(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").write_text(f"# one step {SESSION_ID}\n")
    out = track.image(tag("one-step"))
    events = Events()
    result = build(engine, request(src, out, tiny_builder, env=(("TINY_FAIL_DEPS", "1"),)), events)
    assert result.deps_image == "" and not result.deps_reused
    assert any("dependency layer failed" in w for w in events.warnings), events.warnings
    assert "installing requirements" in events.outputs and "assemble done" in events.outputs
    assert not engine.images(labels=["nbs2i.role=deps", SESSION_FILTER])
    assert_nothing_left(engine)
