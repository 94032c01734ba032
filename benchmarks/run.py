"""Start-up cost of `nbs2i run`'s hardening, and how fast its servers stop.

For one built image (default: the demo's, nbs2i-demo/sample-notebooks:latest),
10 times each, alternating so that a busy machine hurts both alike:

- hardened: `nbs2i.run.start()` with its defaults (random UID, GID 0, read-only
  root with tmpfs /tmp, cap-drop ALL, no-new-privileges, 127.0.0.1 only, the
  image's own run script), timed from the call to an answering, token-checked API;
- plain: the same image with `jupyter server --ip 0.0.0.0` as its command and no
  hardening (image USER, writable root, default capabilities), token set,
  timed from `docker create` to the same answering API, polled by the same loop.

Prints the two medians and their ratio (target: at most 1.15), and the median
time `docker stop` takes for a hardened server (target: under 1 s).

    .venv/bin/python benchmarks/run.py [IMAGE] [--starts 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from nbs2i import restricted, run
from nbs2i.engine import ContainerSpec, Engine, PortBinding
from on_image import DEFAULT_IMAGE, measure_image

LABELS = (("nbs2i.benchmark", "run"),)
RATIO_TARGET = 1.15
STOP_TARGET = 1.0


def hardened_start(engine: Engine, image: str) -> tuple[float, float]:
    """Seconds to an answering API under nbs2i run's defaults, and seconds to stop."""
    began = time.monotonic()
    server = run.start(engine, run.RunRequest(image=image, port=0, labels=LABELS))
    ready = time.monotonic() - began
    try:
        began = time.monotonic()
        engine.stop(server.container_id, timeout=restricted.STOP_GRACE)
        stopped = time.monotonic() - began
    finally:
        engine.remove_container(server.container_id)
    return ready, stopped


def plain_start(engine: Engine, image: str) -> float:
    """Seconds to an answering API for a plain `jupyter server`, no hardening."""
    token = run.new_token()
    began = time.monotonic()
    spec = ContainerSpec(
        image=image,
        command=("jupyter", "server", "--ip", "0.0.0.0", "--port", "8888", "--no-browser"),
        env={"JUPYTER_TOKEN": token},
        labels=dict(LABELS),
        ports=(PortBinding(8888, restricted.LOOPBACK),),
    )
    cid = engine.create_container(spec)
    try:
        engine.start(cid)
        port = restricted.published_port(engine.inspect_container(cid), 8888)
        assert port is not None
        run.await_server(engine, cid, port, token, run.DEFAULT_TIMEOUT)
        return time.monotonic() - began
    finally:
        engine.remove_container(cid)


def measure(engine: Engine, image: str, starts: int) -> dict[str, float]:
    # One of each first, not counted: page cache and the engine's first-use costs.
    hardened_start(engine, image)
    plain_start(engine, image)
    hardened, stops, plain = [], [], []
    for _ in range(starts):
        ready, stopped = hardened_start(engine, image)
        hardened.append(ready)
        stops.append(stopped)
        plain.append(plain_start(engine, image))
    h, p = statistics.median(hardened), statistics.median(plain)
    return {
        "starts": starts,
        "hardened_ready_median_s": round(h, 3),
        "plain_ready_median_s": round(p, 3),
        "ratio": round(h / p, 3),
        "stop_median_s": round(statistics.median(stops), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=DEFAULT_IMAGE)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure_image(
        "benchmarks/run.py",
        args.image,
        lambda engine, image: measure(engine, image, args.starts),
    )
    if isinstance(figures, int):
        return figures
    if args.json:
        print(json.dumps({"image": args.image, **figures}))
        return 0
    ratio_ok = "ok" if figures["ratio"] <= RATIO_TARGET else "MISSED"
    stop_ok = "ok" if figures["stop_median_s"] < STOP_TARGET else "MISSED"
    print(f"image: {args.image}, {figures['starts']} starts each (medians)")
    hardened, plain = figures["hardened_ready_median_s"], figures["plain_ready_median_s"]
    print(f"  nbs2i run defaults, docker run -> API answers: {hardened} s")
    print(f"  plain jupyter server, no hardening:             {plain} s")
    print(f"  ratio: {figures['ratio']} (target <= {RATIO_TARGET}: {ratio_ok})")
    print(f"  docker stop: {figures['stop_median_s']} s (target < {STOP_TARGET} s: {stop_ok})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
