"""Figures of `nbs2i build` (issue 4), from one run, against the real engine.

1. A copy of sample-notebooks/ without requirements.txt onto a present builder:
   median of `nbs2i build` vs `docker build` (no cache) of a Dockerfile FROM the
   same builder with `COPY --chown=1001:0`, through the engine; their ratio.
   Also `nbs2i build --always-assemble`, which starts the assemble container
   that the default build skips when assemble would only move the files.
2. sample-notebooks/ with its dependencies: a cold build (a fresh dependency
   layer: requirements.txt gets a unique comment line), then rebuilds after
   editing one notebook, as a fraction of the cold build.
3. The size of the layer that holds the notebooks / the size of the content.
4. Peak memory (ru_maxrss) of the `nbs2i build` process building a generated
   repository of 2,000 files, 20 MB and 200 MB (benchmarks/archive_memory.py's
   generator), each in a fresh process.

Targets: <= 1.5x the Dockerfile build; rebuild <= 10 % of cold; layer <= 1.05x
content; peak memory < 150 MB and about the same for 20 and 200 MB.

    .venv/bin/python benchmarks/build.py [--builder IMAGE] [--runs 5] [--json]

The builder defaults to nbs2i/builder:<version> (built first when absent).
Everything it creates carries the label nbs2i.benchmark=build and is removed.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive_memory import MB, generate_repo
from nbs2i.build import BuildRequest, build, default_builder, default_ca_bundle
from nbs2i.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample-notebooks"
LABELS = {"nbs2i.benchmark": "build"}
RUN_ID = uuid.uuid4().hex[:8]


def content_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".git" not in p.parts)


def nbs2i_build(
    engine: Engine, src: Path, tag: str, builder: str, *, always_assemble: bool = False
) -> tuple[float, object]:
    request = BuildRequest(
        source=str(src),
        tag=tag,
        builder=builder,
        ca_bundle=default_ca_bundle(),
        container_labels=tuple(LABELS.items()),
        always_assemble=always_assemble,
    )
    start = time.perf_counter()
    result = build(engine, request)
    return time.perf_counter() - start, result


def docker_build(engine: Engine, src: Path, tag: str, builder: str) -> float:
    """docker build (classic builder, no cache) of FROM builder + COPY --chown=1001:0."""
    with tempfile.TemporaryDirectory(prefix="nbs2i-bench-df-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(src, ctx / "src")
        (ctx / "Dockerfile").write_text(
            f"FROM {builder}\nCOPY --chown=1001:0 src/ /opt/app-root/src/\n"
        )
        start = time.perf_counter()
        for event in engine.build(path=str(ctx), tag=tag, nocache=True, labels=LABELS):
            if "error" in event:
                raise SystemExit(f"docker build failed: {event['error']}")
        return time.perf_counter() - start


def top_layer_size(engine: Engine, tag: str) -> int:
    return int(engine.history(tag)[0]["Size"])


def peak_memory(src: Path, builder: str, tag: str) -> float:
    """Peak RSS (MB) of a fresh process running `nbs2i build`."""
    code = (
        "import resource, sys\n"
        "from nbs2i.cli import cli, run_guarded\n"
        "rc = run_guarded(lambda: cli.main(sys.argv[1:], standalone_mode=False))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    args = [sys.executable, "-c", code, "build", str(src), tag, "--builder", builder, "--quiet"]
    args += [a for k, v in LABELS.items() for a in ("--container-label", f"{k}={v}")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"nbs2i build of {src} failed:\n{done.stderr[-2000:]}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builder", default="")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    engine = Engine.connect()
    builder = opts.builder or default_builder()
    tags: list[str] = []
    report: dict[str, object] = {"builder": builder, "runs": opts.runs}
    work = Path(tempfile.mkdtemp(prefix="nbs2i-bench-build-"))
    try:
        # Make sure the builder is there (built on first use) before anything is timed.
        from nbs2i.build import ensure_builder

        ensure_builder(
            engine, builder, "if-not-present", is_default=not opts.builder, reporter=lambda e: None
        )

        # 1. no dependencies: nbs2i build vs docker build
        nodeps = work / "nodeps"
        shutil.copytree(SAMPLES, nodeps)
        (nodeps / "requirements.txt").unlink()
        tag_n = f"nbs2i-bench/nodeps:{RUN_ID}"
        tag_d = f"nbs2i-bench/dockerfile:{RUN_ID}"
        tags += [tag_n, tag_d]
        tag_a = f"nbs2i-bench/assembled:{RUN_ID}"
        tags.append(tag_a)
        ours, theirs, assembled = [], [], []
        for _ in range(opts.runs):
            ours.append(nbs2i_build(engine, nodeps, tag_n, builder)[0])
            theirs.append(docker_build(engine, nodeps, tag_d, builder))
            engine.remove_image(tag_d)  # keep the next docker build from reusing anything
            assembled.append(nbs2i_build(engine, nodeps, tag_a, builder, always_assemble=True)[0])
        ours_m, theirs_m = statistics.median(ours), statistics.median(theirs)
        assembled_m = statistics.median(assembled)
        content = content_size(nodeps)
        layer = top_layer_size(engine, tag_n)
        report["nodeps"] = {
            "nbs2i_build_s": [round(t, 2) for t in ours],
            "docker_build_s": [round(t, 2) for t in theirs],
            "nbs2i_median_s": round(ours_m, 2),
            "docker_median_s": round(theirs_m, 2),
            "ratio": round(ours_m / theirs_m, 2),
            "always_assemble_s": [round(t, 2) for t in assembled],
            "always_assemble_median_s": round(assembled_m, 2),
            "always_assemble_ratio": round(assembled_m / theirs_m, 2),
            "content_bytes": content,
            "layer_bytes": layer,
            "layer_over_content": round(layer / content, 3),
        }

        # 2. with dependencies: cold build, then notebook-only rebuilds
        deps = work / "deps"
        shutil.copytree(SAMPLES, deps)
        with open(deps / "requirements.txt", "a") as f:
            f.write(f"# benchmark {RUN_ID}: a fresh dependency layer\n")
        tag_s = f"nbs2i-bench/sample:{RUN_ID}"
        tags.append(tag_s)
        cold, result = nbs2i_build(engine, deps, tag_s, builder)
        deps_image = result.deps_image  # type: ignore[attr-defined]
        tags.append(deps_image)
        rebuilds = []
        for i in range(max(3, opts.runs // 2)):
            nb = deps / "02-reading-a-csv.ipynb"
            text = json.loads(nb.read_text())
            text.setdefault("metadata", {})["benchmark_edit"] = i
            nb.write_text(json.dumps(text))
            seconds, again = nbs2i_build(engine, deps, tag_s, builder)
            assert again.deps_reused, "the rebuild did not reuse the dependency layer"  # type: ignore[attr-defined]
            rebuilds.append(seconds)
        rebuild_m = statistics.median(rebuilds)
        report["deps"] = {
            "cold_s": round(cold, 2),
            "rebuild_s": [round(t, 2) for t in rebuilds],
            "rebuild_median_s": round(rebuild_m, 2),
            "rebuild_fraction": round(rebuild_m / cold, 3),
            "notebook_layer_bytes": top_layer_size(engine, tag_s),
            "content_bytes": content_size(deps),
        }

        # 4. peak memory, 20 MB and 200 MB of 2,000 files
        memory = {}
        for size in (20, 200):
            repo = generate_repo(work / f"gen{size}", size * MB)
            tag_g = f"nbs2i-bench/gen{size}:{RUN_ID}"
            tags.append(tag_g)
            start = time.perf_counter()
            peak = peak_memory(repo, builder, tag_g)
            memory[f"{size}MB"] = {
                "peak_rss_mb": round(peak, 1),
                "seconds": round(time.perf_counter() - start, 1),
                "layer_over_content": round(top_layer_size(engine, tag_g) / content_size(repo), 3),
            }
            engine.remove_image(tag_g)
            shutil.rmtree(repo)
        report["memory"] = memory
    finally:
        for tag in tags:
            engine.remove_image(tag, force=True)
        for c in engine.containers(labels=[f"{k}={v}" for k, v in LABELS.items()]):
            engine.remove_container(c["Id"])
        shutil.rmtree(work, ignore_errors=True)
        engine.close()

    if opts.json:
        print(json.dumps(report))
        return 0
    n, d, m = report["nodeps"], report["deps"], report["memory"]  # type: ignore[assignment]
    print(f"builder: {builder}; {opts.runs} runs each")
    print(
        f"no deps: nbs2i build median {n['nbs2i_median_s']:.2f} s, docker build (COPY --chown) "
        f"median {n['docker_median_s']:.2f} s, ratio {n['ratio']:.2f} (target <= 1.5)"
    )
    print(
        f"         nbs2i build --always-assemble (runs the assemble container) median "
        f"{n['always_assemble_median_s']:.2f} s, ratio {n['always_assemble_ratio']:.2f}"
    )
    print(
        f"with deps: cold {d['cold_s']:.1f} s, notebook-only rebuild median "
        f"{d['rebuild_median_s']:.2f} s = {d['rebuild_fraction'] * 100:.1f} % of cold "
        "(target <= 10 %)"
    )
    print(
        f"notebook layer {n['layer_bytes']} B / content {n['content_bytes']} B = "
        f"{n['layer_over_content']:.3f} (target <= 1.05)"
    )
    for size, r in m.items():
        print(
            f"peak memory building a {size} repo of 2,000 files: {r['peak_rss_mb']:.1f} MB "
            f"({r['seconds']:.1f} s, layer/content {r['layer_over_content']:.3f})"
        )
    peaks = [r["peak_rss_mb"] for r in m.values()]
    flat = max(peaks) < 150 and max(peaks) - min(peaks) < 15
    print(f"peak memory target (< 150 MB, flat): {'met' if flat else 'MISSED'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
