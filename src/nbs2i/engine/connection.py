"""Finding the engine and agreeing on an API version with it.

The engine is found from the standard environment (`DOCKER_HOST`,
`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), as the `docker` CLI finds it; the
API version is the newest both nbs2i and the engine speak, so Debian's
docker.io (API 1.41) and newer engines both work. "No engine" is one line
that says where nbs2i looked and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbs2i.engine.faults import ENGINE_HINT, call_once
from nbs2i.engine.types import EngineInfo, Json
from nbs2i.errors import EngineError, EngineUnavailable

if TYPE_CHECKING:
    import docker

# The oldest API nbs2i speaks (Docker 1.12); Debian's docker.io speaks 1.41.
MINIMUM_API = "1.24"
# The newest: what the docker-py nbs2i depends on speaks.
NEWEST_API = "1.45"
# How long the first question may take before nbs2i says no engine answers.
PROBE_SECONDS = 10
DEFAULT_HOST = "unix:///var/run/docker.sock"
_UNIX = "unix://"


def default_where() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


@dataclass(frozen=True)
class Probed:
    """What an engine says of itself when first asked."""

    api_max: str
    api_min: str | None
    kind: str  # "docker" or "podman"


def open_client(timeout: int) -> tuple[str, docker.APIClient, str]:
    """Where the engine is, docker-py's client for it at the negotiated API
    version, and the engine's kind; EngineUnavailable when none answers."""
    where = default_where()
    _check_socket(where)
    import docker

    settings = _settings()
    try:
        probe = docker.APIClient(version=MINIMUM_API, timeout=PROBE_SECONDS, **settings)
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {where} ({exc})", ENGINE_HINT
        ) from exc
    try:
        probed = _probe(probe, where)
    finally:
        probe.close()
    version = negotiate_version(probed.api_max, probed.api_min)
    return where, docker.APIClient(version=version, timeout=timeout, **settings), probed.kind


def _check_socket(where: str) -> None:
    """A local socket that is not there: no engine, said before docker-py is
    even loaded (a daemonless CI job asks with --as-dockerfile)."""
    path = where[len(_UNIX) :] if where.startswith(_UNIX) else ""
    if path and not os.path.exists(path):
        raise EngineUnavailable(f"no Docker engine answers at {where}", ENGINE_HINT)


def _settings() -> dict[str, Any]:
    """docker-py's connection settings from DOCKER_HOST, DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH."""
    from docker.errors import TLSParameterError
    from docker.utils import kwargs_from_env

    try:
        return dict(kwargs_from_env())
    except TLSParameterError as exc:
        raise EngineUnavailable(
            f"bad Docker TLS settings: {exc}", "check DOCKER_TLS_VERIFY and DOCKER_CERT_PATH"
        ) from exc


def _probe(client: docker.APIClient, where: str) -> Probed:
    """What the engine says at /_ping: its API version (a header every engine of
    API 1.25 or newer sends) and, from podman, its own API's version. Cheap on
    every engine, where podman takes half a second to answer /version. An
    engine whose ping says no version is asked /version. Asked once: a socket
    nobody listens on is no engine, and a CI runner without one should hear so
    at once, not after the retries of a fault. (An engine whose oldest API is
    newer than nbs2i's says so itself at the first request.)"""
    api: Any = client
    try:
        response = call_once(api._get, api._url("/_ping", versioned_api=False), where=where)
        call_once(api._raise_for_status, response, where=where)
    except (EngineUnavailable, EngineError) as exc:
        raise EngineUnavailable(f"no Docker engine answers at {where}", ENGINE_HINT) from exc
    headers = response.headers
    if headers.get("Api-Version"):
        kind = "podman" if headers.get("Libpod-Api-Version") else "docker"
        return Probed(str(headers["Api-Version"]), None, kind)
    answer = _version(client, where)
    kind = EngineInfo.from_api(answer, {}).kind
    return Probed(str(answer.get("ApiVersion") or MINIMUM_API), answer.get("MinAPIVersion"), kind)


def _version(client: docker.APIClient, where: str) -> Json:
    """The engine's /version answer, or one line saying no engine answers there."""
    try:
        answer: object = call_once(client.version, api_version=False, where=where)
    except (EngineUnavailable, EngineError) as exc:
        raise EngineUnavailable(f"no Docker engine answers at {where}", ENGINE_HINT) from exc
    if not isinstance(answer, dict):
        raise EngineUnavailable(f"what answers at {where} is not a Docker engine", ENGINE_HINT)
    return answer


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def negotiate_version(
    server_max: str, server_min: str | None = None, ours_max: str | None = None
) -> str:
    """The newest API version that both nbs2i and the engine speak."""
    ours_max = ours_max or NEWEST_API
    chosen = min(server_max, ours_max, key=_version_key)
    too_old = _version_key(chosen) < _version_key(MINIMUM_API)
    if too_old or (server_min and _version_key(chosen) < _version_key(server_min)):
        raise EngineUnavailable(
            f"the Docker engine speaks API {server_min or '?'}-{server_max}, nbs2i needs "
            f"{MINIMUM_API}-{ours_max}",
            "upgrade the engine (Docker 1.12 or newer)",
        )
    return chosen
