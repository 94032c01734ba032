"""Both build paths install the same things from the files a course carries.

Each course is built twice with the builder under test: by `nbs2i build` as a
user runs it (the dependency layer, then the notebook layer nbs2i writes), and
by the builder's assemble in one step on the builder, as upstream `s2i` and
OpenShift run it (`--no-dependency-layer --always-assemble`); with an `s2i`
binary on PATH, by the real upstream `s2i build` too. The kernel
environment's `pip list` must be the same in every image, the course's
imports must work as a random UID on a read-only root, and the line saying
what happened to a file must be the same on both paths. What cannot be built
is refused in one line before anything is made, with the same line from
`nbs2i build` and from the builder's own assemble, and leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i import restricted
from nbs2i.archive import tar_stream
from nbs2i.building import BuildResult, build
from nbs2i.ca import CA_DIR, CA_FILE, default_ca_bundle
from nbs2i.cleanup import Leftovers
from nbs2i.engine import ContainerSpec, Engine
from tests.support import s2i as upstream
from tests.support.builds import Events
from tests.support.builds import request as build_request
from tests.support.cli import ERROR_PREFIX, fails
from tests.support.inside import run_restricted
from tests.support.leftovers import assert_nothing_left
from tests.support.session import LABELS, SESSION_ID, label_args, tag
from tests.support.tracker import Tracker

pytestmark = pytest.mark.slow

SETUP_PY = """from setuptools import setup

setup(name="coursepkg", version="0.1", packages=["coursepkg"], install_requires=["six==1.16.0"])
"""


@dataclass(frozen=True)
class Course:
    files: dict[str, str]
    imports: str  # printed by the kernel's python in every image
    printed: str
    said: str  # a line both paths print about the course's files


# Small pure-Python packages (and one rename) from PyPI; the session id keeps
# each dependency layer this run's own.
COURSES = {
    "runtime-and-requirements": Course(
        {"runtime.txt": "python-3.11\n", "requirements.txt": f"# {SESSION_ID}\nsix==1.16.0\n"},
        "import six; print(six.__version__)",
        "1.16.0",
        "runtime.txt asks for python-3.11: Python 3.11 runs, the builder's",
    ),
    "environment-yml": Course(
        {
            "environment.yml": f"# {SESSION_ID}\nname: course\nchannels: [conda-forge]\n"
            "dependencies:\n  - python=3.11\n  - pip\n  - six=1.16\n  - msgpack-python=1.0\n"
            "  - pip:\n    - iniconfig==2.0.0\n",
        },
        "import six, msgpack, iniconfig; print(six.__version__, msgpack.version[:2])",
        "1.16.0 (1, 0)",
        "environment.yml installed with pip (msgpack-python as msgpack); conda is not used",
    ),
    "environment-yaml-in-binder": Course(
        {
            "binder/environment.yaml": f"# {SESSION_ID}\ndependencies: [tomli 2.0.*]\n",
            "requirements.txt": "no-such-package-nbs2i==1\n",
            "Dockerfile": "FROM scratch\n",
        },
        "import tomli; print(tomli.__name__)",
        "tomli",
        "requirements.txt at the top is not used: binder/ holds the configuration",
    ),
    "setup-py": Course(
        {
            "setup.py": f"# {SESSION_ID}\n{SETUP_PY}",
            "coursepkg/__init__.py": "VALUE = 'first'\n",
            "requirements.txt": "iniconfig==2.0.0\n",
        },
        "import coursepkg, six, iniconfig; print(coursepkg.VALUE, six.__version__)",
        "first 1.16.0",
        "setup.py: the repository is installed into the kernel environment "
        "(pip install -e . in the notebook directory, after the other dependencies)",
    ),
}


@dataclass(frozen=True)
class Built:
    source: Path
    layered: BuildResult
    one_step: BuildResult
    layered_events: Events
    one_step_events: Events


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {**files, "lecture.ipynb": "{}"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="module")
def made(engine: Engine) -> Iterator[Tracker]:
    tracker = Tracker(engine)
    try:
        yield tracker
    finally:
        tracker.cleanup()


@pytest.fixture(scope="module", params=sorted(COURSES))
def built(
    request: pytest.FixtureRequest,
    engine: Engine,
    made: Tracker,
    builder_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """The course built both ways (once per module)."""
    name = request.param
    source = write(tmp_path_factory.mktemp(name), COURSES[name].files)
    results, events = [], []
    for path, options in (("layered", {}), ("one-step", {"dependency_layer": False})):
        said = Events()
        ref = made.image(tag(f"{name}-{path}"))
        req = build_request(
            source,
            ref,
            builder_image,
            ca_bundle=default_ca_bundle(),
            always_assemble=path == "one-step",
            **options,
        )
        result = build(engine, req, said)
        for cache in reversed(result.caches_made):
            made.image(cache)
        results.append(result)
        events.append(said)
    return Built(source, results[0], results[1], events[0], events[1])


def pip_list(engine: Engine, image: str) -> list[dict[str, str]]:
    cmd = ["python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]
    code, out = run_restricted(engine, image, cmd, restricted.random_uid())
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.startswith("["))
    return sorted(json.loads(line), key=lambda p: p["name"].lower())


def kernel_prints(engine: Engine, image: str, code: str) -> str:
    status, out = run_restricted(engine, image, ["python", "-c", code], restricted.random_uid())
    assert status == 0, out
    return out.strip().splitlines()[-1]


def course_of(built: Built) -> Course:
    return next(c for name, c in COURSES.items() if built.source.name.startswith(name))


def test_both_paths_install_the_same_packages(engine: Engine, built: Built) -> None:
    course = course_of(built)
    assert built.layered.deps_image and built.layered.method == "layer"
    assert not built.one_step.deps_image and built.one_step.method == "assemble"
    layered = pip_list(engine, built.layered.tag)
    assert layered == pip_list(engine, built.one_step.tag)
    assert {"six", "tomli", "coursepkg"} & {p["name"] for p in layered}
    for result in (built.layered, built.one_step):
        assert kernel_prints(engine, result.tag, course.imports) == course.printed


def test_both_paths_say_the_same_line(built: Built) -> None:
    course = course_of(built)
    said_by_nbs2i = built.layered_events.steps + built.layered_events.warnings
    assert course.said in said_by_nbs2i
    assert f"---> {course.said}" in built.one_step_events.outputs or (
        f"---> warning: {course.said}" in built.one_step_events.outputs
    )


@pytest.mark.parametrize("built", ["setup-py"], indirect=True)
def test_a_package_course_code_change_is_a_notebook_only_rebuild(
    engine: Engine, made: Tracker, built: Built, builder_image: str, tmp_path: Path
) -> None:
    """The package is installed editable from where its code lives: new code
    and notebooks reuse the dependency layer, and the new code is what imports."""
    source = Path(shutil.copytree(built.source, tmp_path / "changed"))
    (source / "coursepkg/__init__.py").write_text("VALUE = 'second'\n")
    (source / "lecture.ipynb").write_text('{"cells": []}')
    ref = made.image(tag("setup-py-changed"))
    started = time.monotonic()
    again = build(engine, build_request(source, ref, builder_image, ca_bundle=default_ca_bundle()))
    seconds = time.monotonic() - started
    print(f"package course, code and notebook changed: {seconds:.2f} s (layer reused)")
    assert again.deps_reused and again.deps_image == built.layered.deps_image
    assert again.method == "layer"
    assert kernel_prints(engine, ref, "import coursepkg; print(coursepkg.VALUE)") == "second"


@pytest.mark.skipif(upstream.binary() is None, reason="no upstream s2i CLI on PATH")
def test_upstream_s2i_installs_the_same_packages(
    engine: Engine, made: Tracker, built: Built, builder_image: str, tmp_path: Path
) -> None:
    path = upstream.binary()
    assert path is not None
    alias = made.image(upstream.local_tag("depfiles-builder"))
    engine.tag(builder_image, alias)
    ca = tmp_path / "ca"
    ca.mkdir()
    bundle = default_ca_bundle()
    mount = []
    if bundle is not None:
        shutil.copy(bundle, ca / CA_FILE)
        mount = ["-v", f"{ca}:{CA_DIR}:ro"]
    ref = made.image(upstream.local_tag(f"s2i-{built.source.name}"))
    s2i = upstream.S2i(engine, path, [alias])
    try:
        s2i("build", *mount, str(built.source), alias, ref).expect_ok()
        assert pip_list(engine, ref) == pip_list(engine, built.one_step.tag)
    finally:
        upstream.remove_images_built_from(engine, alias)


# -- refused in one line, the same from nbs2i and from the builder's assemble ----------


REFUSED = [
    (
        {"binder/requirements.txt": "six\n", ".binder/requirements.txt": "six\n"},
        "the repository has both binder/ and .binder/: keep one (repo2docker refuses both)",
    ),
    (
        {"environment.yml": "dependencies:\n  - numpy\n  - r-base=4.3\n"},
        "environment.yml asks for r-base, a conda package pip cannot install: "
        "R comes from an R builder (--variant r) with install.R",
    ),
    (
        {"environment.yml": "dependencies: [numpy=1.26=py311h64a7726_0]\n"},
        "environment.yml asks for numpy=1.26=py311h64a7726_0, a conda build: "
        "leave out the build string",
    ),
    (
        {"runtime.txt": "python-3.10\n", "requirements.txt": "six\n"},
        "runtime.txt asks for python-3.10, and the builder runs Python 3.11: "
        "write python-3.11 in it or remove it",
    ),
    (
        {"install.R": "1\n"},
        "install.R needs R, which this builder does not have: "
        "build with an R builder (nbs2i/builder-r or nbs2i/builder-datascience)",
    ),
    (
        {"Project.toml": "[deps]\n"},
        "Project.toml is not supported (nbs2i's builders have no Julia): "
        "remove it, or build with repo2docker",
    ),
]


def assemble_by_hand(engine: Engine, builder: str, source: Path) -> tuple[int, str]:
    """The builder's assemble on the source, as upstream s2i runs it (sources
    in the destination, the image's user, no network); (exit code, output)."""
    spec = ContainerSpec(
        builder,
        command=("/usr/libexec/s2i/assemble",),
        entrypoint=(),
        labels=LABELS,
        network="none",
    )
    leftovers = Leftovers(engine)
    try:
        cid = leftovers.container(engine.create_container(spec))
        stream = tar_stream(source, uid=1001, epoch=None, prefix="src")
        engine.put_archive(cid, "/opt/app-root/s2i", stream)
        out = engine.attach(cid)
        engine.start(cid)
        text = b"".join(out).decode("utf-8", "replace")
        return engine.wait(cid, timeout=120), text
    finally:
        leftovers.remove_all()


@pytest.mark.parametrize(("files", "line"), REFUSED, ids=[r[1].split(" ")[0] for r in REFUSED])
def test_what_cannot_be_built_is_one_line_from_both_paths(
    engine: Engine, builder_image: str, tmp_path: Path, files: dict[str, str], line: str
) -> None:
    source = write(tmp_path / "course", files)
    out = tag("refused")
    err = fails(
        "build", str(source), out, "--builder", builder_image, *label_args("--container-label")
    )
    assert err.error_line == ERROR_PREFIX + line
    assert not engine.image_exists(out)
    assert_nothing_left(engine)  # a directory source makes no clone to leave behind
    code, log = assemble_by_hand(engine, builder_image, source)
    assert code == 1, log
    assert log.strip().splitlines()[-1] == f"assemble: error: {line}", log
    assert "Installing" not in log
