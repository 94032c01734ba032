"""What `nbs2i run` is asked, checked before anything is asked of the engine
(pure, but for the host's own directory and port), and what the container
gets from it: its environment and labels, the password hashed."""

from __future__ import annotations

import errno
import hashlib
import re
import secrets
import socket
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nbs2i import defaults, labels, restricted
from nbs2i.errors import RunError, SecurityError, UsageError

# The host port on 127.0.0.1 (the server's own port, so URLs look familiar).
DEFAULT_PORT = defaults.RUN_PORT
# Seconds to wait for the server's API.
DEFAULT_TIMEOUT = defaults.RUN_TIMEOUT
LOG_TAIL = 20
TOKEN_BYTES = 24
NONCE_BYTES = 16

# What a Docker volume / container name may be (moby's rules).
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by nbs2i itself; through --env they would bypass the checks on --token/--password.
_RESERVED_ENV = {
    "JUPYTER_TOKEN": "use --token",
    "JUPYTER_PASSWORD": "use --password",
    "HOME": f"HOME is {restricted.HOME}; mount your files there with --volume",
}
# Never a workspace, whatever their modes: the system's trees, and the
# directories that hold everyone's files (but a directory inside one is fine).
_SYSTEM_TREES = (
    *("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32"),
    *("/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var"),
)
_SHARED_DIRS = ("/", "/home", "/media", "/mnt", "/opt", "/srv", "/tmp")


@dataclass(frozen=True)
class RunRequest:
    """What to start and how. Defaults are OpenShift restricted-v2's."""

    image: str
    port: int = DEFAULT_PORT  # host port on 127.0.0.1; 0 lets the engine choose a free one
    uid: int | None = None  # None: restricted.random_uid()
    token: str | None = None  # None (and no password): nbs2i generates one
    password: str | None = None
    volume: str | None = None  # a volume name, or a directory (has "/", or starts "." or "~")
    read_only: bool = True
    name: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # extra labels on the container and a new volume
    timeout: float = DEFAULT_TIMEOUT  # seconds to wait for the server's API


# -- checks before anything is asked of the engine ------------------------------


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def check_name(name: str) -> str:
    if not _CONTAINER_NAME.match(name):
        raise UsageError(
            f"bad container name {name!r}",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return name


def check_names(names: Iterable[str]) -> list[str]:
    return [check_name(name) for name in names]


def container_name(name: str | None) -> str:
    return check_name(name) if name is not None else f"nbs2i-run-{secrets.token_hex(4)}"


def is_directory_spec(spec: str) -> bool:
    """Docker's own rule: a path has a '/' or starts with '.' or '~'; else a volume name."""
    return "/" in spec or spec.startswith((".", "~"))


def check_env(env: Iterable[tuple[str, str]]) -> None:
    for key, _value in env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"bad environment variable name {key!r}", "use --env NAME=VALUE")
        if key in _RESERVED_ENV:
            raise UsageError(f"--env {key} is set by nbs2i run", _RESERVED_ENV[key])


def check_auth(token: str | None, password: str | None) -> None:
    if token is not None and password is not None:
        raise UsageError("--token and --password both given", "choose one")
    if token is not None and not token.strip():
        raise SecurityError(
            "an empty token turns authentication off",
            "leave --token out and nbs2i generates one",
        )
    if password is not None and not password:
        raise UsageError("the password is empty", "type a password, or leave --password out")


def check_port(port: int) -> int:
    if not 0 <= port < 65536:
        raise UsageError(f"bad port {port}", "use --port 1-65535, or 0 for any free port")
    return port


def is_system_directory(path: Path) -> bool:
    """/, /home, /srv and the like, the user's own home, or anything inside the
    system's trees (/etc, /usr, ...): opening one up for group 0 would hand it
    to every container user. `path` is absolute and resolved."""
    text = str(path)
    if text in _SHARED_DIRS or path == Path.home():
        return True
    return any(text == tree or text.startswith(tree + "/") for tree in _SYSTEM_TREES)


def check_volume_spec(spec: str | None) -> None:
    if spec is None:
        return
    if is_directory_spec(spec):
        path = Path(spec).expanduser().resolve()
        if is_system_directory(path):
            raise UsageError(
                f"{path} is a system directory, not a workspace",
                "give a directory of your own (e.g. --volume ./work) or a volume name",
            )
    elif not _VOLUME_NAME.match(spec):
        raise UsageError(
            f"bad volume name {spec!r}",
            "use letters, digits, '_', '.' and '-', or a directory path like ./work",
        )


def check_request(request: RunRequest) -> None:
    """Every input that can be judged without the engine, before any slow work."""
    check_auth(request.token, request.password)
    check_env(request.env)
    if request.name is not None:
        check_name(request.name)
    if request.uid is not None:
        restricted.check_uid(request.uid)
    check_port(request.port)
    if request.timeout <= 0:
        raise UsageError(f"bad timeout {request.timeout}", "use --timeout SECONDS, more than 0")
    check_volume_spec(request.volume)


class Stat(Protocol):
    """The fields of os.stat_result that writable_by reads."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...


def writable_by(st: Stat, uid: int, gid: int = restricted.GID) -> bool:
    """Can a process with this UID and GID (and no capabilities) create files in the dir?"""
    mode = st.st_mode
    if st.st_uid == uid:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def check_directory(path: Path, uid: int) -> None:
    """A bind-mounted workspace must exist and be writable by UID with GID 0."""
    if not path.exists():
        raise RunError(
            f"workspace directory {path} does not exist",
            f"create it with `mkdir -p {path} && chgrp 0 {path} && chmod g+rwX {path}`",
        )
    if not path.is_dir():
        raise RunError(f"workspace {path} is not a directory", "give a directory or a volume name")
    if not writable_by(path.stat(), uid):
        raise RunError(
            f"workspace directory {path} is not writable by UID {uid} with GID 0",
            f"run `chgrp 0 {path} && chmod g+rwX {path}` (group 0 is how OpenShift "
            "shares files between random UIDs), or pass --uid with the directory's owner",
        )


def check_port_free(port: int) -> None:
    """Fail early, before anything exists, when something already listens on the port."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a closed connection in TIME_WAIT is not "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((restricted.LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_taken(port) from exc
            if exc.errno != errno.EACCES:  # ports < 1024 as non-root: the engine may still bind
                raise


def port_taken(port: int) -> RunError:
    return RunError(
        f"port {port} on {restricted.LOOPBACK} is already taken",
        f"choose another with --port N (e.g. --port {port + 1}), or --port 0 for any free port",
    )


# -- what the container gets -------------------------------------------------------


def password_hash(password: str) -> str:
    """A salted hash in the `algorithm:salt:hexdigest` form Jupyter checks."""
    salt = secrets.token_hex(16)
    digest = hashlib.sha512(password.encode("utf-8") + salt.encode("ascii")).hexdigest()
    return f"sha512:{salt}:{digest}"


# The logins a server may be given. nbs2i run gives exactly one (its token, or
# the password's hash): the others are set empty, so that one an image's ENV
# carries (upstream s2i writes a repository's .s2i/environment there
# unchecked) works nowhere beside it, and a planted hub token cannot hand the
# login to a hub of the image's choosing.
_LOGINS = (
    "JUPYTER_TOKEN",
    "JUPYTER_TOKEN_FILE",
    "JUPYTER_PASSWORD",
    "JUPYTER_PASSWORD_HASH",
    "JUPYTERHUB_API_TOKEN",
)


def server_env(request: RunRequest, token: str | None) -> dict[str, str]:
    env = dict.fromkeys(_LOGINS, "")
    env.update(request.env)
    if token is not None:
        env["JUPYTER_TOKEN"] = token
    if request.password is not None:
        # Hashed here: a container's own environment stays readable in
        # /proc/1/environ and `docker inspect`, so the plain password must
        # never be part of it.
        env["JUPYTER_PASSWORD_HASH"] = password_hash(request.password)
    return env


def run_labels(request: RunRequest, nonce: str) -> dict[str, str]:
    return {
        **dict(request.labels),
        labels.ROLE: labels.ROLE_RUN,
        labels.RUN_IMAGE: request.image,
        labels.RUN_NONCE: nonce,
    }


def started_by_run(container: Mapping[str, str], image: Mapping[str, str]) -> bool:
    """Did `nbs2i run` make this container? A container inherits its image's
    labels, so role=run proves nothing; the nonce it was created with does,
    unless the image itself carries that very value."""
    nonce = container.get(labels.RUN_NONCE, "")
    return (
        container.get(labels.ROLE) == labels.ROLE_RUN
        and len(nonce) >= 2 * NONCE_BYTES
        and image.get(labels.RUN_NONCE) != nonce
    )
