"""Figures of `nbs2i build`, timed as a user waits: whole processes, start-up
included, side by side with the anchors in one run, alternating.

1. Notebooks without dependencies (a copy of sample-notebooks/ without
   requirements.txt), one notebook edited before every build, onto a present
   builder: `nbs2i build` vs `docker build` of `FROM builder` +
   `COPY --chown=1001:0` vs upstream `s2i build` (when `s2i` is on PATH).
   Targets: <= 1.0x docker build, <= 0.5x s2i.
2. `nbs2i --help`: target < 0.1 s.
3. With dependencies: the cold dependency layer (sample-notebooks' requirements,
   made new each run by a comment line) vs `docker build --no-cache` of
   `FROM builder` + `COPY requirements.txt` + `RUN pip install -r`; target: no
   slower. Then notebook-only rebuilds on that layer; target <= 3 % of cold.
4. The same commit built twice (the image removed in between): the same id.
5. Peak memory (ru_maxrss of the whole `nbs2i build` process, through
   /usr/bin/time) for generated repositories of 20 MB and 200 MB; target flat.

    .venv/bin/python benchmarks/build.py [--builder IMAGE] [--runs 7] [--json]

The builder defaults to nbs2i/builder:<version> (built first when absent).
Everything it creates is tagged nbs2i-bench/* or labelled nbs2i.benchmark=build
and removed.
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
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive_memory import MB, generate_repo

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample-notebooks"
NBS2I = str(Path(sys.executable).parent / "nbs2i")
RUN_ID = uuid.uuid4().hex[:8]
LABEL = ["--container-label", "nbs2i.benchmark=build"]
# upstream s2i speaks API 1.43 unless told; Debian's engine speaks 1.41
S2I_ENV = {**os.environ, "DOCKER_API_VERSION": os.environ.get("DOCKER_API_VERSION", "1.41")}


def run(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 1800) -> float:
    """Seconds a whole process took; SystemExit with its output when it fails."""
    start = time.perf_counter()
    done = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=timeout)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return took


def edit(notebook: Path, i: int) -> None:
    """A teacher's typo fix: the notebook changes, the rest does not."""
    data = json.loads(notebook.read_text())
    data.setdefault("metadata", {})["benchmark_edit"] = f"{RUN_ID}-{i}"
    notebook.write_text(json.dumps(data, indent=1))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def alternate(runs: int, contenders: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Each contender once per round, in turn, for `runs` rounds."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(runs):
        for name, fn in contenders.items():
            times[name].append(fn(i))
    return times


def dockerfile_context(work: Path, src: Path, lines: str, name: str) -> Path:
    ctx = work / name
    ctx.mkdir()
    shutil.copytree(src, ctx / "src", dirs_exist_ok=True)
    (ctx / "Dockerfile").write_text(lines)
    return ctx


def kept(took: float, tag: str, made: list[str]) -> float:
    """`took`, after noting the image `tag` names now: the anchors leave the image
    the tag moved from untagged, and the clean-up removes them all by id."""
    made.append(image_id(tag))
    return took


def notebooks_only(work: Path, builder: str, runs: int, tags: list[str]) -> dict[str, object]:
    src = work / "nodeps"
    shutil.copytree(SAMPLES, src)
    (src / "requirements.txt").unlink()
    nb = src / "02-reading-a-csv.ipynb"
    ctx = dockerfile_context(
        work, src, f"FROM {builder}\nCOPY --chown=1001:0 src/ /opt/app-root/src/\n", "df"
    )
    ours, docker_tag, s2i_tag = (f"nbs2i-bench/{n}:{RUN_ID}" for n in ("nbs2i", "docker", "s2i"))
    tags += [ours, docker_tag, s2i_tag]

    def nbs2i(i: int) -> float:
        edit(nb, i)
        return run([NBS2I, "build", str(src), ours, "--builder", builder, "-q", *LABEL])

    def docker(i: int) -> float:
        edit(ctx / "src" / nb.name, i)
        return kept(run(["docker", "build", "-q", "-t", docker_tag, str(ctx)]), docker_tag, tags)

    def s2i(i: int) -> float:
        edit(nb, 1000 + i)
        return kept(run(["s2i", "build", str(src), builder, s2i_tag], env=S2I_ENV), s2i_tag, tags)

    contenders = {"nbs2i": nbs2i, "docker build": docker}
    if shutil.which("s2i"):
        contenders["s2i build"] = s2i
    nbs2i(-1)  # warm: the first build of a session pays for page cache, not nbs2i
    times = alternate(runs, contenders)
    result: dict[str, object] = {name: median(t) for name, t in times.items()}
    result["runs"] = {name: [round(t, 3) for t in ts] for name, ts in times.items()}
    result["ratio_docker"] = round(median(times["nbs2i"]) / median(times["docker build"]), 2)
    if "s2i build" in times:
        result["ratio_s2i"] = round(median(times["nbs2i"]) / median(times["s2i build"]), 2)
    return result


def help_time(runs: int) -> float:
    return median([run([NBS2I, "--help"]) for _ in range(runs)])


def dependencies(work: Path, builder: str, runs: int, tags: list[str]) -> dict[str, object]:
    src = work / "deps"
    shutil.copytree(SAMPLES, src)
    requirements = (src / "requirements.txt").read_text()
    ca = os.environ.get("PIP_CERT", "")
    ctx = work / "df-deps"
    ctx.mkdir()
    (ctx / "requirements.txt").write_text(requirements)
    pip_cert = ""
    if ca and Path(ca).is_file():
        shutil.copy(ca, ctx / "ca.pem")  # the benchmark image is removed: no CA leaves this run
        pip_cert = "PIP_CERT=/tmp/ca.pem "
    (ctx / "Dockerfile").write_text(
        f"FROM {builder}\n"
        + ("COPY ca.pem /tmp/ca.pem\n" if pip_cert else "")
        + "COPY requirements.txt /tmp/requirements.txt\n"
        + f"RUN {pip_cert}pip install --no-cache-dir -r /tmp/requirements.txt\n"
    )
    ours, docker_tag = f"nbs2i-bench/deps:{RUN_ID}", f"nbs2i-bench/deps-docker:{RUN_ID}"
    tags += [ours, docker_tag]

    def nbs2i(i: int) -> float:
        (src / "requirements.txt").write_text(f"{requirements}# cold {RUN_ID} {i}\n")
        took = run([NBS2I, "build", str(src), ours, "--builder", builder, "-q", *LABEL])
        tags.append(_deps_tag(ours))
        return took

    def docker(i: int) -> float:
        took = run(["docker", "build", "-q", "--no-cache", "-t", docker_tag, str(ctx)])
        return kept(took, docker_tag, tags)

    cold = alternate(runs, {"nbs2i": nbs2i, "docker build": docker})
    rebuilds = []
    for i in range(max(3, runs)):
        edit(src / "02-reading-a-csv.ipynb", i)
        rebuilds.append(run([NBS2I, "build", str(src), ours, "--builder", builder, "-q", *LABEL]))
    cold_m = median(cold["nbs2i"])
    return {
        "cold_nbs2i": cold_m,
        "cold_docker_build": median(cold["docker build"]),
        "cold_ratio": round(cold_m / median(cold["docker build"]), 2),
        "rebuild": median(rebuilds),
        "rebuild_fraction": round(median(rebuilds) / cold_m, 4),
        "runs": {"cold": cold, "rebuild": rebuilds},
    }


def _deps_tag(image: str) -> str:
    labels = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "nbs2i.deps-key"}}', image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"nbs2i-cache/deps:{labels}"


def image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True
    ).stdout.strip()


def reproducible(work: Path, builder: str, tags: list[str]) -> bool:
    repo = work / "repo"
    shutil.copytree(SAMPLES, repo)
    (repo / "requirements.txt").unlink()
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": "2024-03-01T10:00:00Z",
        "GIT_COMMITTER_DATE": "2024-03-01T10:00:00Z",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "lectures"]):
        subprocess.run(
            ["git", "-c", "user.name=T", "-c", "user.email=t@x", *args],
            cwd=repo,
            env=env,
            check=True,
        )
    tag = f"nbs2i-bench/same:{RUN_ID}"
    tags.append(tag)
    ids = []
    for _ in range(2):
        run([NBS2I, "build", f"file://{repo}", tag, "--builder", builder, "-q", *LABEL])
        ids.append(image_id(tag))
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    return ids[0] == ids[1] != ""


def peak_memory(work: Path, builder: str, tags: list[str]) -> dict[str, float]:
    """Peak RSS (MB) of the whole `nbs2i build` process, from /usr/bin/time."""
    peaks = {}
    for size in (20, 200):
        repo = generate_repo(work / f"gen{size}", size * MB)
        tag = f"nbs2i-bench/gen{size}:{RUN_ID}"
        tags.append(tag)
        args = ["/usr/bin/time", "-f", "%M", NBS2I, "build", str(repo), tag]
        done = subprocess.run(
            [*args, "--builder", builder, "-q", *LABEL], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"nbs2i build of {repo} failed:\n{done.stderr[-2000:]}")
        peaks[f"{size}MB"] = round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1)
        shutil.rmtree(repo)
    return peaks


def present_builder(given: str) -> str:
    """The builder to measure with (default: nbs2i's default builder), built
    first when the engine lacks it."""
    from nbs2i.building import default_builder

    builder = given or default_builder()
    if not image_id(builder):
        run([NBS2I, "builder", "build", "--tag", builder, "-q"])
    return builder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builder", default="")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    builder = present_builder(opts.builder)
    tags: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        report = {
            "builder": builder,
            "notebooks_only": notebooks_only(work, builder, opts.runs, tags),
            "help_s": help_time(opts.runs),
            "dependencies": dependencies(work, builder, opts.cold_runs, tags),
            "same_commit_same_id": reproducible(work, builder, tags),
            "peak_rss_mb": peak_memory(work, builder, tags),
        }
    finally:
        for tag in dict.fromkeys(tags):
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if opts.json:
        print(json.dumps(report))
    else:
        print_report(report, opts.runs)
    return 0


def print_report(report: dict, runs: int) -> None:
    n, d, m = report["notebooks_only"], report["dependencies"], report["peak_rss_mb"]
    print(f"builder {report['builder']}; medians of {runs} whole-process runs, alternating")
    line = f"notebooks only: nbs2i {n['nbs2i']:.2f} s, docker build {n['docker build']:.2f} s"
    if "s2i build" in n:
        line += f", s2i build {n['s2i build']:.2f} s"
    print(line)
    ratios = f"  nbs2i / docker build = {n['ratio_docker']:.2f} (target <= 1.0)"
    if "ratio_s2i" in n:
        ratios += f"; nbs2i / s2i = {n['ratio_s2i']:.2f} (target <= 0.5)"
    print(ratios)
    print(f"nbs2i --help: {report['help_s']:.3f} s (target < 0.1)")
    print(
        f"cold dependency layer: nbs2i {d['cold_nbs2i']:.1f} s, docker build pip install "
        f"{d['cold_docker_build']:.1f} s, ratio {d['cold_ratio']:.2f} (target <= 1.0)"
    )
    print(
        f"notebook-only rebuild on it: {d['rebuild']:.2f} s = "
        f"{d['rebuild_fraction'] * 100:.1f} % of cold (target <= 3 %)"
    )
    print(f"same commit twice, same image id: {report['same_commit_same_id']}")
    print(f"peak memory: {m['20MB']} MB for 20 MB, {m['200MB']} MB for 200 MB (target: flat)")


if __name__ == "__main__":
    sys.exit(main())
