"""Conda environment files (`environment.yml`, `environment.yaml`) installed
with pip into the kernel environment: conda is not in the image.

Every dependency must be one pip can install: `python` (a version the builder
provides), `pip`, a package pip installs under the same name or under the name
`PIP_NAMES` gives, or an entry of a `pip:` list. Conda's version specs become
pip's (`pip_requirement`). A package that only conda has (`CONDA_ONLY`: R,
CUDA, compilers, programs, system libraries), a channel (`conda-forge::x`), a
build string (`numpy=1.26=py311h...`) or environment variables are refused in
one line naming the first one. Part of the dependency-file definition the
builder image carries: the standard library and PyYAML only.
"""

from __future__ import annotations

import re

from .tree import Refused, shown

# conda-forge names whose Python package pip installs under another name. Small
# on purpose: the common renames in course environments.
PIP_NAMES = {
    "pytorch": "torch",
    "py-opencv": "opencv-python-headless",  # headless: the image has no display libraries
    "opencv": "opencv-python-headless",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "python-graphviz": "graphviz",
    "msgpack-python": "msgpack",
}
# Conda packages that are no Python package pip could install: R, CUDA,
# compilers, programs and the system libraries conda environments list. Names
# as pip compares them: lowercase, "-" for "_".
CONDA_ONLY = frozenset(
    {
        "r", "r-base", "rstudio", "cudatoolkit", "cudnn", "nccl", "mkl", "nomkl", "blas",
        "openblas", "nodejs", "gcc", "gxx", "gfortran", "compilers", "make", "git", "julia",
        "openjdk", "graphviz", "ffmpeg", "pandoc", "conda", "mamba", "nb-conda",
        "nb-conda-kernels", "python-abi", "ca-certificates", "openssl", "tk", "zlib", "xz",
        "bzip2", "ncurses", "readline", "sqlite", "libffi", "ld-impl-linux-64",
    }
)  # fmt: skip
# ... and whole families: R packages, conda's own (_libgcc_mutex), CUDA, the
# compiler runtimes.
CONDA_ONLY_PREFIXES = ("r-", "-", "cuda-", "libgcc", "libstdcxx", "libgfortran", "libblas")

_CONDA = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]*)(.*)")
_CLAUSE = re.compile(r"(==|!=|>=|<=|~=|>|<|=)?([0-9A-Za-z.*+!_-]+)")


def environment_requirements(
    data: bytes, where: str, python: str | None
) -> tuple[list[str], list[str]]:
    """The pip requirement lines for an environment file, and the renames made
    ("pytorch as torch"). Refused at the first dependency pip cannot install."""
    import yaml  # only a course with an environment file pays for it

    try:
        document = yaml.safe_load(data.decode("utf-8", "replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise Refused(f"{where} is not valid YAML{at}", "fix it") from None
    if document is None:
        return [], []
    if not isinstance(document, dict):
        raise Refused(f"{where} is not a conda environment", "write dependencies: [...]")
    if document.get("variables"):
        raise Refused(f"{where} sets variables", "set them in .s2i/environment instead")
    dependencies = document.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise Refused(f"{where}: dependencies is not a list", "make it a list")
    lines: list[str] = []
    pip_lines: list[str] = []
    renamed: list[str] = []
    for item in dependencies:
        if isinstance(item, dict) and set(item) == {"pip"}:
            if not isinstance(item["pip"], list | None):
                raise Refused(f"{where}: pip is not a list", "list one requirement a line")
            pip_lines += [_pip_line(entry, where) for entry in item["pip"] or ()]
        elif isinstance(item, str):
            line = _conda_line(item, where, python, renamed)
            if line:
                lines.append(line)
        else:
            raise Refused(f"{where}: a dependency is neither a name nor a pip: list", "list names")
    return lines + pip_lines, renamed


def _pip_line(entry: object, where: str) -> str:
    text = entry if isinstance(entry, str) else ""
    if not text.strip() or any(ord(c) < 32 for c in text):
        raise Refused(f"{where}: a pip entry is not one requirement line", "write one a line")
    return text.strip()


def _conda_line(spec: str, where: str, python: str | None, renamed: list[str]) -> str:
    """The pip line for one conda dependency ("" for python and pip themselves)."""
    name, version = pip_requirement(spec, where)
    key = name.lower().replace("_", "-")
    if key == "pip":
        return ""
    if key == "python":
        if python is not None and not python_satisfies(version, python):
            raise Refused(
                f"{where} asks for {shown(spec.strip())}, and the builder runs Python {python}",
                f"ask for python={python} or leave the version out",
            )
        return ""
    if key in CONDA_ONLY or key.startswith(CONDA_ONLY_PREFIXES):
        fix = (
            "R comes from an R builder (--variant r) with install.R"
            if key == "r" or key.startswith("r-")
            else "list the Debian package in apt.txt if it is a program or library, or remove it"
        )
        raise Refused(f"{where} asks for {shown(name)}, a conda package pip cannot install", fix)
    if key in PIP_NAMES:
        renamed.append(f"{name} as {PIP_NAMES[key]}")
        name = PIP_NAMES[key]
    return name + version


def pip_requirement(spec: str, where: str = "environment.yml") -> tuple[str, str]:
    """(name, pip version specifier) of a conda match spec: `numpy=1.26` is
    `==1.26.*`, `numpy 1.26` `==1.26`, `numpy 1.26.*` and `numpy==1.26.*` stay
    prefix matches, `>=1.2,<2` stays a range. A channel (`conda-forge::numpy`),
    a build string (`numpy=1.26=py311h...`) or an "or" (`|`) are refused: pip has
    no way to say them."""
    text = re.sub(r"\s*([,|])\s*", r"\1", spec.strip())
    text = re.sub(r"(==|!=|>=|<=|~=|[<>=])\s+", r"\1", text)
    named = shown(spec.strip())
    if "::" in text:
        raise Refused(f"{where} asks for {named} from a channel", "name the package alone")
    match = _CONDA.fullmatch(text)
    if match is None or "[" in text:
        raise Refused(f"{where}: {named!r} is not a package pip can read", "write NAME or NAME=VER")
    name, version = match.group(1), match.group(2).strip()
    if "|" in version:
        raise Refused(f"{where} asks for {named}, an 'or' pip cannot express", "keep one range")
    fuzzy = version.startswith("=") and not version.startswith("==")
    if fuzzy:
        version = version[1:]
    if len(version.split()) > 1 or (fuzzy and "=" in version):
        raise Refused(f"{where} asks for {named}, a conda build", "leave out the build string")
    clauses = [_clause(part, fuzzy, named, where) for part in version.split(",") if part]
    return name, ",".join(c for c in clauses if c)


def _clause(part: str, fuzzy: bool, named: str, where: str) -> str:
    match = _CLAUSE.fullmatch(part)
    if match is None:
        raise Refused(f"{where} asks for {named}, a version pip cannot read", "use X.Y or >=X.Y")
    op, version = match.group(1) or "", match.group(2)
    bare = version.rstrip("*").rstrip(".")
    wildcard = version.endswith("*")
    if not bare:
        return ""  # "*": any version
    if op == "=" or (fuzzy and not op):
        return f"=={bare}.*"
    if op in ("", "=="):
        return f"=={bare}.*" if wildcard else f"=={bare}"
    return op + bare


def python_satisfies(spec: str, have: str) -> bool:
    """Whether a pip specifier (as `pip_requirement` writes them) admits the
    builder's Python `have` ("3.11"). Compared on major.minor: the builder's
    patch release is not known, so a patch in `spec` is taken as met."""
    mine = release(have)
    for clause in filter(None, spec.split(",")):
        match = re.fullmatch(r"(==|!=|>=|<=|~=|>|<)(\d+(?:\.\d+)*)(\.\*)?", clause)
        if match is None:
            return False
        op, want = match.group(1), release(match.group(2))
        if len(want) > len(mine) and mine == want[: len(mine)]:
            continue  # the same major.minor, a patch we cannot check
        if not _compare(op, mine, want):
            return False
    return True


def _compare(op: str, mine: tuple[int, ...], want: tuple[int, ...]) -> bool:
    size = min(len(want), len(mine))
    diff = (mine[:size] > want[:size]) - (mine[:size] < want[:size])
    if op == "~=":
        return diff >= 0 and mine[: len(want) - 1] == want[:-1]
    results = {"==": diff == 0, "!=": diff != 0, ">=": diff >= 0, "<=": diff <= 0}
    results.update({">": diff > 0, "<": diff < 0})
    return results[op]


def release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())
