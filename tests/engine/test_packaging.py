"""The built wheel is a complete nbs2i: every package, and the builder's sources.

An installed nbs2i must be able to build its builder image with no source tree
around, so these tests build the real wheel from the tree as git would check it
out (the repository's .gitignore holds Python's usual template, whose `build/`
line once made hatchling leave a package out), check what is in it, install it
into a fresh venv, import every module and build a directory with it from
outside the repository. pip's build isolation fetches hatchling, and the fresh
venv gets the wheel's declared dependencies, from the package index: nothing
else leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i.cli import cli
from tests.support.session import label_args, tag
from tests.support.tracker import Tracker

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "nbs2i"
S2I = REPO / "s2i"
# Where s2i/ lands inside the wheel (pyproject's force-include).
PACKAGED = "nbs2i/s2i/"
# Files the builder cannot do without, and which of them must be executable.
REQUIRED = {"Dockerfile": False, "bin/assemble": True, "bin/run": True}
# pip may have to fetch hatchling and the dependencies; bound every step.
PIP_SECONDS = 300
RUN_SECONDS = 60

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    venv: Path
    python: Path
    nbs2i: Path
    outside: Path  # a working directory that is not in the repository


def project_version() -> str:
    """The version pyproject takes from the package (one place for it)."""
    with (REPO / "pyproject.toml").open("rb") as f:
        path = tomllib.load(f)["tool"]["hatch"]["version"]["path"]
    text = (REPO / path).read_text()
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]


def clean_env() -> dict[str, str]:
    """The caller's environment minus anything that could reach the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    return env


def run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def must(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def source_files() -> dict[str, bool]:
    """Every file under s2i/ (relative path -> executable?)."""
    return {
        p.relative_to(S2I).as_posix(): bool(p.stat().st_mode & stat.S_IXUSR)
        for p in S2I.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    must(
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, REPO],
            cwd=out,
            timeout=PIP_SECONDS,
        )
    )
    (built,) = out.glob("nbs2i-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    outside = root / "elsewhere"
    outside.mkdir()
    # With its declared dependencies, so a dependency missing from the
    # metadata shows up as an import error below.
    must(run([python, "-m", "pip", "install", "-q", wheel], cwd=outside, timeout=PIP_SECONDS))
    yield Installed(env_dir, python, env_dir / "bin" / "nbs2i", outside)
    # A venv is tens of MB: do not leave it for pytest's keep-three-runs policy.
    shutil.rmtree(root)


def test_wheel_ships_every_builder_file_with_its_mode(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        packaged = {
            info.filename.removeprefix(PACKAGED): info
            for info in zf.infolist()
            if info.filename.startswith(PACKAGED) and not info.is_dir()
        }
        sources = source_files()
        for name, executable in REQUIRED.items():
            assert sources.get(name) == executable, f"s2i/{name} missing or wrong mode in the tree"
        assert set(packaged) == set(sources)
        for name, executable in sources.items():
            mode = packaged[name].external_attr >> 16
            assert bool(mode & stat.S_IXUSR) == executable, f"{PACKAGED}{name}: mode {mode:o}"
            assert zf.read(packaged[name]) == (S2I / name).read_bytes(), name


def test_installed_nbs2i_reports_its_version_outside_the_source_tree(
    installed: Installed,
) -> None:
    out = must(run([installed.nbs2i, "--version"], cwd=installed.outside, timeout=RUN_SECONDS))
    assert out.strip() == f"nbs2i, version {project_version()}"


def test_installed_nbs2i_help_lists_every_command(installed: Installed) -> None:
    out = must(run([installed.nbs2i, "--help"], cwd=installed.outside, timeout=RUN_SECONDS))
    assert out.startswith("Usage: nbs2i")
    listed = {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == set(cli.commands)


def test_installed_package_is_not_the_source_tree(installed: Installed) -> None:
    out = must(
        run(
            [installed.python, "-c", "import nbs2i; print(nbs2i.__file__)"],
            cwd=installed.outside,
            timeout=RUN_SECONDS,
        )
    )
    where = Path(out.strip()).resolve()
    assert where.is_relative_to(installed.venv.resolve())
    assert not where.is_relative_to(REPO)


def installed_s2i_dir(installed: Installed) -> Path:
    """Where the installed nbs2i's own locator finds the builder sources."""
    out = must(
        run(
            [installed.python, "-c", "from nbs2i.builder import s2i_dir; print(s2i_dir())"],
            cwd=installed.outside,
            timeout=RUN_SECONDS,
        )
    )
    return Path(out.strip())


def test_installed_locator_finds_the_packaged_builder(installed: Installed) -> None:
    found = installed_s2i_dir(installed).resolve()
    package = must(
        run(
            [installed.python, "-c", "import nbs2i, os; print(os.path.dirname(nbs2i.__file__))"],
            cwd=installed.outside,
            timeout=RUN_SECONDS,
        )
    )
    assert found == Path(package.strip()).resolve() / "s2i"
    assert found.is_relative_to(installed.venv.resolve())
    assert not found.is_relative_to(REPO)


def test_installed_scripts_keep_their_exec_bits(installed: Installed) -> None:
    s2i = installed_s2i_dir(installed)
    for name, executable in REQUIRED.items():
        assert (s2i / name).is_file(), name
        assert os.access(s2i / name, os.X_OK) == executable, name


def test_installed_nbs2i_makes_a_builder_context_without_the_tree(installed: Installed) -> None:
    # The same context the builder build sends to the engine, made by the
    # installed package from its packaged copy, listed as "name mode" lines.
    script = (
        "import io, tarfile\n"
        "from nbs2i.builder import build_context, s2i_dir\n"
        "with tarfile.open(fileobj=io.BytesIO(build_context(s2i_dir()))) as tar:\n"
        "    for m in tar.getmembers():\n"
        "        print(m.name, oct(m.mode))\n"
    )
    out = must(run([installed.python, "-c", script], cwd=installed.outside, timeout=RUN_SECONDS))
    modes = dict(line.split() for line in out.splitlines())
    for name, executable in REQUIRED.items():
        assert modes.get(name) == ("0o755" if executable else "0o644"), name


def source_modules() -> list[str]:
    """Every module of the package in the source tree, as an import name."""
    return sorted(
        ".".join(("nbs2i", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
        if p.name != "__main__.py"
    )


def test_the_wheel_holds_every_module_of_the_tree(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for module in source_modules():
        as_path = module.replace(".", "/")
        assert f"{as_path}.py" in names or f"{as_path}/__init__.py" in names, module


def test_installed_nbs2i_imports_every_module(installed: Installed) -> None:
    script = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    modules = source_modules()
    assert "nbs2i.building" in modules
    must(
        run([installed.python, "-c", script, *modules], cwd=installed.outside, timeout=RUN_SECONDS)
    )


def test_installed_nbs2i_builds_a_directory(
    installed: Installed, tiny_builder: str, track: Tracker
) -> None:
    course = installed.outside / "course"
    course.mkdir()
    (course / "lecture.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4}\n')
    ref = track.image(tag("installed-wheel"))
    out = must(
        run(
            [
                installed.nbs2i,
                "build",
                course,
                ref,
                "--builder",
                tiny_builder,
                *label_args("--container-label"),
            ],
            cwd=installed.outside,
            timeout=PIP_SECONDS,
        )
    )
    assert ref in out
    assert track.engine.image_exists(ref)
