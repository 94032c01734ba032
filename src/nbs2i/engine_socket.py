"""The engine requests every build makes, over the local unix socket, with the
standard library only.

Importing docker-py (requests and urllib3 under it) takes about 100 ms: more
than a notebook-only build spends waiting for the engine. When the engine is a
local socket, `nbs2i.engine.Engine` sends these requests here and loads
docker-py only for the others (containers, builds, pushes) or for a TCP, TLS or
SSH engine. Each method takes the arguments and returns the result of
docker-py's `APIClient` method of the same name, so `Engine` calls either one
the same way, and only `Engine` calls them.

One connection per request: nothing is shared between threads, and a
connection the engine dropped is never reused.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_SOCKET = "/var/run/docker.sock"
_UNIX = "unix://"


class ApiError(Exception):
    """The engine answered with an error status (the shape docker-py's APIError has)."""

    def __init__(self, status_code: int | None, explanation: str) -> None:
        super().__init__(f"{status_code}: {explanation}")
        self.status_code = status_code
        self.explanation = explanation


class ConnectionFailed(Exception):
    """The engine could not be reached, or dropped the connection."""


def socket_path(docker_host: str) -> str | None:
    """The socket's path when DOCKER_HOST ("" when unset) names a local unix
    socket; None for the engines only docker-py reaches (TCP, TLS, SSH)."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith(_UNIX) and len(docker_host) > len(_UNIX):
        return docker_host[len(_UNIX) :]
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class SocketApi:
    """A few of docker-py's `APIClient` methods, spoken over a unix socket."""

    def __init__(self, path: str, timeout: float, api_version: str = "") -> None:
        self.path = path
        self.timeout = timeout
        self.api_version = api_version

    def version(self, api_version: bool = True) -> dict[str, Any]:
        return self._json("GET", "/version", versioned=api_version)

    def inspect_image(self, image: str) -> dict[str, Any]:
        return self._json("GET", "/images/{}/json", image)

    def history(self, image: str) -> list[dict[str, Any]]:
        return self._json("GET", "/images/{}/history", image)

    def remove_image(self, image: str, force: bool = False, noprune: bool = False) -> Any:
        return self._json(
            "DELETE", "/images/{}", image, params={"force": force, "noprune": noprune}
        )

    def containers(
        self, all: bool = False, filters: Mapping[str, list[str]] | None = None
    ) -> list[dict[str, Any]]:
        return self._json("GET", "/containers/json", params={"all": all, "filters": filters})

    def volumes(self, filters: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        return self._json("GET", "/volumes", params={"filters": filters})

    def load_image(self, data: Iterable[bytes]) -> list[Any]:
        """The engine's progress messages, read to the end."""
        return _messages(self._request("POST", "/images/load", body=data))

    def _json(
        self,
        method: str,
        template: str,
        *args: str,
        params: Mapping[str, Any] | None = None,
        versioned: bool = True,
    ) -> Any:
        raw = self._request(method, template, *args, params=params, versioned=versioned)
        found = _messages(raw)
        if len(found) > 1:
            raise ApiError(None, f"{len(found)} answers where one was expected")
        return found[0] if found else None

    def _request(
        self,
        method: str,
        template: str,
        *args: str,
        params: Mapping[str, Any] | None = None,
        body: Iterable[bytes] | None = None,
        versioned: bool = True,
    ) -> bytes:
        """The whole response body; ApiError for an error status, ConnectionFailed
        when the engine cannot be reached or drops the connection."""
        path = _path(template, args, params)
        if versioned:
            path = f"/v{self.api_version}{path}"
        headers = {"Content-Type": "application/x-tar"} if body is not None else {}
        connection = _UnixConnection(self.path, self.timeout)
        try:
            # An iterable body goes out chunked, as it is produced.
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(f"{self.path}: {exc or type(exc).__name__}") from exc
        finally:
            connection.close()
        if response.status >= 400:
            raise ApiError(response.status, _error_message(raw, response.reason))
        return raw


def _path(template: str, args: tuple[str, ...], params: Mapping[str, Any] | None) -> str:
    """The request path: arguments quoted as docker-py quotes them, booleans as
    the engine reads them, filters as JSON, None left out."""
    path = template.format(*(quote(arg, safe="/:") for arg in args))
    query: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None or (key == "filters" and not value):
            continue
        if isinstance(value, bool):
            query[key] = "1" if value else "0"
        elif isinstance(value, Mapping):
            query[key] = json.dumps(dict(value))
        else:
            query[key] = str(value)
    return f"{path}?{urlencode(query)}" if query else path


def _error_message(raw: bytes, reason: str) -> str:
    try:
        message = json.loads(raw).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or raw.decode("utf-8", "replace").strip() or reason)


def _messages(raw: bytes) -> list[Any]:
    """A stream of JSON values (the engine separates them by newlines, or not);
    ApiError for anything else."""
    decoder = json.JSONDecoder()
    text = raw.decode("utf-8", "replace")
    found: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found
        try:
            item, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            raise ApiError(None, f"an answer that is not JSON: {text[at : at + 80]!r}") from exc
        found.append(item)
