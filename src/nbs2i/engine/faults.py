"""When an engine request fails: retry what a later attempt can cure, and say
the rest in nbs2i's own errors.

Transient faults (connection reset, 5xx, timeouts) are retried with tenacity,
bounded in attempts and time, never a user error, never a streamed upload.
docker-py's and requests' exceptions are translated into `nbs2i.errors` types,
so nothing above the engine package ever catches a docker-py exception.
docker-py and tenacity are imported here only when a fault is being judged:
by then the request that failed has loaded docker-py anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nbs2i.errors import EngineError, EngineUnavailable, NotFound

T = TypeVar("T")

# Retry budget for one engine call: at most this many attempts and seconds.
RETRY_ATTEMPTS = 4
RETRY_SECONDS = 30.0
# Engine statuses that say "try again", not "you asked for something wrong".
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# A 500 that is really the caller's mistake; retrying cannot help.
_PERMANENT_500_HINTS = ("no such", "not found", "invalid", "executable file", "conflict")

ENGINE_HINT = (
    "start one with `scripts/ensure-engine` (root on Debian/Ubuntu), "
    "`sudo systemctl start docker`, or point DOCKER_HOST at a running engine"
)


def engine_exceptions() -> tuple[type[Exception], ...]:
    """What an engine request can raise: docker-py's errors and requests' (a
    refused connection, a timeout, an answer that is not JSON)."""
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException)


def _unreachable(exc: BaseException) -> bool:
    """The engine could not be reached, or dropped the connection."""
    import requests.exceptions

    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _status(exc: BaseException) -> int | None:
    """The HTTP status of an engine's refusal; None for any other fault."""
    import docker.errors

    if isinstance(exc, docker.errors.NotFound | docker.errors.ImageNotFound):
        return 404
    if isinstance(exc, docker.errors.APIError):
        return exc.status_code
    return None


def timed_out(exc: BaseException) -> bool:
    """A request that outlived its time limit. urllib3 raises it as a
    ConnectionError("Read timed out") as often as a ReadTimeout."""
    import requests.exceptions

    return isinstance(exc, requests.exceptions.ReadTimeout) or (
        _unreachable(exc) and "timed out" in str(exc)
    )


def is_transient(exc: BaseException) -> bool:
    """True for faults that a later attempt can cure."""
    if _unreachable(exc):
        return True
    status = _status(exc)
    if status not in TRANSIENT_STATUS:
        return False
    text = explain(exc).lower()
    return not (status == 500 and any(hint in text for hint in _PERMANENT_500_HINTS))


def translate(exc: BaseException, where: str) -> Exception:
    """Turn a docker-py or requests exception into an nbs2i error."""
    if _unreachable(exc):
        return EngineUnavailable(f"the Docker engine at {where} stopped answering", ENGINE_HINT)
    status = _status(exc)
    if status is None:
        return EngineError(f"Docker error: {explain(exc)}")
    if status == 404:
        return NotFound(explain(exc), "check the name with `docker images` / `docker ps -a`")
    return EngineError(f"the Docker engine refused the request: {explain(exc)}")


def explain(exc: BaseException) -> str:
    """The engine's words for a fault, in one line."""
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


def call(fn: Callable[..., T], *args: Any, where: str = "", **kwargs: Any) -> T:
    """Run one engine request: retry transient faults, translate the rest.

    The first attempt is made directly; tenacity (and what it imports) is loaded
    only when the engine has a hiccup, so a healthy build never pays for it.
    """
    try:
        return fn(*args, **kwargs)
    except engine_exceptions() as exc:
        if not is_transient(exc):
            raise translate(exc, where) from exc
    return _retry(fn, args, kwargs, where)


def _retry(fn: Callable[..., T], args: Any, kwargs: Any, where: str) -> T:
    """The attempts after a transient fault, bounded in number and time."""
    from tenacity import (
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(RETRY_ATTEMPTS - 1) | stop_after_delay(RETRY_SECONDS),
        wait=wait_exponential(multiplier=0.25, max=4),
        reraise=True,
    )
    try:
        return retrying(fn, *args, **kwargs)
    except engine_exceptions() as exc:
        raise translate(exc, where) from exc


def call_once(fn: Callable[..., T], *args: Any, where: str = "", **kwargs: Any) -> T:
    """Run one engine request that must not be repeated; translate its errors."""
    try:
        return fn(*args, **kwargs)
    except engine_exceptions() as exc:
        raise translate(exc, where) from exc
