"""engine_socket's pure parts: which engines it serves, the request paths it
writes, the answers it reads, and how its errors read once translated.
(tests/engine/test_engine.py compares its answers with docker-py's.)"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from nbs2i import engine as eng
from nbs2i.engine_socket import (
    DEFAULT_SOCKET,
    ApiError,
    ConnectionFailed,
    SocketApi,
    _messages,
    _path,
    socket_path,
)
from nbs2i.errors import EngineError, EngineUnavailable, NotFound


@pytest.mark.parametrize(
    ("docker_host", "expected"),
    [
        ("", DEFAULT_SOCKET),
        ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"),
        ("unix://", None),
        ("tcp://127.0.0.1:2376", None),
        ("ssh://me@host", None),
        ("npipe:////./pipe/docker_engine", None),
    ],
)
def test_only_a_local_socket_is_served(docker_host: str, expected: str | None) -> None:
    assert socket_path(docker_host) == expected


def test_paths_quote_names_as_docker_py_does() -> None:
    assert (
        _path("/images/{}/json", ("reg:5000/a b:tag",), None) == "/images/reg:5000/a%20b:tag/json"
    )
    assert _path("/images/{}/json", ("x?y#z",), None) == "/images/x%3Fy%23z/json"


def test_query_booleans_filters_and_absent_values() -> None:
    path = _path(
        "/containers/json", (), {"all": True, "force": False, "filters": {"label": ["a=b"]}}
    )
    assert path == "/containers/json?all=1&force=0&filters=%7B%22label%22%3A+%5B%22a%3Db%22%5D%7D"
    assert _path("/volumes", (), {"filters": None}) == "/volumes"
    assert _path("/volumes", (), {"filters": {}}) == "/volumes"


def test_progress_messages_with_and_without_newlines() -> None:
    raw = b'{"stream":"Loaded image: a:1\\n"}\r\n{"stream":"x"}{"error":"e"}\n'
    assert _messages(raw) == [{"stream": "Loaded image: a:1\n"}, {"stream": "x"}, {"error": "e"}]
    assert _messages(b"  \n") == []
    with pytest.raises(ApiError, match="not JSON"):
        _messages(b'{"stream":"x"} <html>')


@pytest.mark.parametrize(
    ("fault", "transient", "expected"),
    [
        (ConnectionFailed("reset"), True, EngineUnavailable),
        (ApiError(503, "unavailable"), True, EngineError),
        (ApiError(500, "internal"), True, EngineError),
        (ApiError(500, "No such image: x"), False, EngineError),
        (ApiError(404, "No such image: x"), False, NotFound),
        (ApiError(409, "conflict"), False, EngineError),
        (ApiError(None, "an answer that is not JSON"), False, EngineError),
    ],
)
def test_socket_faults_are_judged_as_docker_py_faults(
    fault: Exception, transient: bool, expected: type
) -> None:
    assert eng.is_transient(fault) is transient
    assert type(eng.translate(fault, "unix:///x.sock")) is expected


def _serve_once(path: str, reply: bytes) -> threading.Thread:
    """A unix socket that reads one request and sends `reply` (b"": hangs up)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(10)

    def serve() -> None:
        with server, server.accept()[0] as conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("reply", "status", "message"),
    [
        (b'{"message":"No such image: a:1"}', 404, "No such image: a:1"),
        (b"page not found", 404, "page not found"),
        (b"", 404, "Not Found"),
    ],
)
def test_an_error_status_is_an_api_error_with_the_engines_words(
    tmp_path: Path, reply: bytes, status: int, message: str
) -> None:
    path = str(tmp_path / "engine.sock")
    head = f"HTTP/1.1 {status} Not Found\r\nContent-Length: {len(reply)}\r\n\r\n"
    served = _serve_once(path, head.encode() + reply)
    with pytest.raises(ApiError) as info:
        SocketApi(path, 10, "1.41").inspect_image("a:1")
    served.join(timeout=10)
    assert (info.value.status_code, info.value.explanation) == (status, message)


@pytest.mark.parametrize(("body", "problem"), [(b"<html>", "not JSON"), (b"{}{}", "2 answers")])
def test_an_answer_that_is_not_one_json_value_is_an_api_error(
    tmp_path: Path, body: bytes, problem: str
) -> None:
    path = str(tmp_path / "engine.sock")
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
    served = _serve_once(path, head.encode() + body)
    with pytest.raises(ApiError, match=problem):
        SocketApi(path, 10, "1.41").inspect_image("a:1")
    served.join(timeout=10)


def test_a_hang_up_and_a_missing_socket_are_connection_faults(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.sock")
    served = _serve_once(path, b"")
    with pytest.raises(ConnectionFailed):
        SocketApi(path, 10, "1.41").inspect_image("a:1")
    served.join(timeout=10)
    with pytest.raises(ConnectionFailed, match=r"absent\.sock"):
        SocketApi(str(tmp_path / "absent.sock"), 10, "1.41").version(api_version=False)
