"""A real image registry for one test: Debian's docker-registry (the
distribution project's registry), on 127.0.0.1 and a free port, storing in a
directory of its own; stopped and removed at the end, also after a failure.

Plain HTTP, or (`secure=True`) TLS with a CA made for the test (openssl) and
htpasswd users (bcrypt, `htpasswd -B` from apache2-utils); then `docker_config`
writes a Docker config with a user's credentials, as `docker login` would.

`make registry` installs the packages (as root). The engine reaches either
kind: 127.0.0.0/8 is an insecure registry by default, where Docker accepts
plain HTTP and a certificate it cannot verify.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import socket
import ssl
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


# The user every secure registry knows, and its password.
USER = "teacher"
PASSWORD = "correct horse battery staple"
MANIFESTS = ", ".join([MANIFEST_V2, "application/vnd.oci.image.manifest.v1+json"])


@dataclass(frozen=True)
class Registry:
    port: int
    root: Path
    secure: bool = False

    @property
    def host(self) -> str:
        return f"{restricted.LOOPBACK}:{self.port}"

    @property
    def ca(self) -> Path:
        """The CA that signed a secure registry's certificate."""
        return self.root / "ca.crt"

    def docker_config(self, into: Path, password: str = PASSWORD) -> Path:
        """A Docker config directory holding credentials for this registry (for
        DOCKER_CONFIG); what `docker login` writes, without a credential helper."""
        into.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
        (into / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return into

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry itself gives the manifest of repository:tag."""
        status, digest = self.head(f"/v2/{repository}/manifests/{tag}")
        assert status == 200, f"HEAD {repository}:{tag}: {status}"
        return digest

    def has_tag(self, repository: str, tag: str) -> bool:
        status, _ = self.head(f"/v2/{repository}/manifests/{tag}")
        assert status in (200, 404), f"HEAD {repository}:{tag}: {status}"
        return status == 200

    def head(self, path: str) -> tuple[int, str]:
        """(status, Docker-Content-Digest) of a HEAD request, as USER when secure."""
        headers = {"Accept": MANIFESTS}
        conn: http.client.HTTPConnection
        if self.secure:
            context = ssl.create_default_context(cafile=str(self.ca))
            conn = http.client.HTTPSConnection(
                restricted.LOOPBACK, self.port, timeout=10, context=context
            )
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        else:
            conn = http.client.HTTPConnection(restricted.LOOPBACK, self.port, timeout=10)
        try:
            conn.request("HEAD", path, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Docker-Content-Digest") or ""
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((restricted.LOOPBACK, 0))
        return int(sock.getsockname()[1])


def config(root: Path, port: int, secure: bool = False) -> str:
    tls = [
        "  tls:",
        f'    certificate: "{root / "server.crt"}"',
        f'    key: "{root / "server.key"}"',
        "auth:",
        "  htpasswd:",
        "    realm: nbs2i-test",
        f'    path: "{root / "htpasswd"}"',
    ]
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
            *(tls if secure else []),
            "",
        ]
    )


def make_secrets(root: Path) -> None:
    """A CA, the registry's certificate for 127.0.0.1 signed by it, and htpasswd."""
    for tool in ("openssl", "htpasswd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make registry`", pytrace=False)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    (root / "server.ext").write_text(
        f"subjectAltName=IP:{restricted.LOOPBACK}\nextendedKeyUsage=serverAuth\n"
    )
    for args in (
        (
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=nbs2i test CA",
        ),
        (
            "openssl",
            "req",
            *ec,
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            f"/CN={restricted.LOOPBACK}",
        ),
        (
            "openssl",
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ),
        ("htpasswd", "-B", "-b", "-c", "htpasswd", USER, PASSWORD),
    ):
        subprocess.run(args, check=True, capture_output=True, cwd=root)


@contextlib.contextmanager
def running(secure: bool = False) -> Iterator[Registry]:
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(f"Debian's {BINARY} is not installed: run `make registry`", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="nbs2i-test-registry-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        if secure:
            make_secrets(root)
        (root / "config.yml").write_text(config(root, port, secure), encoding="utf-8")
        log = (root / "registry.log").open("wb")
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        registry = Registry(port, root, secure)
        _wait_up(process, registry)
        yield registry
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _wait_up(process: subprocess.Popen[bytes], registry: Registry) -> None:
    started = time.monotonic()
    port, root = registry.port, registry.root
    for _ in range(int(START_SECONDS / POLL_SECONDS) + 10):
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            if registry.head("/v2/")[0] == 200:
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
