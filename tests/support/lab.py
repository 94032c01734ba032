"""JupyterLab used the way a browser uses it, on 127.0.0.1 only.

`Lab` is one Jupyter server at an origin and a base path: the page JupyterLab
loads (its page config, every federated extension's entry point), the REST
API (contents, kernels) and a kernel over its websocket. It authenticates
either with a token (a server started by a test) or, like a browser behind
JupyterHub, with the cookies of a session plus the XSRF header JupyterLab
sends; tests/support/hub.py's Student is the second kind.
"""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import requests
import websocket

from tests.support.jupyter import KernelRun, collect, execute_request

HTTP_SECONDS = 30.0
KERNEL_SECONDS = 60.0
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"}
CORS = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
NO_CORS = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "same-origin"}
_CONFIG_DATA = re.compile(
    r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', re.S
)


class LabError(AssertionError):
    """The server did not answer the way JupyterLab needs."""


def http_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never a proxy: everything is on 127.0.0.1
    return session


class Lab:
    """One Jupyter server at `origin` + `prefix` ("" or "/user/NAME")."""

    def __init__(self, origin: str, prefix: str = "", token: str = "") -> None:
        self.origin = origin
        self.prefix = prefix
        self.token = token
        self.http = http_session()

    # the page

    def lab_config(self) -> dict[str, Any]:
        """JupyterLab's page config, from the page a browser loads."""
        page = self.http.get(self.url("/lab"), headers=self._auth(NAVIGATE), timeout=HTTP_SECONDS)
        match = _CONFIG_DATA.search(page.text)
        if page.status_code != 200 or not match:
            raise LabError(f"{self.url('/lab')} answered {page.status_code} without a page config")
        return dict(json.loads(html.unescape(match.group(1))))

    def extension_assets(self) -> dict[str, int]:
        """Every federated extension's entry point from the page config, and
        the status each one is served with."""
        config = self.lab_config()
        base = config["fullLabextensionsUrl"].rstrip("/")
        statuses: dict[str, int] = {}
        for ext in config.get("federated_extensions", []):
            path = f"{base}/{ext['name']}/{ext['load']}"
            answer = self.http.get(
                f"{self.origin}{path}", headers=self._auth(NO_CORS), timeout=HTTP_SECONDS
            )
            statuses[path] = answer.status_code
        return statuses

    # the REST API

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        """The server's REST API as JupyterLab calls it."""
        return self.http.request(
            method,
            self.url(f"/api{path}"),
            json=body,
            headers=self._auth(CORS),
            timeout=HTTP_SECONDS,
        )

    def names(self, path: str = "") -> list[str]:
        answer = self.api("GET", f"/contents/{path}")
        if answer.status_code != 200:
            raise LabError(f"contents of {path!r}: {answer.status_code}")
        return sorted(item["name"] for item in answer.json()["content"])

    def read_notebook(self, path: str) -> dict[str, Any]:
        answer = self.api("GET", f"/contents/{path}?content=1&type=notebook")
        if answer.status_code != 200:
            raise LabError(f"{path}: {answer.status_code}")
        return dict(answer.json()["content"])

    def save_notebook(self, path: str, content: Mapping[str, Any]) -> None:
        self._put(path, {"type": "notebook", "format": "json", "content": content})

    def upload(self, path: str, data: bytes) -> None:
        """A file, as JupyterLab's upload button sends it."""
        encoded = base64.b64encode(data).decode()
        self._put(path, {"type": "file", "format": "base64", "content": encoded})

    def run_code(self, code: str, timeout: float = KERNEL_SECONDS) -> KernelRun:
        """Start a kernel, run `code` over its websocket (kept in IPython's
        history), shut the kernel down; what it printed."""
        answer = self.api("POST", "/kernels", {"name": "python3"})
        if answer.status_code != 201:
            raise LabError(f"starting a kernel: {answer.status_code} {answer.text[:200]}")
        kernel = answer.json()["id"]
        try:
            return self._execute(kernel, code, timeout)
        finally:
            self.api("DELETE", f"/kernels/{kernel}")

    # internals

    def url(self, path: str) -> str:
        return f"{self.origin}{self.prefix}{path}"

    def xsrf(self, path: str) -> str:
        """The `_xsrf` cookie the server at `path` set ("" when none)."""
        for cookie in self.http.cookies:
            if cookie.name == "_xsrf" and cookie.path.rstrip("/") == path.rstrip("/"):
                return str(cookie.value)
        return ""

    def _auth(self, headers: Mapping[str, str]) -> dict[str, str]:
        if self.token:
            return {**headers, "Authorization": f"token {self.token}"}
        return {**headers, "X-XSRFToken": self.xsrf(f"{self.prefix}/")}

    def _put(self, path: str, model: Mapping[str, Any]) -> None:
        answer = self.api("PUT", f"/contents/{path}", model)
        if answer.status_code not in (200, 201):
            raise LabError(f"saving {path}: {answer.status_code} {answer.text[:200]}")

    def _cookie_header(self, path: str) -> str:
        return "; ".join(
            f"{c.name}={c.value}" for c in self.http.cookies if path.startswith(c.path.rstrip("/"))
        )

    def _execute(self, kernel: str, code: str, timeout: float) -> KernelRun:
        path = f"{self.prefix}/api/kernels/{kernel}/channels"
        header = ["Sec-Fetch-Mode: websocket"]
        if self.token:
            header.append(f"Authorization: token {self.token}")
        conn = websocket.create_connection(
            f"{self.origin.replace('http://', 'ws://')}{path}?session_id={uuid.uuid4().hex}",
            header=header,
            cookie=self._cookie_header(path),
            origin=self.origin,
            timeout=timeout,
        )
        try:
            msg_id = uuid.uuid4().hex
            conn.send(json.dumps(execute_request(msg_id, code)))
            return collect(conn, msg_id, timeout)
        finally:
            conn.close()
