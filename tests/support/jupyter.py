"""Shared by the `nbs2i run` tests: notebook images built for real, and HTTP to them.

`build_notebooks()` builds a notebook directory with the real build flow
(nbs2i.build and the hardened builder); `sample_image()` and `builder()` are the
session's fixtures for helpers that have a request. `Api` speaks Jupyter's REST
API on 127.0.0.1 only, never through a proxy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from nbs2i.engine import Engine
from tests.conftest import TEST_LABELS, Tracker

SAMPLE = Path(__file__).resolve().parents[2] / "sample-notebooks"
LECTURES = (
    "01-python-basics.ipynb",
    "02-reading-a-csv.ipynb",
    "03-plotting.ipynb",
    "04-random-walks.ipynb",
)
LABEL_PAIRS = tuple(TEST_LABELS.items())


def builder(request: pytest.FixtureRequest) -> str:
    """The session's builder image (the `builder_image` fixture of tests/conftest.py)."""
    return str(request.getfixturevalue("builder_image"))


def sample_image(request: pytest.FixtureRequest, engine: Engine, tracker: Tracker) -> str:
    """The tag of sample-notebooks/ built once per session (the `sample_build` fixture).

    `engine` and `tracker` are unused: kept for the callers written before the fixture.
    """
    del engine, tracker
    return str(request.getfixturevalue("sample_build").tag)


def build_notebooks(
    engine: Engine, tracker: Tracker, source: Path, tag: str, builder_ref: str
) -> str:
    """Build a notebook directory into `tag` with nbs2i's real S2I build."""
    from nbs2i import build

    tracker.image(tag)
    result = build.build(
        engine,
        build.BuildRequest(
            source=str(source),
            tag=tag,
            builder=builder_ref,
            ca_bundle=build.default_ca_bundle(),
            labels=LABEL_PAIRS,
            container_labels=LABEL_PAIRS,
        ),
    )
    if result.deps_image:
        tracker.image(result.deps_image)
    return result.tag


class Api:
    """Jupyter's REST API of one server, with its token (or a login cookie)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.cookie: str | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if auth and self.token:
            headers["Authorization"] = f"token {self.token}"
        if auth and self.cookie:
            headers["Cookie"] = self.cookie
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=30) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

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
        status, _ = self.call("PUT", f"/api/contents/{path}", model)
        return status

    def save_text(self, path: str, text: str) -> int:
        status, _ = self.call(
            "PUT", f"/api/contents/{path}", {"type": "file", "format": "text", "content": text}
        )
        return status


def markdown_cell(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def with_cell(notebook: dict[str, Any], text: str) -> dict[str, Any]:
    return {**notebook, "cells": [*notebook["cells"], markdown_cell(text)]}


def cells_text(notebook: dict[str, Any]) -> str:
    return "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in notebook["cells"]
    )


def new_notebook(text: str) -> dict[str, Any]:
    return {
        "cells": [markdown_cell(text)],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# Runs inside the container as its user: connect to the kernel the server
# started (by its connection file) and have it run one line of code.
_KERNEL_PROBE = """
import glob, sys
from jupyter_client import BlockingKernelClient
(path,) = glob.glob("/tmp/.nbs2i/runtime-*/kernel-" + sys.argv[1] + ".json")
client = BlockingKernelClient(connection_file=path)
client.load_connection_file()
client.start_channels()
client.wait_for_ready(timeout=60)
client.execute(sys.argv[2])
print(client.get_shell_msg(timeout=60)["content"]["status"])
client.stop_channels()
"""


def kernel_runs(engine: Engine, container: str, api: Api, code: str) -> str:
    """Start a Python kernel through the API and run `code` in it; the reply's status."""
    status, kernel = api.call("POST", "/api/kernels", {"name": "python3"})
    assert status == 201, (status, kernel)
    try:
        result = engine.exec(container, ["python3", "-c", _KERNEL_PROBE, kernel["id"], code])
    finally:
        api.call("DELETE", f"/api/kernels/{kernel['id']}")
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]
