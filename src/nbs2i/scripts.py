"""Where the S2I scripts and the build environment come from.

Scripts (assemble, run, save-artifacts, usage) are looked up one by one, in
upstream s2i's order:

1. `--scripts-url`: `image:///dir` (the scripts are already in the builder at
   /dir/<name>) or `file:///dir` (files on this machine, uploaded);
2. the repository's `.s2i/bin/<name>` (uploaded);
3. the builder's `io.openshift.s2i.scripts-url` label (`image://` only: a
   builder cannot make nbs2i read the build machine's files).

Uploaded scripts land in `<destination>/scripts/<name>`, as upstream puts them.
Other URL schemes (http, https) are refused: fetching code to run from the
network during a build is what `--scripts-url` users least expect from a tool
that runs offline in CI.

The environment is `.s2i/environment`, then each `-E` file, then each `-e`:
later values win. The files are KEY=VALUE lines, `#` comments and blank lines
ignored, as upstream reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i.archive import TarFile
from nbs2i.errors import BuildError, UsageError

SCRIPT_NAMES = ("assemble", "run", "save-artifacts", "usage")
SCRIPTS_URL_LABEL = "io.openshift.s2i.scripts-url"
DESTINATION_LABEL = "io.openshift.s2i.destination"
ASSEMBLE_USER_LABEL = "io.openshift.s2i.assemble-user"
DEFAULT_DESTINATION = "/tmp"
SOURCE_SCRIPTS_DIR = ".s2i/bin"
SOURCE_ENV_FILE = ".s2i/environment"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Script:
    """One script: its path inside the build container, and the file to upload if any."""

    name: str
    path: str  # absolute path in the assemble container (and the image)
    upload: Path | None  # host file to put at `path`; None when the image has it
    origin: str  # "scripts-url", "source" or "image" (for messages)


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
                f"no {name} script: builder {builder} has no {SCRIPTS_URL_LABEL} label "
                f"and the source has no {SOURCE_SCRIPTS_DIR}/{name}",
                f"use an S2I builder image, add {SOURCE_SCRIPTS_DIR}/{name} to the "
                "repository, or give --scripts-url image:///path/to/scripts",
            )
        return script

    def uploads(self) -> list[TarFile]:
        """Tar entries (relative to the destination) for the scripts to upload."""
        base = PurePosixPath(self.destination)
        return [
            TarFile(name=str(PurePosixPath(s.path).relative_to(base)), path=s.upload, mode=0o755)
            for s in self.found
            if s.upload is not None
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


def destination(labels: Mapping[str, str] | None) -> str:
    """The builder's destination dir (label io.openshift.s2i.destination, default /tmp)."""
    value = (labels or {}).get(DESTINATION_LABEL) or DEFAULT_DESTINATION
    if not value.startswith("/"):
        raise BuildError(
            f"the builder's {DESTINATION_LABEL} label {value!r} is not an absolute path",
            "fix the label in the builder image",
        )
    return value.rstrip("/") or "/"


def resolve_scripts(
    *,
    scripts_url: str,
    source_root: Path | None,
    image_labels: Mapping[str, str] | None,
) -> Scripts:
    """Find every script in upstream's order (see the module docstring)."""
    dest = destination(image_labels)
    upload_dir = f"{dest}/scripts" if dest != "/" else "/scripts"
    given = parse_scripts_url(scripts_url) if scripts_url else None
    label = (image_labels or {}).get(SCRIPTS_URL_LABEL, "")
    from_label = parse_scripts_url(label, allow_file=False) if label else None
    if given and given[0] == "file" and not Path(given[1]).is_dir():
        raise UsageError(
            f"--scripts-url directory {given[1]} does not exist",
            "give a directory that holds assemble and run",
        )
    found: list[Script] = []
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
            return Script(name, f"{where}/{name}", None, "scripts-url")
        local = Path(where) / name
        if local.is_file():
            return Script(name, f"{upload_dir}/{name}", local, "scripts-url")
    if source_root is not None:
        local = source_root / SOURCE_SCRIPTS_DIR / name
        if local.is_file():
            return Script(name, f"{upload_dir}/{name}", local, "source")
    if from_label is not None:
        return Script(name, f"{from_label[1]}/{name}", None, "image")
    return None


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


def parse_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot read environment file {path}: {exc.strerror}",
            "give an existing KEY=VALUE file to -E/--environment-file",
        ) from None
    except UnicodeDecodeError:
        raise UsageError(f"environment file {path} is not UTF-8 text", "save it as UTF-8") from None
    return parse_env_lines(text.splitlines(), str(path))


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """-e KEY=VALUE options."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(f"-e {pair!r} is not KEY=VALUE", "write -e KEY=VALUE")
        env[key] = value
    return env


def build_environment(
    source_root: Path | None, env_files: Sequence[Path], env: Mapping[str, str]
) -> dict[str, str]:
    """`.s2i/environment`, then -E files, then -e values; later wins."""
    result: dict[str, str] = {}
    if source_root is not None and (source_root / SOURCE_ENV_FILE).is_file():
        result.update(parse_env_file(source_root / SOURCE_ENV_FILE))
    for path in env_files:
        result.update(parse_env_file(Path(path)))
    result.update(env)
    return result
