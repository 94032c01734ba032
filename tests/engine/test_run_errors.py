"""`nbs2i run` failures against the real engine: one line, non-zero exit, nothing left.

These use tiny images made from debian:bookworm-slim (no notebook server in
them), so they run before and without the builder image.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbs2i.engine import Engine
from tests.conftest import SESSION_ID, TEST_LABELS, Tracker

BASE = "debian:bookworm-slim"


def _image(engine: Engine, tracker: Tracker, name: str, dockerfile: str) -> str:
    tag = f"nbs2i-test/{name}:{SESSION_ID}"
    tracker.image(tag)
    events = engine.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, labels=TEST_LABELS, pull=False
    )
    errors = [e["error"] for e in events if "error" in e]
    assert not errors, errors
    return tag


@pytest.fixture(scope="session")
def exits_image(engine: Engine, session_tracker: Tracker) -> str:
    """A 'run script' that prints 30 lines and exits 1 during start-up."""
    # All on stdout: the engine logs stdout and stderr through separate pipes, so
    # their relative order in the log is not fixed.
    script = 'for i in $(seq 1 30); do echo "start-up line $i"; done; echo "run: boom"; exit 1'
    cmd = json.dumps(["sh", "-c", script])
    return _image(engine, session_tracker, "exits", f"FROM {BASE}\nEXPOSE 8888\nCMD {cmd}\n")


@pytest.fixture(scope="session")
def silent_image(engine: Engine, session_tracker: Tracker) -> str:
    """Stays up and never listens on any port."""
    return _image(engine, session_tracker, "silent", f'FROM {BASE}\nCMD ["sleep", "600"]\n')


@pytest.fixture
def case() -> Iterator[str]:
    """A label value unique to this test, to look for leftovers of this test alone."""
    yield uuid.uuid4().hex[:8]


def nbs2i(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NBS2I_DEBUG", "NBS2I_PASSWORD")}
    return subprocess.run(
        [sys.executable, "-m", "nbs2i", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def run_args(image: str, case: str, *extra: str) -> list[str]:
    labels = [f"--label={k}={v}" for k, v in {**TEST_LABELS, "nbs2i.test.case": case}.items()]
    return ["run", image, "--port", "0", *labels, *extra]


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nbs2i: error: "), result.stderr
    return last


def assert_nothing_left(engine: Engine, case: str) -> None:
    label = f"nbs2i.test.case={case}"
    assert engine.containers(labels=[label]) == []
    assert engine.volumes(labels=[label]) == []


def test_image_that_does_not_exist(engine: Engine, case: str) -> None:
    result = nbs2i(*run_args(f"nbs2i-test/no-such-image:{case}", case))
    line = error_line(result)
    assert f"image nbs2i-test/no-such-image:{case} does not exist" in line
    assert "nbs2i build" in line
    assert_nothing_left(engine, case)


def test_port_already_taken(engine: Engine, silent_image: str, case: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        args = run_args(silent_image, case)
        args[args.index("--port") + 1] = str(port)
        result = nbs2i(*args)
    line = error_line(result)
    assert f"port {port} on 127.0.0.1 is already taken" in line
    assert "--port" in line
    assert_nothing_left(engine, case)


def test_port_taken_by_another_container_is_reported_too(
    engine: Engine, silent_image: str, track: Tracker, case: str
) -> None:
    """When the engine, not our pre-check, finds the port taken (its proxy holds it)."""
    holder = track.container(
        engine.create_container(
            silent_image,
            labels=TEST_LABELS,
            ports=[8888],
            host_config={"port_bindings": {8888: ("127.0.0.1",)}},
        )
    )
    engine.start(holder)
    ports = engine.inspect_container(holder)["NetworkSettings"]["Ports"]["8888/tcp"]
    port = ports[0]["HostPort"]
    args = run_args(silent_image, case)
    args[args.index("--port") + 1] = port
    line = error_line(nbs2i(*args))
    assert f"port {port} on 127.0.0.1 is already taken" in line
    assert_nothing_left(engine, case)


def test_volume_directory_not_writable(
    engine: Engine, silent_image: str, tmp_path: Path, case: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o755)  # owned by whoever runs the tests, group not 0-writable
    result = nbs2i(*run_args(silent_image, case, "--volume", str(work)))
    line = error_line(result)
    assert f"workspace directory {work} is not writable by UID" in line
    assert f"chgrp 0 {work} && chmod g+rwX {work}" in line
    assert len(result.stderr.strip().splitlines()) == 1
    assert_nothing_left(engine, case)


def test_server_exits_during_start_up(engine: Engine, exits_image: str, case: str) -> None:
    volume = f"nbs2i-test-{case}"
    result = nbs2i(*run_args(exits_image, case, "--volume", volume))
    line = error_line(result)
    assert "the server exited during start-up (exit code 1)" in line
    details = result.stderr.strip().splitlines()[-21:-1]
    # The last 20 lines of its log, above the error line.
    assert details[-1] == "run: boom"
    assert details[0] == "start-up line 12"  # lines 12-30 and boom: the last 20
    assert "start-up line 11" not in result.stderr
    # The volume this run created is gone with the container.
    assert volume not in [v["Name"] for v in engine.volumes()]
    assert_nothing_left(engine, case)


def test_server_that_never_answers(engine: Engine, silent_image: str, case: str) -> None:
    began = time.monotonic()
    result = nbs2i(*run_args(silent_image, case, "--timeout", "3"))
    elapsed = time.monotonic() - began
    line = error_line(result)
    assert "did not answer on 127.0.0.1:" in line and "within 3 s" in line
    assert "--timeout" in line
    assert elapsed < 30
    assert_nothing_left(engine, case)


def test_stop_refuses_a_container_nbs2i_did_not_start(
    engine: Engine, silent_image: str, track: Tracker, case: str
) -> None:
    name = f"nbs2i-test-other-{case}"
    cid = track.container(engine.create_container(silent_image, name=name, labels=TEST_LABELS))
    result = nbs2i("stop", name)
    assert "was not started by nbs2i run" in error_line(result)
    assert engine.inspect_container(cid)["Id"] == cid  # still there
    assert "no container named" in error_line(nbs2i("stop", f"nbs2i-test-none-{case}"))


def test_root_uid_is_refused(engine: Engine, silent_image: str, case: str) -> None:
    line = error_line(nbs2i(*run_args(silent_image, case, "--uid", "0")))
    assert "refusing to run as UID 0" in line
    assert_nothing_left(engine, case)


def test_sigterm_while_waiting_leaves_nothing(engine: Engine, silent_image: str, case: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBS2I_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbs2i", *run_args(silent_image, case, "--timeout", "60")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        # Wait (bounded) until its container exists, then stop nbs2i itself.
        label = f"nbs2i.test.case={case}"
        deadline = time.monotonic() + 30
        while not engine.containers(labels=[label]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.containers(labels=[label]), "the container never appeared"
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert "everything this run started was removed" in err
    assert_nothing_left(engine, case)
