"""What seeding the course costs at every start: course updates against the
copy-if-missing anchor.

Two builders (default: nbs2i-dev/builder:base, whose entrypoint seeds with
`cp -R -n`, and nbs2i-dev/builder:seeding, which records what it seeded and
brings updates); with each, two courses are built: the sample notebooks
(without their requirements: only the seeding is timed) and a large course of
500 files and 100 MB (450 notebooks of 20 KB, 50 data files of 1.8 MB, random
bytes), plus its v2 with 10 notebooks and 2 data files changed. Each start is a
whole `docker run --rm` of the image with `true` as its command, as a random
UID with GID 0, read-only root, tmpfs /tmp, no capabilities, timed from the
shell (the platform setup runs for any command, then `true` exits):

- first: a new, empty volume on /home/jovyan (the whole course is copied);
- restart: the same image again on that volume (nothing to do);
- new image: v2 on a volume that v1 seeded (the image side is hashed once);
- bare: no volume (HOME falls back to /tmp: the course is copied every time).

Anchor and candidate alternate, `--starts` times each (default 5); medians.
Everything made is labelled nbs2i.benchmark=seeding and removed at the end.

    .venv/bin/python benchmarks/seeding.py [--anchor IMAGE] [--candidate IMAGE] [--starts 5]
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
from collections.abc import Callable
from pathlib import Path

from nbs2i import restricted
from nbs2i.building import BuildRequest, build
from nbs2i.engine import Engine

LABEL = ("nbs2i.benchmark", "seeding")
SAMPLES = Path(__file__).resolve().parents[1] / "sample-notebooks"
BIG_NOTEBOOKS, NOTEBOOK_BYTES = 450, 20_000
BIG_DATA, DATA_BYTES = 50, 1_800_000


def notebook(data: bytes) -> bytes:
    cell = {"cell_type": "markdown", "metadata": {}, "source": data.hex()}
    return json.dumps(
        {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


NOTEBOOKS = [os.urandom(NOTEBOOK_BYTES // 2) for _ in range(BIG_NOTEBOOKS)]
DATA = [os.urandom(DATA_BYTES) for _ in range(BIG_DATA)]


def big_course(root: Path, changed: int = 0) -> Path:
    """500 files, about 100 MB; the first `changed` notebooks and `changed // 5`
    data files differ from the other versions'."""
    for i in range(BIG_NOTEBOOKS):
        folder = root / f"week{i // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = os.urandom(NOTEBOOK_BYTES // 2) if i < changed else NOTEBOOKS[i]
        (folder / f"lecture{i:03d}.ipynb").write_bytes(notebook(data))
    (root / "data").mkdir(exist_ok=True)
    for i in range(BIG_DATA):
        blob = os.urandom(DATA_BYTES) if i < changed // 5 else DATA[i]
        (root / "data" / f"set{i:02d}.bin").write_bytes(blob)
    return root


def build_course(engine: Engine, source: Path, builder: str) -> str:
    ref = f"nbs2i-bench/seeding-{uuid.uuid4().hex[:8]}:latest"
    request = BuildRequest(
        source=str(source), tag=ref, builder=builder, labels=(LABEL,), container_labels=(LABEL,)
    )
    return build(engine, request).tag


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=300)


def start(image: str, volume: str | None) -> float:
    """Seconds for a whole restricted `docker run --rm IMAGE true`."""
    args = [
        "run",
        "--rm",
        "--user",
        f"{restricted.random_uid()}:0",
        "--read-only",
        "--tmpfs",
        f"{restricted.TMP}:{restricted.scratch().options()}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        restricted.NO_NEW_PRIVILEGES,
        "--label",
        "=".join(LABEL),
    ]
    if volume:
        args += ["-v", f"{volume}:{restricted.HOME}"]
    began = time.monotonic()
    docker(*args, image, "true")
    return time.monotonic() - began


def new_volume(made: list[str]) -> str:
    name = f"nbs2i-bench-seeding-{uuid.uuid4().hex[:10]}"
    docker("volume", "create", "--label", "=".join(LABEL), name)
    made.append(name)
    return name


def scenarios(images: dict[str, str], volumes: list[str]) -> dict[str, Callable[[], float]]:
    """Each scenario: set-up (not timed), then one timed start."""

    def first(course: str) -> Callable[[], float]:
        return lambda: start(images[course], new_volume(volumes))

    def restart(course: str) -> Callable[[], float]:
        def run() -> float:
            volume = new_volume(volumes)
            start(images[course], volume)
            return start(images[course], volume)

        return run

    def upgrade() -> float:
        volume = new_volume(volumes)
        start(images["big"], volume)
        return start(images["big-v2"], volume)

    return {
        "sample: first start": first("sample"),
        "sample: restart": restart("sample"),
        "sample: bare root": lambda: start(images["sample"], None),
        "100 MB: first start": first("big"),
        "100 MB: restart": restart("big"),
        "100 MB: new image": upgrade,
        "100 MB: bare root": lambda: start(images["big"], None),
    }


def measure(builders: dict[str, str], starts: int, workdir: Path) -> dict[str, dict[str, float]]:
    sample = workdir / "sample"
    shutil.copytree(SAMPLES, sample, ignore=shutil.ignore_patterns("requirements.txt"))
    big, big2 = big_course(workdir / "big"), big_course(workdir / "big-v2", changed=10)
    images: dict[str, dict[str, str]] = {}
    volumes: list[str] = []
    try:
        with Engine.connect() as engine:
            for name, builder in builders.items():
                images[name] = {
                    "sample": build_course(engine, sample, builder),
                    "big": build_course(engine, big, builder),
                    "big-v2": build_course(engine, big2, builder),
                }
        runs = {name: scenarios(images[name], volumes) for name in builders}
        times: dict[str, dict[str, list[float]]] = {n: {} for n in builders}
        for _ in range(starts + 1):  # the first round warms caches: not counted
            for scenario in runs[next(iter(builders))]:
                for name in builders:
                    times[name].setdefault(scenario, []).append(runs[name][scenario]())
        return {
            name: {s: round(statistics.median(t[1:]), 3) for s, t in by.items()}
            for name, by in times.items()
        }
    finally:
        for volume in volumes:
            subprocess.run(
                ["docker", "volume", "rm", "-f", volume], capture_output=True, timeout=60
            )
        for made in images.values():
            for image in made.values():
                subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor", default="nbs2i-dev/builder:base")
    parser.add_argument("--candidate", default="nbs2i-dev/builder:seeding")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    builders = {"anchor": args.anchor, "candidate": args.candidate}
    with tempfile.TemporaryDirectory(prefix="nbs2i-bench-seeding-") as tmp:
        figures = measure(builders, args.starts, Path(tmp))
    if args.json:
        print(json.dumps({"builders": builders, "medians_s": figures}))
        return 0
    print(f"anchor {args.anchor} vs candidate {args.candidate}: {args.starts} starts each, medians")
    for scenario, anchor in figures["anchor"].items():
        candidate = figures["candidate"][scenario]
        print(
            f"  {scenario:22} anchor {anchor:6.3f} s   candidate {candidate:6.3f} s"
            f"   {candidate - anchor:+.3f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
