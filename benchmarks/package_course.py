"""A course that is a Python package (setup.py): is a change to its code or
notebooks still a notebook-only rebuild? Whole `nbs2i build` processes, timed
as a user waits.

1. Cold: the dependency layer made anew (a comment in setup.py changes each
   run): the package's dependencies and the package itself, editable from the
   notebook directory.
2. Then, on that layer, the package's code and a notebook edited before every
   build: the layer must be reused and the edited code must be what imports.
   The anchor, alternating: the same notebook edit in a course whose
   dependencies are a requirements.txt (the notebook-only rebuild of
   benchmarks/build.py). Targets: <= 1.1x the anchor, <= 3 % of cold.

    .venv/bin/python benchmarks/package_course.py --builder IMAGE [--runs 7] [--cold-runs 3]

Everything it creates is tagged nbs2i-bench/* (its dependency layers found by
their key label) and removed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import LABEL, NBS2I, RUN_ID, median, run

SETUP = (
    "from setuptools import setup\n"
    "setup(name='benchpkg', version='0.1', packages=['benchpkg'], install_requires=['six'])\n"
)


def deps_layer(image: str) -> str:
    key = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "nbs2i.deps-key"}}', image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"nbs2i-cache/deps:{key}"


def imported(image: str) -> str:
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", image, "-c",
         "import benchpkg; print(benchpkg.VALUE)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def course(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {**files, "lecture.ipynb": json.dumps({"cells": []})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def edit(src: Path, i: int, code: bool) -> None:
    (src / "lecture.ipynb").write_text(json.dumps({"cells": [], "metadata": {"edit": i}}))
    if code:
        (src / "benchpkg/__init__.py").write_text(f"VALUE = 'edit {i}'\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builder", required=True)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=3)
    opts = parser.parse_args()
    tag, anchor = f"nbs2i-bench/package:{RUN_ID}", f"nbs2i-bench/package-anchor:{RUN_ID}"
    made: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="nbs2i-bench-package-") as tmp:
        src = course(Path(tmp) / "package", {"benchpkg/__init__.py": "VALUE = 'cold'\n"})
        plain = course(Path(tmp) / "plain", {"requirements.txt": f"six\n# {RUN_ID}\n"})
        build = [NBS2I, "build", str(src), tag, "--builder", opts.builder, "-q", *LABEL]
        build_plain = [NBS2I, "build", str(plain), anchor, "--builder", opts.builder, "-q", *LABEL]
        try:
            cold = []
            for i in range(opts.cold_runs):
                (src / "setup.py").write_text(f"{SETUP}# cold {RUN_ID} {i}\n")
                cold.append(run(build))
                made.add(deps_layer(tag))
            run(build_plain)
            made.add(deps_layer(anchor))
            rebuilds, anchors = [], []
            for i in range(opts.runs):
                edit(src, i, code=True)
                rebuilds.append(run(build))
                edit(plain, i, code=False)
                anchors.append(run(build_plain))
                assert deps_layer(tag) in made, "the dependency layer was made again"
                assert imported(tag) == f"edit {i}", "the edited code is not what imports"
        finally:
            for image in (tag, anchor, *made):
                subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    report = {
        "cold": median(cold),
        "code_and_notebook_rebuild": median(rebuilds),
        "anchor_notebook_rebuild": median(anchors),
        "ratio": round(median(rebuilds) / median(anchors), 2),
        "rebuild_fraction": round(median(rebuilds) / median(cold), 4),
        "runs": {"cold": cold, "rebuild": rebuilds, "anchor": anchors},
    }
    print(json.dumps(report, indent=1))
    print(
        f"package course: cold {report['cold']:.1f} s; code + notebook edited "
        f"{report['code_and_notebook_rebuild']:.2f} s, a requirements.txt course's notebook "
        f"edit {report['anchor_notebook_rebuild']:.2f} s: {report['ratio']:.2f}x "
        f"(target <= 1.1x), {report['rebuild_fraction'] * 100:.1f} % of cold (target <= 3 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
