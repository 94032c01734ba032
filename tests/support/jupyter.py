"""A client for one Jupyter server, as a browser and a notebook user drive it.

`Api` speaks the REST API with a token (header) or the session cookie of a
form login; `run_in_kernel` and `run_in_terminal` use the kernel's and the
terminal's real websockets. Everything goes to 127.0.0.1 only, never through
a proxy (a configured HTTP(S)_PROXY must never see a token). Every wait is
bounded.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import websocket

LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT = 30.0


class Api:
    """Jupyter's REST API of one server, with its token, or logged in by form."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.base = f"http://{LOOPBACK}:{port}"
        self.token = token
        self.xsrf = ""
        self._jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self._jar)
        )

    def call(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> tuple[int, Any]:
        """(status, decoded JSON, else text) of one request; never raises on 4xx/5xx."""
        headers = {"Content-Type": "application/json"}
        if auth and self.token:
            headers["Authorization"] = f"token {self.token}"
        if auth and self.xsrf:
            headers["X-XSRFToken"] = self.xsrf
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers
        )
        opener = (
            self._opener if auth else urllib.request.build_opener(urllib.request.ProxyHandler({}))
        )
        try:
            with opener.open(request, timeout=HTTP_TIMEOUT) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def login(self, password: str) -> bool:
        """Log in through the login form as a browser does (its _xsrf cookie,
        then a POST); True when the session cookie then opens /api/status."""
        with self._opener.open(f"{self.base}/login", timeout=HTTP_TIMEOUT) as response:
            response.read()
        self.xsrf = next(c.value for c in self._jar if c.name == "_xsrf")
        form = urllib.parse.urlencode({"password": password, "_xsrf": self.xsrf}).encode()
        try:
            with self._opener.open(f"{self.base}/login", data=form, timeout=HTTP_TIMEOUT) as r:
                r.read()
        except urllib.error.HTTPError as exc:
            assert exc.code == 401, exc.code  # the login page again: "Invalid credentials"
            return False
        return self.call("GET", "/api/status")[0] == 200

    # -- contents --------------------------------------------------------------

    def names(self, path: str = "") -> list[str]:
        status, listing = self.call("GET", f"/api/contents/{path}")
        assert status == 200, (status, listing)
        return sorted(item["name"] for item in listing["content"])

    def notebook(self, path: str) -> dict[str, Any]:
        status, model = self.call("GET", f"/api/contents/{path}?content=1")
        assert status == 200, (status, model)
        return model["content"]

    def save_notebook(self, path: str, content: dict[str, Any]) -> int:
        model = {"type": "notebook", "format": "json", "content": content}
        return self.call("PUT", f"/api/contents/{path}", model)[0]

    def save_text(self, path: str, text: str) -> int:
        model = {"type": "file", "format": "text", "content": text}
        return self.call("PUT", f"/api/contents/{path}", model)[0]

    def text(self, path: str) -> str:
        status, model = self.call("GET", f"/api/contents/{path}?content=1&format=text")
        assert status == 200, (status, model)
        return str(model["content"])

    # -- websockets ----------------------------------------------------------------

    def ws_url(self, path: str) -> str:
        query = f"?token={self.token}" if self.token else ""
        return f"ws://{LOOPBACK}:{self.port}{path}{query}"

    def run_in_kernel(self, code: str, timeout: float = 60.0) -> str:
        """Start a Python kernel, run code through its websocket, return what it
        printed on stdout; a kernel error fails the test with its traceback."""
        status, kernel = self.call("POST", "/api/kernels", {"name": "python3"})
        assert status == 201, (status, kernel)
        conn = websocket.create_connection(
            self.ws_url(f"/api/kernels/{kernel['id']}/channels"), timeout=timeout
        )
        try:
            msg_id = uuid.uuid4().hex
            conn.send(json.dumps(execute_request(msg_id, code)))
            run = collect(conn, msg_id, timeout)
            assert not run.error, f"kernel error: {run.error}"
            return run.stdout
        finally:
            conn.close()

    def run_in_terminal(self, command: str, pattern: str, timeout: float = 20.0) -> str:
        """Open a terminal, type a command on its websocket, return the first
        match of `pattern` in what the terminal prints."""
        status, term = self.call("POST", "/api/terminals", {})
        assert status == 200, (status, term)
        conn = websocket.create_connection(
            self.ws_url(f"/terminals/websocket/{term['name']}"), timeout=timeout
        )
        try:
            conn.send(json.dumps(["stdin", command + "\r"]))
            seen = ""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(conn.recv())
                if msg[0] == "stdout":
                    seen += msg[1]
                    match = re.search(pattern, seen)
                    if match:
                        return match.group(0)
            raise AssertionError(f"the terminal did not print {pattern!r} in {timeout}s: {seen!r}")
        finally:
            conn.close()


@dataclass(frozen=True)
class KernelRun:
    stdout: str
    status: str  # "ok" or "error"
    error: str = ""


def execute_request(msg_id: str, code: str) -> dict[str, Any]:
    """An execute_request message of the kernel protocol, on the shell channel."""
    return {
        "header": {
            "msg_id": msg_id,
            "username": "test",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "buffers": [],
    }


def collect(conn: websocket.WebSocket, msg_id: str, timeout: float) -> KernelRun:
    """What the kernel answered msg_id. The reply (shell channel) may overtake the
    output (iopub channel): the output is complete once iopub says idle again."""
    out: list[str] = []
    status, error = "", ""
    idle = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (status and idle):
        msg = json.loads(conn.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif kind == "error":
            error = "\n".join(msg["content"]["traceback"])
        elif kind == "execute_reply":
            status = msg["content"]["status"]
        idle = idle or (kind == "status" and msg["content"]["execution_state"] == "idle")
    assert status and idle, f"no execute_reply within {timeout}s"
    return KernelRun("".join(out), status, error)


# -- notebooks as JSON ---------------------------------------------------------------


def markdown_cell(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": text}


def with_cell(notebook: dict[str, Any], text: str) -> dict[str, Any]:
    return {**notebook, "cells": [*notebook["cells"], markdown_cell(text)]}


def cells_text(notebook: dict[str, Any]) -> str:
    return "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in notebook["cells"]
    )


def new_notebook(text: str) -> dict[str, Any]:
    return {"cells": [markdown_cell(text)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
