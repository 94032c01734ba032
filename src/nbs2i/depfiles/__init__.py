"""The dependency files a course may carry, their precedence, and what is done
with each: one definition for every way a course is built.

`nbs2i build` imports it (building/deps.py) to plan its dependency layer before
anything slow happens. The builder image carries this file as
/usr/libexec/s2i/depfiles.py, and its assemble asks it the same question
(`/opt/jupyter/bin/python -I depfiles.py plan SRC --python X.Y --r yes|no`), so
upstream `s2i`, OpenShift and nbs2i's container path install the same things
and refuse with the same line. Hence the standard library and PyYAML only, and
nothing else of nbs2i.

Precedence is repo2docker's: `binder/` or `.binder/` when the repository has
one (both: refused), else the top. In that place, in repo2docker's order of
build packs:

- `Dockerfile`, `default.nix`: not run (a line says so); nbs2i builds with its
  S2I builder;
- `Project.toml`, `JuliaProject.toml`, `REQUIRE` (Julia), `DESCRIPTION` (an R
  package, top only), `runtime.txt` other than the builder's `python-X.Y`,
  `Pipfile`, `Pipfile.lock`, `postBuild`, `start`: refused with what to do;
- `environment.yml` / `environment.yaml`: installed with pip when every
  dependency is one pip can install (see `pip_requirement`), else refused;
  with one, `requirements.txt` and the package at the top are not used;
- `requirements.txt` (and its `-r`/`-c` includes): `pip install -r`;
- `setup.py`, or `pyproject.toml` with a `[build-system]` table (top only):
  the repository itself, `pip install -e .` in the notebook directory, last;
- beside them `apt.txt` (Debian package names), `install.R` (R builders) and
  nbs2i's `.s2i/kernels/NAME/requirements.txt` (an extra kernel).

A file outside the chosen place gets a line saying it is not used. Reads never
leave the source, never open a special file, and stop at `tree.LIMIT` bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .conda import environment_requirements, release
from .tree import Refused, Tree, shown

__all__ = ["Action", "Builder", "Decision", "Refused", "Tree", "decide", "main"]

CONFIG_DIRS = (".binder", "binder")
KERNELS_DIR = ".s2i/kernels"
# The image's own kernels: an extra kernel may not take their names.
RESERVED_KERNELS = ("python3", "ir")
MAX_PACKAGES = 500

# Files refused wherever the configuration lives, with what to do instead.
REFUSED = {
    "Project.toml": ("nbs2i's builders have no Julia", "remove it, or build with repo2docker"),
    "JuliaProject.toml": ("nbs2i's builders have no Julia", "remove it, or build with repo2docker"),
    "REQUIRE": ("nbs2i's builders have no Julia", "remove it, or build with repo2docker"),
    "Pipfile": ("pipenv is not used", "write requirements.txt: pipenv requirements > it"),
    "Pipfile.lock": ("pipenv is not used", "write requirements.txt: pipenv requirements > it"),
    "postBuild": (
        "build steps run only from .s2i/bin/assemble",
        "move them into .s2i/bin/assemble (it may call /usr/libexec/s2i/assemble)",
    ),
    "start": (
        "the image's run script starts the server",
        "remove start; set variables in .s2i/environment",
    ),
}
# Files that describe another way to build the whole image: repositories carry
# them for other tools too, and the notebooks build without them.
NOT_RUN = {
    "Dockerfile": "nbs2i builds with its S2I builder; the Dockerfile is ignored",
    "default.nix": "nbs2i has no Nix; default.nix is ignored",
    "requirements3.txt": "it is for repo2docker's Python 2 images; requirements3.txt is ignored",
}
ENVIRONMENT_FILES = ("environment.yml", "environment.yaml")
PACKAGE_FILES = ("setup.py", "setup.cfg", "pyproject.toml")
# Every file named above: outside the place that holds the configuration, each
# gets a line saying it is not used.
KNOWN = (
    "requirements.txt",
    *ENVIRONMENT_FILES,
    "apt.txt",
    "install.R",
    "runtime.txt",
    *REFUSED,
    *NOT_RUN,
    "DESCRIPTION",
    "setup.py",
    "pyproject.toml",
)

# Debian package names (Policy 5.6.7); nothing else may reach apt-get.
_DEBIAN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_KERNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# `-r other.txt` / `-c constraints.txt` pull in more files.
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)")
# A requirement that installs something from the source tree itself.
_LOCAL = re.compile(r"^\s*(?:-e\s+|--editable[\s=]+)?(?:\.|/|file:)")
_RUNTIME = re.compile(r"python-(\d+)(?:\.(\d+)(?:\.\d+)?)?")


@dataclass(frozen=True)
class Builder:
    """What the builder provides; None: not known, so not checked."""

    python: str | None = None  # "3.11"
    r: bool | None = None


@dataclass(frozen=True)
class Action:
    """One install step, in the order they run."""

    kind: str  # apt | requirements | environment | install.R | kernel | package
    path: str  # what it installs from, relative to the source ("." for the package)
    digest: str  # of every file it reads: the same digest, nothing new to install
    detail: str = ""  # apt: the packages; kernel: its display name
    requirements: tuple[str, ...] = ()  # environment: the pip requirement lines


@dataclass(frozen=True)
class Decision:
    base: str  # "binder", ".binder" or "" (the top)
    actions: tuple[Action, ...]
    notices: tuple[tuple[str, str], ...]  # ("info" | "ignored", one line)
    files: tuple[tuple[str, bytes], ...]  # what the actions read, sorted by path
    local: str = ""  # why they install from the source tree ("": they do not)

    @property
    def whole_source(self) -> bool:
        """The repository itself is installed: that step needs all of it."""
        return any(a.kind == "package" for a in self.actions)


@dataclass
class _Draft:
    """A decision being made: what was found so far."""

    tree: Tree
    builder: Builder
    base: str
    actions: list[Action] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    local: str = ""

    def at(self, name: str) -> str:
        return f"{self.base}/{name}" if self.base else name

    def add(
        self,
        kind: str,
        path: str,
        read: dict[str, bytes],
        detail: str = "",
        requirements: tuple[str, ...] = (),
    ) -> None:
        self.files.update(read)
        self.actions.append(Action(kind, path, _digest(read), detail, requirements))

    def say(self, text: str) -> None:
        self.notices.append(("info", text))

    def ignore(self, text: str) -> None:
        self.notices.append(("ignored", text))


def decide(tree: Tree, builder: Builder) -> Decision:
    """What to install from the source, in order, and what to tell the user.
    Raises Refused (one line: the file and a fix) before anything is installed."""
    draft = _Draft(tree, builder, config_dir(tree))
    _not_in_place(draft)
    _refused(draft)
    _runtime(draft)
    for name, why in NOT_RUN.items():
        if tree.kind(draft.at(name)):
            draft.ignore(f"{draft.at(name)}: {why}")
    _apt(draft)
    environment = _environment(draft)  # its path, "" without one
    if not environment:
        _requirements_txt(draft)
    _install_r(draft)
    _kernels(draft)
    # Last: in the dependency phase it moves the sources to where they will live.
    _package(draft, environment)
    files = tuple(sorted(draft.files.items()))
    return Decision(draft.base, tuple(draft.actions), tuple(draft.notices), files, draft.local)


def config_dir(tree: Tree) -> str:
    """binder/ or .binder/ when the repository has one, else "" (the top)."""
    found = [name for name in CONFIG_DIRS if tree.kind(name) == "dir"]
    if len(found) > 1:
        raise Refused(
            "the repository has both binder/ and .binder/", "keep one (repo2docker refuses both)"
        )
    return found[0] if found else ""


def _not_in_place(draft: _Draft) -> None:
    if not draft.base:
        return
    for name in KNOWN:
        if draft.tree.kind(name) and (name != "pyproject.toml" or _buildable(draft.tree, False)):
            draft.ignore(f"{name} at the top is not used: {draft.base}/ holds the configuration")


def _refused(draft: _Draft) -> None:
    for name, (problem, fix) in REFUSED.items():
        if draft.tree.kind(draft.at(name)):
            raise Refused(f"{draft.at(name)} is not supported ({problem})", fix)
    if not draft.base and draft.tree.kind("DESCRIPTION"):
        raise Refused(
            "DESCRIPTION (an R package) is not supported",
            "list the R packages it needs in install.R and build with an R builder",
        )


def _runtime(draft: _Draft) -> None:
    rel = draft.at("runtime.txt")
    data = draft.tree.read(rel)
    if data is None:
        return
    asked = shown(data.decode("utf-8", "replace").strip())
    have = draft.builder.python
    match = _RUNTIME.fullmatch(asked)
    if match and have is None:
        draft.ignore(f"{rel} asks for {asked}; the builder does not say its Python: not checked")
        return
    wanted = tuple(int(g) for g in match.groups() if g is not None) if match else ()
    if not have or not wanted or release(have)[: len(wanted)] != wanted:
        runs = f"the builder runs Python {have}" if have else "the builder's Python is unknown"
        raise Refused(
            f"{rel} asks for {asked or 'nothing'}, and {runs}",
            f"write python-{have} in it or remove it" if have else f"remove {rel}",
        )
    draft.files[rel] = data
    draft.say(f"{rel} asks for {asked}: Python {have} runs, the builder's")


def _apt(draft: _Draft) -> None:
    rel = draft.at("apt.txt")
    data = draft.tree.read(rel)
    if data is not None:
        packages = apt_packages(data, rel)
        if packages:
            draft.add("apt", rel, {rel: data}, detail=" ".join(packages))


def apt_packages(data: bytes, where: str) -> tuple[str, ...]:
    """Debian package names, one or more a line, `#` comments; anything else (an
    option, a path, a version, shell syntax) is refused with its line."""
    packages: list[str] = []
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        for word in raw.split("#", 1)[0].split():
            if not _DEBIAN.match(word):
                raise Refused(
                    f"{where}:{number}: {shown(word)!r} is not a Debian package name",
                    "list package names only (lowercase letters, digits, '+', '-', '.')",
                )
            packages.append(word)
    if len(packages) > MAX_PACKAGES:
        raise Refused(f"{where} lists {len(packages)} packages", f"keep it under {MAX_PACKAGES}")
    return tuple(dict.fromkeys(packages))


def _requirements_txt(draft: _Draft) -> None:
    rel = draft.at("requirements.txt")
    read: dict[str, bytes] = {}
    if _requirements(draft, rel, read):
        draft.add("requirements", rel, read)


def _requirements(draft: _Draft, first: str, found: dict[str, bytes]) -> bool:
    """Add a requirements file and its includes to `found`; False when it does
    not exist."""
    data = draft.tree.read(first)
    if data is None:
        return False
    found[first] = data
    _follow(draft, first, data.decode("utf-8", "replace").splitlines(), found)
    return True


def _follow(draft: _Draft, rel: str, lines: Iterable[str], found: dict[str, bytes]) -> None:
    """The includes of requirement `lines` (read from `rel`), recursively."""
    for line in lines:
        if _LOCAL.match(line) and not draft.local:
            draft.local = f"{rel} installs from the source tree"
        include = _INCLUDE.match(line)
        if not include:
            continue
        target = _included(rel, include.group(1))
        if target in found:
            continue
        data = draft.tree.read(target)
        if data is None:
            raise Refused(f"{target}, included by {rel}, does not exist", f"add {target}")
        found[target] = data
        _follow(draft, target, data.decode("utf-8", "replace").splitlines(), found)


def _included(rel: str, target: str) -> str:
    joined = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or joined == ".." or joined.startswith("../"):
        raise Refused(
            f"{rel} includes {shown(target)}, outside the source",
            "include files of the repository only",
        )
    return joined


def _install_r(draft: _Draft) -> None:
    rel = draft.at("install.R")
    data = draft.tree.read(rel)
    if data is None:
        return
    if draft.builder.r is False:
        raise Refused(
            f"{rel} needs R, which this builder does not have",
            "build with an R builder (nbs2i/builder-r or nbs2i/builder-datascience)",
        )
    draft.add("install.R", rel, {rel: data})


def _kernels(draft: _Draft) -> None:
    if draft.tree.kind(KERNELS_DIR) != "dir":
        return
    for name in draft.tree.names(KERNELS_DIR):
        where = f"{KERNELS_DIR}/{name}"
        if not _KERNEL.match(name) or name in RESERVED_KERNELS:
            raise Refused(
                f"{shown(where)} is not a kernel name",
                "use lowercase letters, digits, '.', '_' and '-', and not python3 or ir",
            )
        if draft.tree.kind(where) != "dir":
            raise Refused(f"{where} is not a directory", f"make {where} a kernel's directory")
        read: dict[str, bytes] = {}
        if not _requirements(draft, f"{where}/requirements.txt", read):
            raise Refused(f"{where} has no requirements.txt", f"add {where}/requirements.txt")
        display = draft.tree.read(f"{where}/display-name")
        named = f"Python ({name})"
        if display is not None:
            read[f"{where}/display-name"] = display
            named = shown(display.decode("utf-8", "replace").strip().split("\n")[0]) or named
        draft.add("kernel", where, read, detail=named)


def _package(draft: _Draft, environment: str) -> None:
    if draft.base:
        return  # a package at the top got its line with the other files there
    if not _buildable(draft.tree):
        if draft.tree.kind("pyproject.toml"):
            draft.ignore("pyproject.toml has no [build-system] table: not installed as a package")
        return
    what = "setup.py" if draft.tree.kind("setup.py") else "pyproject.toml"
    if environment:
        draft.ignore(f"{what} is not installed: {environment} is used (as repo2docker does)")
        return
    read = {name: data for name in PACKAGE_FILES if (data := draft.tree.read(name)) is not None}
    draft.add("package", ".", read)
    draft.say(
        f"{what}: the repository is installed into the kernel environment "
        "(pip install -e . in the notebook directory, after the other dependencies)"
    )


def _buildable(tree: Tree, strict: bool = True) -> bool:
    """setup.py, or a pyproject.toml with a [build-system] table (PEP 517/518: pip
    can build it); one without (a tool's settings, an application's list of
    dependencies) is not installed, as repo2docker does not. Not valid TOML:
    refused when it would be used (`strict`), else not a package."""
    if tree.kind("setup.py"):
        return True
    data = tree.read("pyproject.toml")
    if data is None:
        return False
    import tomllib  # a build without a pyproject.toml does not pay for it

    try:
        table = tomllib.loads(data.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as exc:
        if not strict:
            return False
        raise Refused(f"pyproject.toml is not valid TOML ({exc})", "fix it") from None
    return isinstance(table.get("build-system"), dict)


# -- environment.yml --------------------------------------------------------------


def _environment(draft: _Draft) -> str:
    """The environment file, installed with pip; "" when there is none."""
    present = [draft.at(n) for n in ENVIRONMENT_FILES if draft.tree.kind(draft.at(n))]
    if not present:
        return ""
    if len(present) > 1:
        raise Refused(f"{present[0]} and {present[1]} both exist", "keep one")
    rel = present[0]
    data = draft.tree.read(rel) or b""
    lines, renamed = environment_requirements(data, rel, draft.builder.python)
    read = {rel: data}
    _follow(draft, rel, lines, read)
    if draft.tree.kind(draft.at("requirements.txt")):
        draft.ignore(f"{draft.at('requirements.txt')} is not used: {rel} is (as repo2docker does)")
    if not lines:
        draft.say(f"{rel} asks for nothing pip installs; conda is not used")
        return rel
    draft.add("environment", rel, read, requirements=tuple(lines))
    as_named = f" ({', '.join(renamed)})" if renamed else ""
    draft.say(f"{rel} installed with pip{as_named}; conda is not used")
    return rel


def _digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + files[rel] + b"\0")
    return digest.hexdigest()


# -- the builder's assemble asks through this -----------------------------------------


def plan_lines(decision: Decision) -> list[str]:
    """The decision as tab-separated lines for a shell: `info|ignored TEXT`, then
    `KIND PATH DIGEST [DETAIL]` per action, with `requirement LINE` after an
    environment action."""
    lines = [f"{kind}\t{shown(text, 2000)}" for kind, text in decision.notices]
    for action in decision.actions:
        fields = [action.kind, action.path, action.digest, action.detail]
        lines.append("\t".join(f for f in fields if f))
        lines += [f"requirement\t{line}" for line in action.requirements]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # the builder's command line only

    parser = argparse.ArgumentParser(prog="depfiles", description="What assemble installs.")
    parser.add_argument("command", choices=["plan"])
    parser.add_argument("source")
    parser.add_argument("--python", default=None, help="the kernel environment's X.Y")
    parser.add_argument("--r", choices=["yes", "no"], default=None)
    args = parser.parse_args(argv)
    r = None if args.r is None else args.r == "yes"
    try:
        decision = decide(Tree(args.source), Builder(args.python, r))
    except Refused as exc:
        print(f"assemble: error: {exc}", file=sys.stderr)
        return 1
    for line in plan_lines(decision):
        print(line)
    return 0
