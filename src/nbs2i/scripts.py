"""Where the S2I scripts and the build environment come from.

Scripts (assemble, run, save-artifacts, usage) are looked up one by one, in
upstream s2i's order:

1. `--scripts-url`: `image:///dir` (the scripts are already in the builder at
   /dir/<name>) or `file:///dir` (files on this machine, uploaded);
2. the repository's `.s2i/bin/<name>` (uploaded);
3. the builder's `io.openshift.s2i.scripts-url` label (`image://` only: a
   builder cannot make nbs2i read the build machine's files).

An uploaded script is read once, here, and its bytes travel on: what runs is
what was checked. A repository's scripts are read with `read_control_file`
(never through a link out of the source, never a special file). Uploaded
scripts land in `<destination>/scripts/<name>`, as upstream puts them. Other
URL schemes (http, https) are refused: fetching code to run from the network
during a build is what `--scripts-url` users least expect from a tool that
runs offline in CI.

The environment is `.s2i/environment`, then each `-E` file, then each `-e`:
later values win. The files are KEY=VALUE lines, `#` comments and blank lines
ignored, as upstream reads them. Every name is checked against `ENV_RULES`,
the one table of the names a course may not set freely: the server's login,
configuration and code belong to the image and the platform, not the course.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i import labels
from nbs2i.archive import TarFile
from nbs2i.errors import BuildError, SourceError, UsageError
from nbs2i.source import read_control_file, read_regular_file

SCRIPT_NAMES = ("assemble", "run", "save-artifacts", "usage")
DEFAULT_DESTINATION = "/tmp"
SOURCE_SCRIPTS_DIR = ".s2i/bin"
SOURCE_ENV_FILE = ".s2i/environment"
# An -E file is the user's own, but still not read without bound.
ENV_FILE_LIMIT = 1 << 20

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Script:
    """One script: its path inside the build container (and the image), and the
    bytes to upload there, if any."""

    name: str
    path: str
    content: bytes | None = None  # None: the image has it


@dataclass(frozen=True)
class Scripts:
    """The scripts found for one build."""

    found: tuple[Script, ...]
    destination: str

    def get(self, name: str) -> Script | None:
        return next((s for s in self.found if s.name == name), None)

    def require(self, name: str, builder: str) -> Script:
        script = self.get(name)
        if script is None:
            raise BuildError(
                f"no {name} script: builder {builder} has no {labels.SCRIPTS_URL} label "
                f"and the source has no {SOURCE_SCRIPTS_DIR}/{name}",
                f"use an S2I builder image, add {SOURCE_SCRIPTS_DIR}/{name} to the "
                "repository, or give --scripts-url image:///path/to/scripts",
            )
        return script

    def uploads(self) -> list[TarFile]:
        """Tar entries (relative to the destination) for the scripts to upload."""
        base = PurePosixPath(self.destination)
        return [
            TarFile(str(PurePosixPath(s.path).relative_to(base)), data=s.content, mode=0o755)
            for s in self.found
            if s.content is not None
        ]


def parse_scripts_url(url: str, *, allow_file: bool = True) -> tuple[str, str]:
    """("image", dir) or ("file", dir) from a scripts URL; UsageError for anything else."""
    for scheme in ("image", "file"):
        prefix = f"{scheme}://"
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if not path.startswith("/"):
                break
            if scheme == "file" and not allow_file:
                break
            return scheme, path.rstrip("/") or "/"
    allowed = "image:///dir or file:///dir" if allow_file else "image:///dir"
    raise UsageError(f"scripts URL {url!r} is not supported", f"give {allowed}")


def given_scripts(scripts_url: str) -> tuple[str, str] | None:
    """--scripts-url parsed, a file:// directory checked; None when not given."""
    if not scripts_url:
        return None
    given = parse_scripts_url(scripts_url)
    if given[0] == "file" and not Path(given[1]).is_dir():
        raise UsageError(
            f"--scripts-url directory {given[1]} does not exist",
            "give a directory that holds assemble and run",
        )
    return given


def destination(image_labels: Mapping[str, str]) -> str:
    """The builder's destination dir (label io.openshift.s2i.destination, default /tmp)."""
    value = image_labels.get(labels.DESTINATION) or DEFAULT_DESTINATION
    if not value.startswith("/") or ".." in PurePosixPath(value).parts:
        raise BuildError(
            f"the builder's {labels.DESTINATION} label {value!r} is not an absolute path",
            "fix the label in the builder image",
        )
    return value.rstrip("/") or "/"


def resolve_scripts(
    *, scripts_url: str, source_root: Path | None, image_labels: Mapping[str, str]
) -> Scripts:
    """Find every script in upstream's order (see the module docstring)."""
    dest = destination(image_labels)
    upload_dir = f"{dest}/scripts" if dest != "/" else "/scripts"
    given = given_scripts(scripts_url)
    label = image_labels.get(labels.SCRIPTS_URL, "")
    from_label = parse_scripts_url(label, allow_file=False) if label else None
    found = []
    for name in SCRIPT_NAMES:
        script = _find(name, given, source_root, from_label, upload_dir)
        if script is not None:
            found.append(script)
    return Scripts(tuple(found), dest)


def _find(
    name: str,
    given: tuple[str, str] | None,
    source_root: Path | None,
    from_label: tuple[str, str] | None,
    upload_dir: str,
) -> Script | None:
    if given is not None:
        scheme, where = given
        if scheme == "image":
            return Script(name, f"{where}/{name}")
        local = Path(where) / name
        if local.is_file():
            return Script(name, f"{upload_dir}/{name}", _read_host_file(local, "script"))
    if source_root is not None:
        content = read_control_file(source_root, f"{SOURCE_SCRIPTS_DIR}/{name}")
        if content is not None:
            return Script(name, f"{upload_dir}/{name}", content)
    if from_label is not None:
        return Script(name, f"{from_label[1]}/{name}")
    return None


def _read_host_file(path: Path, what: str) -> bytes:
    """A small file of this machine that the user named (-E, --scripts-url file://)."""
    try:
        data = read_regular_file(path.resolve(), str(path), limit=ENV_FILE_LIMIT)
    except SourceError as exc:
        raise UsageError(f"{what}: {exc.problem}", exc.fix) from None
    if data is None:
        raise UsageError(f"{what} {path} does not exist", f"give an existing {what} file")
    return data


# -- environment ---------------------------------------------------------------


def parse_env_lines(lines: Iterable[str], where: str) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments and blank lines skipped. UsageError names the line."""
    env: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(
                f"{where}:{number}: {line!r} is not KEY=VALUE",
                "write one KEY=VALUE a line (KEY of letters, digits and _)",
            )
        env[key] = value
    return env


def _decode(data: bytes, where: str) -> list[str]:
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text", "save it as UTF-8") from None


def parse_env_pairs(pairs: Sequence[str], option: str = "-e") -> tuple[tuple[str, str], ...]:
    """`-e KEY=VALUE` options, in order."""
    found = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(
                f"{option} {pair!r} is not KEY=VALUE",
                f"write {option} KEY=VALUE (KEY of letters, digits and _)",
            )
        found.append((key, value))
    return tuple(found)


# -- the names a course may not set freely ---------------------------------------------

# What `nbs2i build` does when a course's environment sets a name of a rule.
REFUSED = "refused"
KERNELS = "kernels and terminals only"
ALLOWED = "allowed"
# When `nbs2i verify` flags a name of a rule that an image's ENV carries.
ALWAYS = "always"
PATHS = "when a path is in HOME or the workspace, relative, or writable by anyone"
NEVER = "no"


@dataclass(frozen=True)
class EnvRule:
    """One row of `ENV_RULES`: names (a trailing `*` makes a prefix), what a build
    does with them, what the image does at start when an image's ENV carries
    one anyway (upstream s2i writes `.s2i/environment` into ENV unchecked), when
    `nbs2i verify` flags one in an image's ENV, and why."""

    names: tuple[str, ...]
    build: str
    run: str
    verify: str
    why: str

    def matches(self, name: str) -> bool:
        return any(name.startswith(n[:-1]) if n.endswith("*") else name == n for n in self.names)


# The first row that matches a name decides; exact rows come before the
# prefixes that would also match them.
ENV_RULES: tuple[EnvRule, ...] = (
    EnvRule(
        ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "JUPYTER_PASSWORD", "JUPYTER_PASSWORD_HASH"),
        REFUSED,
        "used: the login the platform gives (`nbs2i run --token/--password`, a secret)",
        ALWAYS,
        "a login the course's author knows, working beside the one the platform sets",
    ),
    EnvRule(
        ("JUPYTERHUB_*",),
        REFUSED,
        "used: the hub sets them when it spawns the server",
        ALWAYS,
        "JUPYTERHUB_API_TOKEN hands the login to JUPYTERHUB_API_URL, a hub of the "
        "course's choosing",
    ),
    EnvRule(
        ("JUPYTER_CONFIG_DIR",),
        REFUSED,
        "set to the image's empty, read-only /etc/nbs2i/jupyter",
        PATHS,
        "where the server reads its configuration, Python that runs inside it: one "
        "`c.ServerApp.token = ''` switches authentication off",
    ),
    EnvRule(
        (
            "JUPYTER_CONFIG_PATH",
            "JUPYTER_NO_CONFIG",
            "JUPYTER_PREFER_ENV_PATH",
            "JUPYTER_PLATFORM_DIRS",
        ),
        REFUSED,
        "dropped when the container starts",
        ALWAYS,
        "they add or swap directories of the server's configuration search path",
    ),
    EnvRule(
        (
            "JUPYTER_SERVER_ALLOW_UNAUTHENTICATED_ACCESS",
            "JUPYTER_ALLOW_INSECURE_WRITES",
            "JUPYTER_GATEWAY_*",
        ),
        REFUSED,
        "dropped when the container starts",
        ALWAYS,
        "authentication off, kernel keys readable by anyone, or every kernel run by a "
        "gateway of the course's choosing",
    ),
    EnvRule(
        ("JUPYTER_PATH",),
        REFUSED,
        "set to the image's kernelspec directory",
        PATHS,
        "where the server finds kernelspecs: a planted one runs the course's command as the kernel",
    ),
    EnvRule(
        ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_*", "XDG_DATA_HOME"),
        REFUSED,
        "dropped when the container starts (the platform set-up sets its own)",
        PATHS,
        "where the server finds the JavaScript it serves and keeps the notebook-trust "
        "secret and its runtime files: an extension reads the token",
    ),
    EnvRule(
        ("JUPYTER_IMAGE", "JUPYTER_IMAGE_SPEC"),
        REFUSED,
        "used: the spawner names the image it started (DockerSpawner, KubeSpawner)",
        NEVER,
        "the platform's to say; a course cannot know where it runs",
    ),
    EnvRule(
        ("JUPYTER_PORT", "JUPYTER_BASE_URL"),
        ALLOWED,
        "used outside a hub (the port checked: 1024-65535)",
        NEVER,
        "the image's own settings; a hub's win under a hub",
    ),
    EnvRule(
        ("JUPYTER_*",),
        REFUSED,
        "dropped when the container starts",
        NEVER,
        "the server's settings; a course's notebooks have no use for them",
    ),
    EnvRule(
        ("NBS2I_COURSE_UPDATES",),
        ALLOWED,
        "used: `off` seeds the workspace as images before course updates did (what is "
        "missing is copied, nothing is replaced)",
        NEVER,
        "the teacher's choice of how a new image's course reaches students who started",
    ),
    EnvRule(
        ("HOME", "ENV", "BASH_ENV", "NOTEBOOK_DIR", "NBS2I_*"),
        REFUSED,
        "left to the entrypoint, which relies on them",
        NEVER,
        "the platform set-up's: HOME holds the user's Jupyter configuration and is "
        "seeded from NOTEBOOK_DIR; ENV and BASH_ENV give every shell its name and umask",
    ),
    EnvRule(
        ("LD_*", "NSS_WRAPPER_*"),
        REFUSED,
        "left as they are: the image relies on them",
        NEVER,
        "the loader and nss_wrapper give any UID a name (LD_PRELOAD=libnss_wrapper.so)",
    ),
    EnvRule(
        ("PATH",),
        ALLOWED,
        "the server and its children get it; the run script's own commands do not",
        NEVER,
        "extending it is fine; one without /usr/bin is refused (nothing could start)",
    ),
    EnvRule(
        ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONSTARTUP", "PYTHONPYCACHEPREFIX"),
        KERNELS,
        "ignored by the server, whose Python runs isolated (-I); kernels and terminals use them",
        PATHS,
        "where Python finds code: a sitecustomize.py on PYTHONPATH would run inside the "
        "server; a course's lib/ on PYTHONPATH is what its notebooks import",
    ),
    EnvRule(
        ("PYTHON*",),
        KERNELS,
        "ignored by the server, whose Python runs isolated (-I); kernels and terminals use them",
        NEVER,
        "PYTHONWARNINGS imports a category's module, PYTHONBREAKPOINT a hook, "
        "PYTHONINSPECT opens a prompt at exit",
    ),
)


def env_rule(name: str) -> EnvRule | None:
    """The row of `ENV_RULES` that decides `name`, if any."""
    return next((rule for rule in ENV_RULES if rule.matches(name)), None)


def check_environment(env: Mapping[str, str]) -> None:
    """Refuse, in one line, a name a course may not set (`ENV_RULES`), an
    invalid name, and a PATH without the system's programs."""
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise UsageError(f"environment name {key!r} is not valid", "use letters, digits and _")
        rule = env_rule(key)
        if rule is not None and rule.build == REFUSED:
            raise UsageError(
                f"{key} is not the course's to set: {rule.why}",
                f"leave {key} out of .s2i/environment, -E files and -e",
            )
        if key == "PATH" and not any(
            p.rstrip("/") in ("/usr/bin", "/bin") for p in value.split(":")
        ):
            raise UsageError(
                f"PATH={value!r} leaves out /usr/bin: nothing in the image could start",
                "extend PATH instead of replacing it, e.g. PATH=/my/tools:/opt/app-root/venv/bin:"
                "/usr/local/bin:/usr/bin:/bin",
            )


def build_environment(
    source_root: Path | None, env_files: Sequence[Path], env: Mapping[str, str]
) -> dict[str, str]:
    """`.s2i/environment`, then -E files, then -e values; later wins; checked."""
    result: dict[str, str] = {}
    if source_root is not None:
        data = read_control_file(source_root, SOURCE_ENV_FILE)
        if data is not None:
            result.update(parse_env_lines(_decode(data, SOURCE_ENV_FILE), SOURCE_ENV_FILE))
    result.update(host_environment(env_files))
    result.update(env)
    check_environment(result)
    return result


def host_environment(env_files: Sequence[Path]) -> dict[str, str]:
    """The -E files of this machine, in order; later wins."""
    result: dict[str, str] = {}
    for path in env_files:
        data = _read_host_file(Path(path), "environment file")
        result.update(parse_env_lines(_decode(data, str(path)), str(path)))
    return result
