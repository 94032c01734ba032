"""The build flow against the real engine, with the tiny test builder (seconds a build).

The flow itself: labels, config, owners and modes, environment precedence, script
lookup, the dependency layer, --incremental, --inject/--ca-bundle (absent from
every layer), --json, `nbs2i usage`, Ctrl-C. The real builder and the sample
notebooks are in test_build_sample.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nbs2i.build import BuildRequest, Injection, build, run_usage
from nbs2i.engine import Engine
from nbs2i.progress import Event
from tests.conftest import SESSION_FILTER, SESSION_ID, TEST_LABELS, Tracker
from tests.tiny_builder import find_in_layers, git, make_repo, one_notebook, run_in_image

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "sample-notebooks"
LABELS = tuple(TEST_LABELS.items())


def tag(name: str) -> str:
    return f"nbs2i-test/{name}:{SESSION_ID}"


def build_request(source: Path | str, out: str, builder: str, **kw: object) -> BuildRequest:
    return BuildRequest(source=str(source), tag=out, builder=builder, container_labels=LABELS, **kw)  # type: ignore[arg-type]


def collect() -> tuple[list[Event], object]:
    events: list[Event] = []
    return events, events.append


def left_behind(engine: Engine) -> tuple[list[dict], list[dict], list[dict]]:
    """Containers, volumes and untagged images of this test session."""
    return (
        engine.containers(labels=[SESSION_FILTER]),
        engine.volumes(labels=[SESSION_FILTER]),
        engine.images(labels=[SESSION_FILTER], dangling=True),
    )


def assert_nothing_left(engine: Engine) -> None:
    containers, volumes, dangling = left_behind(engine)
    assert containers == [], f"containers left: {[c['Id'][:12] for c in containers]}"
    assert volumes == [], f"volumes left: {[v['Name'] for v in volumes]}"
    assert dangling == [], f"untagged images left: {[i['Id'][:19] for i in dangling]}"


def nbs2i_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbs2i", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


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
    events: list[Event] = []
    result = build(
        engine,
        build_request(
            repo, out, tiny_builder, env=(("LEVEL", "2"),), labels=(("course", "phys101"),)
        ),
        events.append,
    )
    if result.deps_image:
        track.image(result.deps_image)
    info = engine.inspect_image(out)
    assert info["Id"] == result.image_id
    config = info["Config"]
    labels = config["Labels"]
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
    assert config["Entrypoint"] == ["/usr/bin/env"]
    assert config["Cmd"] == ["/usr/libexec/s2i/run"]
    assert config["User"] == "1001"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["TINY_BUILDER"] == "1"
    assert env["COURSE"] == "physics" and env["LEVEL"] == "2"
    assert not {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} & set(env)
    assert any(e.kind == "output" and e.message == "assemble done" for e in events)
    assert events[-1].kind == "done"

    code, listing = run_in_image(
        engine,
        out,
        ["find", "/opt/app-root/src", "-printf", "%U:%G %m %p\\n"],
        TEST_LABELS,
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
    code, text = run_in_image(
        engine, out, ["cat", "/opt/app-root/src/01-python-basics.ipynb"], TEST_LABELS
    )
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
        engine,
        build_request(f"file://{repo}", out, tiny_builder, ref="v1", context_dir="courses/intro"),
    )
    if result.deps_image:
        track.image(result.deps_image)
    labels = engine.inspect_image(out)["Config"]["Labels"]
    assert labels["io.openshift.s2i.build.commit.id"] == first
    assert labels["io.openshift.s2i.build.commit.ref"] == "v1"
    assert labels["io.openshift.s2i.build.source-context-dir"] == "courses/intro"
    assert labels["io.openshift.s2i.build.source-location"] == f"file://{repo}"
    code, listing = run_in_image(engine, out, ["ls", "/opt/app-root/src"], TEST_LABELS)
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
    build(
        engine,
        build_request(src, out, tiny_builder, env_files=(env_file,), env=(("C", "from-e"),)),
    )
    env = dict(i.split("=", 1) for i in engine.inspect_image(out)["Config"]["Env"])
    assert (env["A"], env["B"], env["C"]) == ("from-s2i", "from-E", "from-e")


def test_scripts_from_the_repository_then_scripts_url(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    (src / ".s2i" / "bin").mkdir(parents=True)
    (src / ".s2i" / "bin" / "assemble").write_text(
        "#!/bin/sh\nset -eu\necho 'repo assemble override'\nexec /usr/libexec/s2i/assemble\n"
    )
    (src / ".s2i" / "bin" / "run").write_text("#!/bin/sh\necho repo run\n")
    events: list[Event] = []
    out = track.image(tag("scripts"))
    build(engine, build_request(src, out, tiny_builder), events.append)
    outputs = [e.message for e in events if e.kind == "output"]
    assert "repo assemble override" in outputs and "assemble done" in outputs
    assert engine.inspect_image(out)["Config"]["Cmd"] == ["/tmp/scripts/run"]
    code, text = run_in_image(engine, out, ["/tmp/scripts/run"], TEST_LABELS)
    assert (code, text.strip()) == (0, "repo run")

    # --scripts-url file:// wins over the repository's .s2i/bin.
    url_dir = tmp_path / "scripts"
    url_dir.mkdir()
    (url_dir / "assemble").write_text(
        "#!/bin/sh\nset -eu\necho 'url assemble'\nexec /usr/libexec/s2i/assemble\n"
    )
    (url_dir / "assemble").chmod(0o755)
    events.clear()
    build(
        engine,
        build_request(src, out, tiny_builder, scripts_url=f"file://{url_dir}"),
        events.append,
    )
    outputs = [e.message for e in events if e.kind == "output"]
    assert "url assemble" in outputs and "repo assemble override" not in outputs
    assert engine.inspect_image(out)["Config"]["Cmd"] == ["/tmp/scripts/run"]
    assert_nothing_left(engine)  # the first image, untagged by the rebuild, was removed


def test_dependency_layer_is_reused_by_a_notebook_only_rebuild(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").write_text(f"# {SESSION_ID}\n-r more.txt\n")
    (src / "more.txt").write_text("numpy==2.4.6\n")
    out = track.image(tag("deps"))
    events: list[Event] = []
    first = build(engine, build_request(src, out, tiny_builder), events.append)
    track.image(first.deps_image)
    assert first.deps_image.startswith("nbs2i-cache/deps:") and not first.deps_reused
    outputs = [e.message for e in events if e.kind == "output"]
    assert "assemble: phase=deps uid=1001 gid=0" in outputs
    assert "requirements unchanged: not installing" in outputs

    (src / "02-reading-a-csv.ipynb").write_text('{"cells": []}')
    events.clear()
    second = build(engine, build_request(src, out, tiny_builder), events.append)
    assert second.deps_reused and second.deps_image == first.deps_image
    assert not any("phase=deps" in e.message for e in events)
    deps_id = engine.inspect_image(first.deps_image)["Id"]
    parents = [h["Id"] for h in engine.history(out)]
    assert deps_id in parents, "the rebuild is not on top of the dependency layer"

    # An included file changes: a new dependency layer.
    (src / "more.txt").write_text("numpy==2.4.5\n")
    third = build(engine, build_request(src, out, tiny_builder))
    track.image(third.deps_image)
    assert third.deps_image != first.deps_image and not third.deps_reused
    assert_nothing_left(engine)


def test_incremental_hands_artifacts_to_assemble(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    out = track.image(tag("incr"))
    events: list[Event] = []
    first = build(engine, build_request(src, out, tiny_builder, incremental=True), events.append)
    assert not first.incremental
    assert any(e.kind == "warning" and "no previous" in e.message for e in events)
    events.clear()
    second = build(engine, build_request(src, out, tiny_builder, incremental=True), events.append)
    assert second.incremental
    restored = [e.message for e in events if e.message.startswith("restored artifacts:")]
    assert restored and "build-" in restored[0]
    code, listing = run_in_image(engine, out, ["ls", "/opt/app-root/cache"], TEST_LABELS)
    assert code == 0 and len(listing.split()) == 2, listing  # the first build's file and its own
    assert_nothing_left(engine)


def test_incremental_falls_back_to_a_clean_build(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    (src / ".s2i" / "bin").mkdir(parents=True)
    (src / ".s2i" / "bin" / "save-artifacts").write_text("#!/bin/sh\necho broken >&2\nexit 4\n")
    out = track.image(tag("incr-fail"))
    build(engine, build_request(src, out, tiny_builder))
    events: list[Event] = []
    result = build(engine, build_request(src, out, tiny_builder, incremental=True), events.append)
    assert not result.incremental
    warnings = [e.message for e in events if e.kind == "warning"]
    assert any("save-artifacts exited with code 4" in w for w in warnings), warnings
    assert not any(e.message.startswith("restored artifacts") for e in events)
    assert_nothing_left(engine)


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
    events: list[Event] = []
    result = build(
        engine,
        build_request(
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
        events.append,
    )
    track.image(result.deps_image)
    outputs = [e.message for e in events if e.kind == "output"]
    assert f"show: {secret.decode()}" in outputs  # present while assemble ran
    assert "ca bundle readable" in outputs
    needles = [secret, ca_marker, conf_marker, b"api-token.txt", b"corp-ca", b"pip.conf"]
    hits = find_in_layers(engine, out, needles)
    assert hits == [], f"injected content found in layers: {hits}"
    env = dict(i.split("=", 1) for i in engine.inspect_image(out)["Config"]["Env"])
    assert "PIP_CERT" not in env and "SSL_CERT_FILE" not in env
    assert_nothing_left(engine)


def test_usage_runs_the_usage_script(engine: Engine, tiny_builder: str) -> None:
    text = run_usage(engine, tiny_builder, labels=TEST_LABELS)
    assert text.strip() == "tiny builder: nbs2i build SOURCE TAG --builder THIS"
    assert_nothing_left(engine)


def test_cli_json_events_and_usage(tiny_builder: str, track: Tracker, tmp_path: Path) -> None:
    src = one_notebook(tmp_path)
    out = track.image(tag("json"))
    labels = [a for k, v in TEST_LABELS.items() for a in ("--container-label", f"{k}={v}")]
    done = nbs2i_cli("build", str(src), out, "--builder", tiny_builder, "--json", *labels)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"step", "output", "done"} <= {e["event"] for e in events}
    assert events[-1]["event"] == "done" and events[-1]["tag"] == out
    usage = nbs2i_cli("usage", out, *labels)
    assert usage.returncode == 0, usage.stderr
    assert "tiny builder" in usage.stdout


def test_ctrl_c_during_assemble_leaves_nothing(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").write_text(f"# ctrl-c {SESSION_ID}\n")
    secret = tmp_path / "token"
    secret.write_text("x")
    out = track.image(tag("ctrl-c"))
    labels = [a for k, v in TEST_LABELS.items() for a in ("--container-label", f"{k}={v}")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbs2i",
            "build",
            str(src),
            out,
            "--builder",
            tiny_builder,
            "-e",
            "TINY_SLEEP=120",
            "--inject",
            f"{secret}:/run/secrets/x",
            *labels,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # bounded: assemble prints "sleeping" within seconds
            seen.append(line)
            if line.strip() == "sleeping" or time.monotonic() > deadline:
                break
        assert seen and seen[-1].strip() == "sleeping", "".join(seen)
        assert engine.containers(labels=[SESSION_FILTER]), "no assemble container running"
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1].startswith("nbs2i: interrupted")
    assert not engine.image_exists(out)
    # the dependency layer finished before the interrupt: it is a tagged cache, not litter
    for image in engine.images(labels=[SESSION_FILTER, "nbs2i.role=deps"]):
        for ref in image.get("RepoTags") or []:
            track.image(ref)
    assert_nothing_left(engine)


def test_network_and_assemble_user_options(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    out = track.image(tag("opts"))
    events: list[Event] = []
    build(
        engine,
        build_request(
            src, out, tiny_builder, network="none", assemble_user="1002", env=(("TINY_NET", "1"),)
        ),
        events.append,
    )
    outputs = [e.message for e in events if e.kind == "output"]
    assert "net: lo " in outputs, outputs  # --network none: loopback only
    assert "assemble: phase=all uid=1002 gid=0" in outputs
    config = engine.inspect_image(out)["Config"]
    assert config["User"] == "1001"  # the image USER is kept
    code, text = run_in_image(
        engine, out, ["stat", "-c", "%u:%g", "/opt/app-root/src/a.ipynb"], TEST_LABELS
    )
    assert (code, text.strip()) == (0, "1002:0")  # the source is owned by the assemble user
    assert_nothing_left(engine)


def test_a_builder_without_the_deps_phase_builds_in_one_step(
    engine: Engine, track: Tracker, tiny_builder: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").write_text(f"# one step {SESSION_ID}\n")
    out = track.image(tag("one-step"))
    events: list[Event] = []
    result = build(
        engine, build_request(src, out, tiny_builder, env=(("TINY_FAIL_DEPS", "1"),)), events.append
    )
    assert result.deps_image == "" and not result.deps_reused
    warnings = [e.message for e in events if e.kind == "warning"]
    assert any("dependency layer failed" in w for w in warnings), warnings
    outputs = [e.message for e in events if e.kind == "output"]
    assert "installing requirements" in outputs and "assemble done" in outputs
    assert not engine.images(labels=["nbs2i.role=deps", "nbs2i.test.session=" + SESSION_ID])
    assert_nothing_left(engine)
