"""`nbs2i build` on each engine nbs2i is tested on, beside `docker build` on
the same engine: whole processes, start-up included, alternating, medians.

For each engine (the host's Docker 20.10, sid's Docker 28 with the containerd
image store, bookworm's podman 4.3 as a Docker API service; the other two
started with scripts/engines and stopped at the end, unless they were running
already):

1. Notebooks only, onto a present builder, one notebook edited before every
   build: `nbs2i build` vs `docker build` of `FROM builder` +
   `COPY --chown=1001:0` of the notebooks. Target: under 0.5 s.
2. The cold dependency layer (sample-notebooks' requirements, made new each
   run by a comment line): `nbs2i build` vs `docker build --no-cache` of
   `FROM builder` + `COPY requirements.txt` + `RUN pip install -r`.

The same measurements as benchmarks/build.py, whose functions this runs with
DOCKER_HOST pointed at each engine in turn. The builder is moved into an
engine that lacks it with `docker save | docker load`.

    .venv/bin/python benchmarks/engines.py [--builder IMAGE] [--runs 7] [--cold-runs 3]
        [--engines host,docker-containerd,podman] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import dependencies, notebooks_only, present_builder

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "scripts" / "engines"
HOST = "host"
OTHERS = ("docker-containerd", "podman")


def engine_env(kind: str) -> dict[str, str]:
    """The environment a client of that engine needs (scripts/engines env)."""
    if kind == HOST:
        return {"DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")}
    said = subprocess.run(
        ["bash", str(ENGINES), "env", kind], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in said.splitlines():
        name, _, rest = line.partition("=")
        found[name] = rest.split(";", 1)[0]
    return found


def start(kinds: list[str]) -> list[str]:
    """Start the engines that do not answer; the ones this run started."""
    down = [
        k
        for k in kinds
        if subprocess.run(["bash", str(ENGINES), "status", k], capture_output=True).returncode
    ]
    if down:
        subprocess.run(["bash", str(ENGINES), "start", *down], check=True)
    return down


def move_builder(builder: str, env: dict[str, str]) -> None:
    """The builder into an engine that lacks it, from the host's engine."""
    target = {**os.environ, **env}
    if subprocess.run(
        ["docker", "image", "inspect", builder], capture_output=True, env=target
    ).returncode:
        save = subprocess.Popen(["docker", "save", builder], stdout=subprocess.PIPE)
        subprocess.run(["docker", "load", "-q"], stdin=save.stdout, env=target, check=True)
        if save.wait() != 0:
            raise SystemExit(f"docker save {builder} failed")


def on_engine(kind: str, builder: str, runs: int, cold_runs: int) -> dict[str, object]:
    env = engine_env(kind)
    if kind != HOST:
        move_builder(builder, env)
    saved = dict(os.environ)
    os.environ.update(env)
    tags: list[str] = []
    work = Path(tempfile.mkdtemp(prefix=f"bench-engines-{kind}-"))
    try:
        version = subprocess.run(
            ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        return {
            "version": version,
            "notebooks_only": notebooks_only(work, builder, runs, tags),
            "dependencies": dependencies(work, builder, cold_runs, tags),
        }
    finally:
        for tag in dict.fromkeys(tags):
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builder", default="")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--engines", default=",".join((HOST, *OTHERS)))
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    kinds = [k for k in opts.engines.split(",") if k]
    opts.builder = present_builder(opts.builder)
    started = start([k for k in kinds if k != HOST])
    report: dict[str, object] = {"builder": opts.builder}
    try:
        for kind in kinds:
            report[kind] = on_engine(kind, opts.builder, opts.runs, opts.cold_runs)
    finally:
        if started:
            subprocess.run(["bash", str(ENGINES), "stop", *started], check=False)
    if opts.json:
        print(json.dumps(report))
    else:
        print_report(report, kinds, opts.runs, opts.cold_runs)
    return 0


def print_report(report: dict, kinds: list[str], runs: int, cold_runs: int) -> None:
    print(
        f"builder {report['builder']}; medians of {runs} (cold layer: {cold_runs}) "
        "whole-process runs, alternating with docker build on the same engine"
    )
    for kind in kinds:
        one = report[kind]
        n, d = one["notebooks_only"], one["dependencies"]
        print(
            f"{kind} {one['version']}: notebooks only nbs2i {n['nbs2i']:.2f} s, docker build "
            f"{n['docker build']:.2f} s ({n['ratio_docker']:.2f}x); cold dependency layer "
            f"nbs2i {d['cold_nbs2i']:.1f} s, docker build --no-cache "
            f"{d['cold_docker_build']:.1f} s ({d['cold_ratio']:.2f}x); rebuild on it "
            f"{d['rebuild']:.2f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
