"""What `nbs2i test` costs beside running the same notebooks by hand.

For one built course (default: the demo's image of sample-notebooks/), whole
processes timed as a user waits, alternating so that a busy machine hurts all
alike, `--runs` rounds (default 5), medians:

- `nbs2i test IMAGE`: the image as a student's server (random UID, read-only
  root, no capabilities, a volume on HOME seeded by the entrypoint), every
  notebook from its own folder with its own kernel and time limit, the report;
- the anchors: a plain `docker run --rm IMAGE jupyter execute NOTEBOOKS...`
  and `... jupyter nbconvert --execute --to notebook --output-dir /tmp/out
  NOTEBOOKS...` (the image's user, writable root, no volume, one process for
  every notebook), through the same entrypoint.

Every run must pass; nothing is left (the containers are removed with --rm
and by nbs2i).

    .venv/bin/python benchmarks/nbtest.py [IMAGE] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbs2i.engine import Engine
from on_image import DEFAULT_IMAGE, measure_image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "sample-notebooks").glob("*.ipynb"))
NBS2I = str(Path(sys.executable).parent / "nbs2i")
LABEL = "nbs2i.benchmark=nbtest"


def timed(args: Sequence[str]) -> float:
    """Seconds a whole process took; SystemExit with its output when it fails."""
    started = time.perf_counter()
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed:\n{done.stderr[-3000:]}")
    return took


def commands(image: str) -> dict[str, list[str]]:
    docker = shutil.which("docker") or "docker"
    plain = [docker, "run", "--rm", "--label", LABEL, image]
    return {
        "nbs2i test": [NBS2I, "test", image, "-q", "--label", LABEL],
        "jupyter execute": [*plain, "jupyter", "execute", *NOTEBOOKS],
        "jupyter nbconvert --execute": [
            *plain,
            "jupyter",
            "nbconvert",
            "--execute",
            "--to",
            "notebook",
            "--output-dir",
            "/tmp/out",
            *NOTEBOOKS,
        ],
    }


def measure(runs: int) -> Any:
    def run(_engine: Engine, image: str) -> dict[str, Any]:
        contenders = commands(image)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(runs):
            for name, args in contenders.items():
                times[name].append(timed(args))
        medians = {name: round(statistics.median(t), 2) for name, t in times.items()}
        anchor = medians["jupyter execute"]
        return {
            "image": image,
            "notebooks": len(NOTEBOOKS),
            "runs": runs,
            "median_seconds": medians,
            "ratio_to_jupyter_execute": round(medians["nbs2i test"] / anchor, 2),
            "all_seconds": {name: [round(x, 2) for x in t] for name, t in times.items()},
        }

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=DEFAULT_IMAGE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure_image("nbtest.py", args.image, measure(args.runs))
    if isinstance(figures, int):
        return figures
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{figures['notebooks']} notebooks of {figures['image']}, median of {args.runs}:")
    for name, seconds in figures["median_seconds"].items():
        print(f"  {name:28} {seconds:6.2f} s")
    print(f"  nbs2i test / jupyter execute: {figures['ratio_to_jupyter_execute']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
