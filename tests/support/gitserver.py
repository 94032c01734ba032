"""Real Git transports on 127.0.0.1, started and stopped by a test.

- `GitDaemon`: `git daemon` serving bare repositories over git://.
- `HttpGitServer`: `git http-backend` behind a small HTTP server that asks
  for basic auth, so a URL's user:password is really used (and every request
  it saw is kept, to prove which credentials arrived).
- `HangingServer`: accepts connections and never answers: a source that
  would hang, to prove that something fails before the source is fetched.

Each binds 127.0.0.1 on a port the kernel picks and is stopped on exit;
every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
BACKEND_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {HOST}:{port} after {timeout} s")


class GitDaemon:
    """`git daemon` exporting every repository under `base` (read only)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://{HOST}:{self.port}/{name}"

    def __enter__(self) -> GitDaemon:
        self.base.mkdir(parents=True, exist_ok=True)
        # The port is free when picked; another process may take it before the
        # daemon binds it, so a daemon that exits at once is started again.
        for _attempt in range(3):
            self.port = free_port()
            self._proc = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
                    f"--base-path={self.base}",
                    f"--listen={HOST}",
                    f"--port={self.port}",
                    str(self.base),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for_port(self.port)
                return self
            except AssertionError:
                self._stop()
        raise AssertionError("git daemon did not start on 127.0.0.1")

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class SeenRequest:
    method: str
    path: str
    authorization: str  # the decoded "user:password" of a Basic header, "" when none
    authorized: bool


@dataclass
class _State:
    base: Path
    user: str
    password: str
    seen: list[SeenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _decoded_basic(header: str) -> str:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8", "replace")
    except ValueError:
        return ""


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "nbs2i-test-git/1"
    protocol_version = "HTTP/1.0"

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test reads `seen`, not a log

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        state = self.state
        given = _decoded_basic(self.headers.get("Authorization", ""))
        authorized = given == f"{state.user}:{state.password}"
        with state.lock:
            state.seen.append(SeenRequest(self.command, self.path, given, authorized))
        if not authorized:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="nbs2i-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self._body() if self.command == "POST" else b""
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(state.base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": state.user,
            "REMOTE_ADDR": HOST,
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=BACKEND_TIMEOUT,
            check=False,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not payload and b"\n\n" in head:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class HttpGitServer:
    """`git http-backend` for the bare repositories under `base`, behind basic auth
    with exactly `user`:`password`."""

    def __init__(self, base: Path, user: str, password: str) -> None:
        self.state = _State(base, user, password)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def seen(self) -> list[SeenRequest]:
        with self.state.lock:
            return list(self.state.seen)

    def url(self, name: str, userinfo: str = "") -> str:
        """http://[userinfo@]127.0.0.1:PORT/name; userinfo is put in as given (raw)."""
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}{HOST}:{self.port}/{name}"

    def __enter__(self) -> HttpGitServer:
        server = http.server.ThreadingHTTPServer((HOST, 0), _Handler)
        server.daemon_threads = True
        server.state = self.state  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


class HangingServer:
    """Listens on 127.0.0.1 and holds every connection open without a byte of answer.
    `connections` counts the clients that came."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.connections = 0

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def url(self, name: str = "course.git") -> str:
        return f"http://{HOST}:{self.port}/{name}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._held.append(conn)

    def __enter__(self) -> HangingServer:
        self._sock.bind((HOST, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for conn in self._held:
            conn.close()
        self._sock.close()
