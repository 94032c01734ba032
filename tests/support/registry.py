"""A real image registry for one test: Debian's docker-registry (the
distribution project's registry), on 127.0.0.1 and a free port, storing in a
directory of its own; stopped and removed at the end, also after a failure.

`make registry` installs the package (as root). The engine pushes to it over
plain HTTP because 127.0.0.0/8 is an insecure registry by default.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i import restricted

BINARY = "docker-registry"
START_SECONDS = 15.0
STOP_SECONDS = 10.0
POLL_SECONDS = 0.1
# The media type a registry names the manifest of a pushed image by.
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Registry:
    port: int
    root: Path

    @property
    def host(self) -> str:
        return f"{restricted.LOOPBACK}:{self.port}"

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry itself gives the manifest of repository:tag."""
        conn = http.client.HTTPConnection(restricted.LOOPBACK, self.port, timeout=10)
        try:
            path = f"/v2/{repository}/manifests/{tag}"
            conn.request("HEAD", path, headers={"Accept": MANIFEST_V2})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, f"HEAD {repository}:{tag}: {response.status}"
            return response.getheader("Docker-Content-Digest") or ""
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((restricted.LOOPBACK, 0))
        return int(sock.getsockname()[1])


def config(root: Path, port: int) -> str:
    return "\n".join(
        [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f'    rootdirectory: "{root / "data"}"',
            "  delete:",
            "    enabled: true",
            "http:",
            f'  addr: "{restricted.LOOPBACK}:{port}"',
            "",
        ]
    )


@contextlib.contextmanager
def running() -> Iterator[Registry]:
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(f"Debian's {BINARY} is not installed: run `make registry`", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="nbs2i-test-registry-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        (root / "config.yml").write_text(config(root, port), encoding="utf-8")
        log = (root / "registry.log").open("wb")
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_up(process, port, root)
        yield Registry(port, root)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _wait_up(process: subprocess.Popen[bytes], port: int, root: Path) -> None:
    started = time.monotonic()
    for _ in range(int(START_SECONDS / POLL_SECONDS) + 10):
        if process.poll() is not None:
            break
        if restricted.http_status(port, "/v2/") == 200:
            return
        if time.monotonic() - started >= START_SECONDS:
            break
        time.sleep(POLL_SECONDS)
    log = (root / "registry.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the registry did not answer on port {port}:\n{log}", pytrace=False)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
