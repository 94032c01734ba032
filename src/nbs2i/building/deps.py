"""A course's dependency files: which there are, what they ask for, their cache key.

repo2docker's names, so existing course repositories build unchanged:
`requirements.txt` (with its `-r`/`-c` includes) for the kernel's Python
environment, `install.R` for an R builder, `apt.txt` for Debian packages, and
`.s2i/kernels/<name>/requirements.txt` (and an optional `display-name`) for
an extra kernel. As with
repo2docker, a `binder/` (or `.binder/`) directory, when there is one, holds
them instead of the root. The others repo2docker knows are refused with what
to do instead: nothing a course asks for is silently ignored.

Everything here is pure: files are read with `read_control_file` (never
through a link out of the source, never a special file, bounded), nothing
touches the engine.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i.errors import SourceError
from nbs2i.source import read_control_file

REQUIREMENTS = "requirements.txt"
INSTALL_R = "install.R"
APT = "apt.txt"
KERNELS_DIR = ".s2i/kernels"
KERNEL_DISPLAY_NAME = "display-name"
CONFIG_DIRS = ("binder", ".binder")
# repo2docker's other files, and what a course does instead.
UNSUPPORTED = {
    "environment.yml": "conda is not in the image: list pip packages in requirements.txt and "
    "Debian packages in apt.txt",
    "Pipfile": "write requirements.txt instead (pipenv requirements > requirements.txt)",
    "runtime.txt": "the Python version is the builder's; remove runtime.txt",
    "postBuild": "put build steps in .s2i/bin/assemble (it may call /usr/libexec/s2i/assemble)",
    "start": "the image's run script starts the server; remove start",
}
# Debian package names (Policy 5.6.7); nothing else may reach apt-get.
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_KERNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_PACKAGES = 500
# `-r other.txt` / `-c constraints.txt` pull more files into the dependency layer.
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)")
# A requirement that installs something from the source tree itself.
_LOCAL_REQ = re.compile(r"^\s*(?:-e\s+|--editable[\s=]+)?(?:\.|/|file:)")


@dataclass(frozen=True)
class Dependencies:
    """What the dependency layer installs."""

    files: tuple[tuple[str, bytes], ...]  # (path relative to the source, content), sorted
    apt_packages: tuple[str, ...] = ()
    # Why the dependencies cannot get a layer of their own ("" when they can):
    # they install from the source tree, which is not there yet.
    one_step: str = ""


def config_dir(root: Path) -> str:
    """Where the dependency files are: binder/ or .binder/ when present, else ""."""
    for name in CONFIG_DIRS:
        if (root / name).is_dir() and not (root / name).is_symlink():
            return name
    return ""


def find(root: Path) -> Dependencies | None:
    """The course's dependency files, or None when it has none."""
    base = config_dir(root)
    for name, fix in UNSUPPORTED.items():
        if read_control_file(root, _join(base, name)) is not None:
            raise SourceError(f"{_join(base, name)} is not supported by nbs2i", fix)
    files: dict[str, bytes] = {}
    one_step = _requirements(root, _join(base, REQUIREMENTS), files)
    for rel in (_join(base, INSTALL_R), _join(base, APT)):
        data = read_control_file(root, rel)
        if data is not None:
            files[rel] = data
    for name in _kernel_names(root):
        one_step = _requirements(root, f"{KERNELS_DIR}/{name}/{REQUIREMENTS}", files) or one_step
        display = read_control_file(root, f"{KERNELS_DIR}/{name}/{KERNEL_DISPLAY_NAME}")
        if display is not None:
            files[f"{KERNELS_DIR}/{name}/{KERNEL_DISPLAY_NAME}"] = display
    if not files:
        return None
    apt = apt_packages(files.get(_join(base, APT), b""), _join(base, APT))
    return Dependencies(tuple(sorted(files.items())), apt, one_step)


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def _kernel_names(root: Path) -> list[str]:
    kernels = root / KERNELS_DIR
    if not kernels.is_dir() or kernels.is_symlink():
        return []
    names = sorted(p.name for p in kernels.iterdir())
    for name in names:
        if not _KERNEL_NAME.match(name):
            raise SourceError(
                f"{KERNELS_DIR}/{name} is not a kernel name",
                "name kernels with lowercase letters, digits, '.', '_' and '-'",
            )
    return names


def _requirements(root: Path, first: str, found: dict[str, bytes]) -> str:
    """Add a requirements file and its includes to `found`; the reason they cannot
    get a layer of their own, or ""."""
    todo = [first]
    while todo:
        rel = todo.pop()
        if rel in found:
            continue
        data = read_control_file(root, rel)
        if data is None:
            if rel == first:
                return ""
            raise SourceError(
                f"{rel}, included by a requirements file, does not exist", f"add {rel}"
            )
        found[rel] = data
        for line in data.decode("utf-8", "replace").splitlines():
            if _LOCAL_REQ.match(line):
                return f"{rel} installs from the source tree"
            include = _INCLUDE.match(line)
            if include:
                todo.append(_included(rel, include.group(1)))
    return ""


def _included(rel: str, target: str) -> str:
    joined = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or joined == ".." or joined.startswith("../"):
        raise SourceError(
            f"{rel} includes {target}, outside the source", "include files of the repository only"
        )
    return PurePosixPath(joined).as_posix()


def apt_packages(data: bytes, where: str) -> tuple[str, ...]:
    """Debian package names, one or more a line, `#` comments; anything else (an
    option, a path, a version, shell syntax) is refused with its line."""
    packages: list[str] = []
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        for word in raw.split("#", 1)[0].split():
            if not _PACKAGE.match(word):
                raise SourceError(
                    f"{where}:{number}: {word!r} is not a Debian package name",
                    "list package names only (lowercase letters, digits, '+', '-', '.')",
                )
            packages.append(word)
    if len(packages) > MAX_PACKAGES:
        raise SourceError(
            f"{where} lists {len(packages)} packages", f"keep it under {MAX_PACKAGES}"
        )
    return tuple(dict.fromkeys(packages))


def key(parts: Mapping[str, str], files: tuple[tuple[str, bytes], ...] = ()) -> str:
    """A cache key over named strings and file contents (order-independent names)."""
    digest = hashlib.sha256()
    for name in sorted(parts):
        digest.update(f"{name}={parts[name]}".encode() + b"\0")
    for rel, data in files:
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:20]
