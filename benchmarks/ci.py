"""CI on runners that start empty: four jobs side by side in one run, timed as
a pipeline waits (whole processes), against a registry on loopback (Debian's
docker-registry, started here).

1. cold: a new runner, a course whose dependency layer is in no cache
   (sample-notebooks' requirements, made new each run by a comment line): the
   builder pulled from the registry, pip, the notebook layer, the push, the
   layer pushed to the cache.
2. cache (engine): a new runner (the builder tag, the local dependency layer
   and the image removed first), one notebook edited: the dependency layer
   pulled from --cache-from instead of pip; target <= 10 % of cold.
3. no engine: DOCKER_HOST at a socket nobody listens on, one notebook edited:
   the notebook layer written and pushed straight into the registry; targets
   < 1 s and <= 0.5x docker build + docker push.
4. docker build + docker push of the same notebook change on a warm engine
   (`FROM` the dependency layer, `COPY --chown=1001:0` the notebooks), the
   anchor.

Jobs 2-4 alternate, once per round. The builder's layers are in the engine
throughout (a real new runner also downloads them: that cost is the
registry's and the network's, the same for every job that pulls them).

    .venv/bin/python benchmarks/ci.py [--builder IMAGE] [--runs 5] [--cold-runs 2] [--json]

Everything it makes is tagged in the benchmark's registry or labelled
nbs2i.benchmark=ci, and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.support import ci, registry  # noqa: E402
from tests.support.gitrepo import git  # noqa: E402

from build import present_builder  # noqa: E402
from nbs2i.engine import Engine  # noqa: E402

SAMPLES = ROOT / "sample-notebooks"
NBS2I = str(Path(sys.executable).parent / "nbs2i")
RUN_ID = uuid.uuid4().hex[:8]
LABEL = "nbs2i.benchmark=ci"


def timed(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Seconds a whole process took, and its stdout; SystemExit when it fails."""
    start = time.perf_counter()
    done = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=1800)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return took, done.stdout


def edit(course: Path, i: int) -> str:
    """A notebook edited and committed; the commit."""
    notebook = course / "01-python-basics.ipynb"
    data = json.loads(notebook.read_text())
    data.setdefault("metadata", {})["benchmark_edit"] = f"{RUN_ID}-{i}"
    notebook.write_text(json.dumps(data, indent=1))
    git(course, "commit", "-q", "-am", f"edit {i}")
    return git(course, "rev-parse", "HEAD")


def new_requirements(course: Path, i: int) -> None:
    text = (SAMPLES / "requirements.txt").read_text()
    (course / "requirements.txt").write_text(f"# benchmark {RUN_ID}-{i}\n{text}")
    git(course, "commit", "-q", "-am", f"requirements {i}")


def done_event(stdout: str) -> dict[str, str]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return next(e for e in events if e["event"] == "done")


class Bench:
    def __init__(self, engine: Engine, setting: ci.Setting, course: Path, work: Path) -> None:
        self.engine, self.setting, self.course, self.work = engine, setting, course, work
        self.made: set[str] = set()
        self.deps = ""  # the dependency layer the last cached job pulled

    def nbs2i(self, tag: str, env: dict[str, str]) -> dict[str, str]:
        # As the recipes do: the checkout as it is, its commit's time as the epoch.
        epoch = git(self.course, "log", "-1", "--format=%ct")
        args = self.setting.args(str(self.course), tag, "--container-label", LABEL)
        _, stdout = timed([NBS2I, *args], env={**_environ(), **env, "SOURCE_DATE_EPOCH": epoch})
        found = done_event(stdout)
        self.made.update({self.setting.image(tag), found.get("deps_image", "")})
        return found

    def fresh_runner(self) -> None:
        """Nothing of earlier jobs in the engine: images, dependency layers, builder tag."""
        for ref in sorted(self.made - {""}, key=lambda r: r.startswith("nbs2i-cache/")):
            self.engine.remove_image(ref, force=True)
        self.engine.remove_image(self.setting.builder, force=True)

    def cold(self, i: int) -> float:
        new_requirements(self.course, i)
        self.fresh_runner()
        start = time.perf_counter()
        self.nbs2i(f"cold-{i}", self.setting.env)
        return time.perf_counter() - start

    def cached(self, i: int) -> float:
        self.fresh_runner()
        edit(self.course, i)
        start = time.perf_counter()
        found = self.nbs2i(f"cached-{i}", self.setting.env)
        took = time.perf_counter() - start
        assert found["deps_reused"], found
        self.deps = found["deps_image"]
        return took

    def no_engine(self, i: int) -> float:
        edit(self.course, 100 + i)
        start = time.perf_counter()
        self.nbs2i(f"direct-{i}", self.setting.no_engine)
        return time.perf_counter() - start

    def docker(self, i: int, base: str) -> float:
        edit(self.course, 200 + i)
        context = self.work / f"docker-{i}"
        shutil.copytree(self.course, context, ignore=shutil.ignore_patterns(".git"))
        (context / "Dockerfile").write_text(
            f"FROM {base}\nCOPY --chown=1001:0 . /opt/app-root/src/\n"
        )
        ref = self.setting.image(f"docker-{i}")
        self.made.add(ref)
        # A warm engine: the dependency layer there before the clock starts (a
        # push job built it in the registry, and a fresh runner dropped it).
        if not self.engine.image_exists(base):
            timed(["docker", "pull", "-q", base], env={**_environ(), **self.setting.env})
        start = time.perf_counter()
        timed(["docker", "build", "-q", "--label", LABEL, "-t", ref, str(context)])
        timed(["docker", "push", "-q", ref], env={**_environ(), **self.setting.env})
        return time.perf_counter() - start


def _environ() -> dict[str, str]:
    return dict(os.environ)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builder", default="")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    options.builder = present_builder(options.builder)
    work = Path(tempfile.mkdtemp(prefix="nbs2i-bench-ci-"))
    course = work / "course"
    shutil.copytree(SAMPLES, course)
    git(course, "init", "-q")
    git(course, "add", "-A")
    git(course, "commit", "-q", "-m", "lectures")
    with (
        Engine.connect() as engine,
        registry.running() as reg,
        ci.setting(engine, options.builder, reg, work) as setting,
    ):
        bench = Bench(engine, setting, course, work)
        try:
            figures = measure(bench, options)
        finally:
            bench.fresh_runner()
    shutil.rmtree(work, ignore_errors=True)
    report(figures, options.json)


def measure(bench: Bench, options: argparse.Namespace) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold": [], "cache": [], "no engine": [], "docker": []}
    times["cold"] = [bench.cold(i) for i in range(options.cold_runs)]
    for i in range(options.runs):
        times["cache"].append(bench.cached(i))
        times["no engine"].append(bench.no_engine(i))
        # on the dependency layer the cached job used, in the engine: a warm engine
        times["docker"].append(bench.docker(i, bench.deps))
    return times


def report(times: dict[str, list[float]], as_json: bool) -> None:
    medians = {name: median(values) for name, values in times.items()}
    ratios = {
        "cache / cold": round(medians["cache"] / medians["cold"], 3),
        "no engine / docker build + push": round(medians["no engine"] / medians["docker"], 3),
    }
    if as_json:
        print(json.dumps({"seconds": times, "medians": medians, "ratios": ratios}))
        return
    print(f"{'job':<36}{'median s':>10}   runs")
    labels = {
        "cold": "cold CI job (pip, push, cache-to)",
        "cache": "CI job, registry cache (engine)",
        "no engine": "CI job, no engine (notebook change)",
        "docker": "docker build + docker push (warm)",
    }
    for name, values in times.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{labels[name]:<36}{medians[name]:>10.2f}   {runs}")
    print(f"cache / cold: {ratios['cache / cold']:.3f} (target <= 0.10)")
    no_engine = medians["no engine"]
    print(
        f"no engine: {no_engine:.2f} s (target < 1 s); / docker build + push: "
        f"{ratios['no engine / docker build + push']:.3f} (target <= 0.5)"
    )


if __name__ == "__main__":
    main()
