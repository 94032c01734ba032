"""How nbs2i reaches a registry: the scheme, the CA, the credentials. Pure but
for reading the Docker config and the CA files.

- HTTPS, always verified. The CA: `--registry-ca FILE`, else Docker's own
  place for a registry's CA, `/etc/docker/certs.d/HOST/ca.crt`, else the
  default bundle (certifi's, or `REQUESTS_CA_BUNDLE`). A certificate that
  does not verify is never ignored.
- Plain HTTP only where Docker allows it without being asked: a loopback host
  (127.0.0.0/8, ::1, localhost); or a host named with `--insecure-registry`.
  There a registry that answers plain HTTP is spoken to in HTTP (a TLS server
  answers such a request with an error, and then TLS, verified, is used).
- Credentials from the Docker config (`DOCKER_CONFIG`, else
  `~/.docker/config.json`, with `credsStore` and `credHelpers`, which run the
  `docker-credential-*` programs), read through docker-py's own auth module,
  the code `docker login`'s files were written for. They are sent only over
  TLS, and never reach a log line, an event or an error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nbs2i.errors import RegistryError, UsageError
from nbs2i.reference import hostname, is_loopback

# Docker Hub's names: the one references use, and the host its API answers on.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
CERTS_DIR = Path("/etc/docker/certs.d")
# Seconds to connect, and to wait for an answer once a request is sent.
CONNECT_SECONDS = 10.0
READ_SECONDS = 120.0
LOGIN_FIX = "log in with `docker login {host}` (nbs2i reads DOCKER_CONFIG or ~/.docker/config.json)"


@dataclass(frozen=True)
class Access:
    """What the user said about registries (`--insecure-registry`, `--registry-ca`)."""

    insecure: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    certs_dir: Path = CERTS_DIR
    timeout: tuple[float, float] = (CONNECT_SECONDS, READ_SECONDS)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def check(access: Access) -> None:
    """Refuse bad options before anything is fetched."""
    for host in access.insecure:
        if not host or "/" in host or any(c.isspace() for c in host):
            raise UsageError(
                f"--insecure-registry {host!r} is not a registry host",
                "give HOST or HOST:PORT, e.g. registry.lan:5000",
            )
    if access.ca_bundle is not None and not Path(access.ca_bundle).is_file():
        raise UsageError(f"--registry-ca {access.ca_bundle} is not a file", "give a PEM CA bundle")


def api_host(host: str) -> str:
    """The host a registry's API answers on (Docker Hub's differs from its name)."""
    return DOCKER_HUB_API if host in (DOCKER_HUB, f"index.{DOCKER_HUB}") else host


def plain_http_allowed(host: str, access: Access) -> bool:
    """Whether HTTP may be spoken to `host` when it does not speak TLS."""
    return is_loopback(host) or host in access.insecure or hostname(host) in access.insecure


def ca_for(host: str, access: Access) -> str | bool:
    """What TLS certificates of `host` are checked against: a CA file, or True
    for the default bundle."""
    if access.ca_bundle is not None:
        return str(access.ca_bundle)
    docker_ca = access.certs_dir / host / "ca.crt"
    return str(docker_ca) if docker_ca.is_file() else True


def credentials(host: str) -> Credentials | None:
    """The Docker config's credentials for `host`, or None."""
    import docker.auth
    import docker.errors

    try:
        config = docker.auth.load_config()
        found = config.resolve_authconfig(host)
    except docker.errors.DockerException as exc:
        raise RegistryError(
            f"cannot read the credentials for {host} from the Docker config ({_first_line(exc)})",
            LOGIN_FIX.format(host=host),
        ) from None
    if not found:
        return None
    entry = {k.lower(): v for k, v in found.items()}
    if entry.get("identitytoken"):
        raise RegistryError(
            f"the Docker config holds an identity token for {host}, which nbs2i cannot use",
            f"log in with a user name and password or access token: `docker login {host}`",
        )
    username, password = entry.get("username"), entry.get("password")
    if not username or password is None:
        return None
    return Credentials(str(username), str(password))


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
