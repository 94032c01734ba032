"""The engine seam's retry policy and error translation.

A fault-injecting fake stands in for docker-py here: a real engine cannot be
made to reset a connection or answer 503 on demand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import docker.constants
import docker.errors
import pytest
import requests
import requests.exceptions

from nbs2i.engine import Engine
from nbs2i.engine.connection import NEWEST_API, negotiate_version
from nbs2i.engine.faults import RETRY_ATTEMPTS, call, is_transient, translate
from nbs2i.errors import EngineError, EngineUnavailable, NotFound


def api_error(status: int, explanation: str = "boom") -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(explanation, response=response, explanation=explanation)


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep the policy (attempts, what is transient) but not the sleeping.
    monkeypatch.setattr("tenacity.wait_exponential", lambda **_: lambda _state: 0)


@pytest.mark.parametrize(
    "fault",
    [
        requests.exceptions.ConnectionError("connection reset by peer"),
        requests.exceptions.ReadTimeout("read timed out"),
        api_error(503, "service unavailable"),
        api_error(502, "bad gateway"),
        api_error(500, "internal server error"),
    ],
)
def test_transient_faults_are_retried_until_success(fault: BaseException) -> None:
    fn = Flaky(fault, fault)
    assert call(fn) == "ok"
    assert fn.calls == 3


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (docker.errors.ImageNotFound("no such image: nope"), NotFound),
        (docker.errors.NotFound("no such container"), NotFound),
        (api_error(400, "invalid reference format"), EngineError),
        (api_error(409, "conflict: name in use"), EngineError),
        (api_error(500, "No such image: x"), EngineError),
    ],
)
def test_user_errors_are_never_retried(fault: BaseException, expected: type) -> None:
    fn = Flaky(fault, fault, fault)
    with pytest.raises(expected):
        call(fn)
    assert fn.calls == 1


def test_retries_are_bounded_in_attempts() -> None:
    fn = Flaky(*[requests.exceptions.ConnectionError("reset")] * 50)
    with pytest.raises(EngineUnavailable) as info:
        call(fn, where="unix:///var/run/docker.sock")
    assert fn.calls == RETRY_ATTEMPTS
    assert "unix:///var/run/docker.sock" in str(info.value)


def test_retries_are_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 20))  # every look at the clock: 20 s later
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    fn = Flaky(*[api_error(503)] * 50)
    with pytest.raises(EngineError):
        call(fn)
    assert fn.calls < RETRY_ATTEMPTS


@pytest.mark.parametrize(
    ("fault", "transient", "expected"),
    [
        (requests.exceptions.ConnectionError("reset"), True, EngineUnavailable),
        (requests.exceptions.ReadTimeout("read timed out"), True, EngineUnavailable),
        (api_error(503, "unavailable"), True, EngineError),
        (api_error(500, "internal"), True, EngineError),
        (api_error(500, "No such image: x"), False, EngineError),
        (docker.errors.ImageNotFound("No such image: x"), False, NotFound),
        (api_error(409, "conflict"), False, EngineError),
        # An answer that is not JSON is the engine's fault, not an nbs2i bug.
        (requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0), False, EngineError),
        (docker.errors.DockerException("something else"), False, EngineError),
    ],
)
def test_faults_are_judged_and_said_as_nbs2i_errors(
    fault: Exception, transient: bool, expected: type
) -> None:
    assert is_transient(fault) is transient
    assert type(translate(fault, "unix:///x.sock")) is expected


def test_server_error_message_is_one_line() -> None:
    fn = Flaky(*[api_error(400, "bad\nrequest   here")] * 2)
    with pytest.raises(EngineError) as info:
        call(fn)
    assert "\n" not in str(info.value)
    assert "bad request here" in str(info.value)


@pytest.mark.parametrize(
    ("server", "expected"),
    [("1.41", "1.41"), ("1.24", "1.24"), ("1.99", NEWEST_API)],
)
def test_version_negotiation_picks_the_newest_common_version(server: str, expected: str) -> None:
    assert negotiate_version(server, "1.12") == expected


def test_nbs2i_speaks_no_newer_api_than_docker_py() -> None:
    assert NEWEST_API == docker.constants.DEFAULT_DOCKER_API_VERSION


def test_version_negotiation_refuses_an_engine_too_old() -> None:
    with pytest.raises(EngineUnavailable, match="upgrade the engine"):
        negotiate_version("1.12", "1.12")


def _in_a_fresh_process(code: str, **env: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_modules_above_the_engine_load_without_docker_py() -> None:
    # `nbs2i --help` and --as-dockerfile import these; docker-py costs ~0.1 s.
    code = (
        "import sys\n"
        "import nbs2i.cli, nbs2i.engine, nbs2i.building, nbs2i.run, nbs2i.verify, nbs2i.prune\n"
        "print(sorted({'docker', 'requests', 'urllib3', 'tenacity'} & set(sys.modules)))\n"
    )
    assert _in_a_fresh_process(code) == ["[]"]


def test_no_engine_at_a_local_socket_is_said_before_docker_py_loads(tmp_path: Path) -> None:
    where = f"unix://{tmp_path}/absent.sock"
    code = (
        "import sys\n"
        "from nbs2i.engine import Engine\n"
        "from nbs2i.errors import EngineUnavailable\n"
        "try:\n"
        "    Engine.connect()\n"
        "except EngineUnavailable as exc:\n"
        "    print(exc.problem)\n"
        "print('docker' in sys.modules)\n"
    )
    assert _in_a_fresh_process(code, DOCKER_HOST=where) == [
        f"no Docker engine answers at {where}",
        "False",
    ]


def test_no_engine_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    with pytest.raises(EngineUnavailable) as info:
        Engine.connect()
    message = str(info.value)
    assert "tcp://127.0.0.1:1" in message  # where it looked
    assert "ensure-engine" in message and "DOCKER_HOST" in message  # what to do
    assert "\n" not in message


class FlakyApi:
    """docker-py's APIClient, reduced to a put_archive that resets once.

    Like the real one it reads the whole payload before the fault strikes, so
    a generator handed to it is spent by the time the error surfaces.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def put_archive(self, container: str, path: str, data: bytes | Iterable[bytes]) -> bool:
        body = bytes(data) if isinstance(data, bytes | bytearray) else b"".join(data)
        self.received.append(body)
        if len(self.received) == 1:
            raise requests.exceptions.ConnectionError("connection reset by peer")
        return True


def test_bytes_archive_is_retried_after_a_reset() -> None:
    api = FlakyApi()
    engine = Engine("unix:///fake.sock", api)  # type: ignore[arg-type]
    engine.put_archive("c1", "/tmp", b"tar bytes")
    # The retry sent the same full payload again.
    assert api.received == [b"tar bytes", b"tar bytes"]


def test_streamed_archive_is_sent_once_and_not_replayed() -> None:
    api = FlakyApi()
    engine = Engine("unix:///fake.sock", api)  # type: ignore[arg-type]
    chunks = (part for part in (b"tar ", b"chunks"))
    with pytest.raises(EngineUnavailable) as info:
        engine.put_archive("c1", "/tmp", chunks)
    # One attempt only: a retry would have sent an exhausted, empty stream.
    assert api.received == [b"tar chunks"]
    assert "unix:///fake.sock" in str(info.value)
