"""`nbs2i run` and `nbs2i stop` failures against the real engine: one line,
non-zero exit, nothing left, and nothing of anyone else touched.

Most use tiny images made from debian:bookworm-slim (no notebook server in
them); the `stop` tests need a server that answers, the builder image.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from nbs2i import labels, restricted, run
from nbs2i.engine import ContainerSpec, Engine
from nbs2i.errors import NotFound
from tests.support.cli import Running, interrupt, nbs2i
from tests.support.images import build_dockerfile
from tests.support.leftovers import assert_nothing_left
from tests.support.poll import until
from tests.support.session import LABEL_PAIRS, LABELS, label_args, tag
from tests.support.tracker import Tracker

BASE = "debian:bookworm-slim"


@pytest.fixture(scope="session")
def exits_image(engine: Engine, session_tracker: Tracker) -> str:
    """A 'run script' that prints 30 lines and exits 1 during start-up."""
    # All on stdout: the engine logs stdout and stderr through separate pipes, so
    # their relative order in the log is not fixed.
    script = 'for i in $(seq 1 30); do echo "start-up line $i"; done; echo "run: boom"; exit 1'
    cmd = json.dumps(["sh", "-c", script])
    dockerfile = f"FROM {BASE}\nEXPOSE 8888\nCMD {cmd}\n"
    return build_dockerfile(engine, session_tracker.image(tag("exits")), dockerfile)


@pytest.fixture(scope="session")
def silent_image(engine: Engine, session_tracker: Tracker) -> str:
    """Stays up and never listens on any port."""
    dockerfile = f'FROM {BASE}\nCMD ["sleep", "600"]\n'
    return build_dockerfile(engine, session_tracker.image(tag("silent")), dockerfile)


@pytest.fixture
def case() -> str:
    """A label unique to this test, to look for leftovers of this test alone."""
    return f"nbs2i.test.case={uuid.uuid4().hex[:8]}"


def run_args(image: str, case: str, *extra: str) -> list[str]:
    return ["run", image, "--port", "0", *label_args(), "--label", case, *extra]


def test_image_that_does_not_exist(engine: Engine, case: str) -> None:
    absent = tag("no-such-image")
    line = nbs2i(*run_args(absent, case)).error_line
    assert f"image {absent} does not exist" in line and "nbs2i build" in line
    assert_nothing_left(engine, case)


def test_port_already_taken(engine: Engine, silent_image: str, case: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        args = run_args(silent_image, case)
        args[args.index("--port") + 1] = str(port)
        line = nbs2i(*args).error_line
    assert f"port {port} on 127.0.0.1 is already taken" in line
    assert "--port" in line
    assert_nothing_left(engine, case)


def test_port_taken_by_another_container_is_reported_too(
    engine: Engine, silent_image: str, track: Tracker, case: str
) -> None:
    """When the engine, not our pre-check, finds the port taken (its proxy holds it)."""
    spec = restricted.container_spec(silent_image, uid=restricted.random_uid(), labels=LABELS)
    holder = track.container(engine.create_container(spec))
    engine.start(holder)
    port = restricted.published_port(engine.inspect_container(holder), restricted.SERVER_PORT)
    assert port is not None
    args = run_args(silent_image, case)
    args[args.index("--port") + 1] = str(port)
    line = nbs2i(*args).error_line
    assert f"port {port} on 127.0.0.1 is already taken" in line
    assert_nothing_left(engine, case)


def test_volume_directory_not_writable(
    engine: Engine, silent_image: str, tmp_path: Path, case: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o755)  # owned by whoever runs the tests, group not 0-writable
    result = nbs2i(*run_args(silent_image, case, "--volume", str(work)))
    line = result.error_line
    assert f"workspace directory {work} is not writable by UID" in line
    assert f"chgrp 0 {work} && chmod g+rwX {work}" in line
    assert len(result.stderr.strip().splitlines()) == 1
    assert_nothing_left(engine, case)


@pytest.mark.parametrize("system", ["/", "/etc"])
def test_a_system_directory_is_refused_without_advice_to_open_it(
    engine: Engine, silent_image: str, case: str, system: str
) -> None:
    result = nbs2i(*run_args(silent_image, case, "--volume", system))
    assert f"{system} is a system directory, not a workspace" in result.error_line
    assert "chgrp" not in result.stderr and "chmod" not in result.stderr
    assert_nothing_left(engine, case)


def test_server_exits_during_start_up(engine: Engine, exits_image: str, case: str) -> None:
    volume = f"nbs2i-test-{uuid.uuid4().hex[:8]}"
    result = nbs2i(*run_args(exits_image, case, "--volume", volume))
    line = result.error_line
    assert "the server exited during start-up (exit code 1)" in line
    details = result.stderr.strip().splitlines()[-21:-1]
    # The last 20 lines of its log, above the error line.
    assert details[-1] == "run: boom"
    assert details[0] == "start-up line 12"  # lines 12-30 and boom: the last 20
    assert "start-up line 11" not in result.stderr
    # The volume this run created is gone with the container.
    with pytest.raises(NotFound):
        engine.inspect_volume(volume)
    assert_nothing_left(engine, case)


def test_server_that_never_answers(engine: Engine, silent_image: str, case: str) -> None:
    began = time.monotonic()
    result = nbs2i(*run_args(silent_image, case, "--timeout", "3"))
    elapsed = time.monotonic() - began
    line = result.error_line
    assert "did not answer on 127.0.0.1:" in line and "within 3 s" in line
    assert "--timeout" in line
    assert elapsed < 30
    assert_nothing_left(engine, case)


@pytest.mark.parametrize(
    ("uid", "message"),
    [("0", "refusing to run as UID 0"), ("99999999999", "UID 99999999999 is out of range")],
)
def test_bad_uids_are_refused(
    engine: Engine, silent_image: str, case: str, uid: str, message: str
) -> None:
    assert message in nbs2i(*run_args(silent_image, case, "--uid", uid)).error_line
    assert_nothing_left(engine, case)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_waiting_leaves_nothing(
    engine: Engine, silent_image: str, case: str, signum: int
) -> None:
    volume = f"nbs2i-test-{uuid.uuid4().hex[:8]}"
    running = Running(*run_args(silent_image, case, "--timeout", "60", "--volume", volume))
    try:
        # Wait (bounded) until its container runs, then stop nbs2i itself.
        until(
            lambda: [c for c in engine.containers(labels=[case]) if c.running],
            timeout=30,
            what="the run container running",
        )
        result = interrupt(running, signum, timeout=30)
    finally:
        running.finish(timeout=10)
    assert result.code == 130, result.stderr
    assert "everything this run started was removed" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(NotFound):
        engine.inspect_volume(volume)  # the volume it created, too
    assert_nothing_left(engine, case)


# -- nbs2i stop acts only on what nbs2i run made ----------------------------------


def test_stop_refuses_a_container_nbs2i_did_not_start(
    engine: Engine, silent_image: str, track: Tracker
) -> None:
    name = f"nbs2i-test-other-{uuid.uuid4().hex[:8]}"
    spec = ContainerSpec(image=silent_image, name=name, labels=LABELS)
    cid = track.container(engine.create_container(spec))
    assert "was not started by nbs2i run" in nbs2i("stop", name).error_line
    assert engine.inspect_container(cid).id == cid  # still there
    absent = f"nbs2i-test-none-{uuid.uuid4().hex[:8]}"
    assert f"no container named {absent}" in nbs2i("stop", absent).error_line


def test_stop_refuses_an_image_that_claims_to_be_a_run(
    engine: Engine, silent_image: str, track: Tracker
) -> None:
    """Any build can set labels; containers inherit them. An image labelled
    like an nbs2i run container, nonce included, still is not one."""
    forged = track.image(tag(f"forged-{uuid.uuid4().hex[:6]}"))
    forged_labels = f"{labels.ROLE}={labels.ROLE_RUN} {labels.RUN_NONCE}={'f' * 32}"
    build_dockerfile(engine, forged, f"FROM {silent_image}\nLABEL {forged_labels}\n")
    name = f"nbs2i-test-forged-{uuid.uuid4().hex[:8]}"
    cid = track.container(
        engine.create_container(ContainerSpec(image=forged, name=name, labels=LABELS))
    )
    info = engine.inspect_container(cid)
    assert info.labels[labels.ROLE] == labels.ROLE_RUN  # inherited, as feared
    assert "was not started by nbs2i run" in nbs2i("stop", name).error_line
    assert engine.inspect_container(cid).id == cid


def test_stop_handles_each_name_and_says_if_any_failed(
    engine: Engine, builder_image: str, silent_image: str, track: Tracker
) -> None:
    ours = [
        run.start(engine, run.RunRequest(image=builder_image, port=0, labels=LABEL_PAIRS))
        for _ in range(2)
    ]
    for server in ours:
        track.container(server.container_id)
    other = f"nbs2i-test-other-{uuid.uuid4().hex[:8]}"
    track.container(engine.create_container(ContainerSpec(silent_image, name=other, labels=LABELS)))
    absent = f"nbs2i-test-none-{uuid.uuid4().hex[:8]}"
    result = nbs2i("stop", ours[0].name, absent, other, ours[1].name)
    assert result.code == 1
    assert result.stdout.splitlines() == [f"stopped and removed {s.name}" for s in ours]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("nbs2i: error: ") for e in errors)
    assert f"no container named {absent}" in errors[0]
    assert f"container {other} was not started by nbs2i run" in errors[1]
    for server in ours:
        with pytest.raises(NotFound):
            engine.inspect_container(server.container_id)
    assert engine.inspect_container(other).name == other
