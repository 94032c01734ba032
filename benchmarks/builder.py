"""Figures for the builder image and its variants: build time, size, start and
stop times, side by side with docker-stacks' published sizes.

    .venv/bin/python benchmarks/builder.py                  # every variant, then start/stop
    .venv/bin/python benchmarks/builder.py --variants minimal r --runs 3
    .venv/bin/python benchmarks/builder.py --cold            # minimal with no build cache first

Each variant is built through nbs2i.builder exactly as `nbs2i builder build
--variant V` does, one after the other, so each after the first reuses the
layers it shares (the server environment): the time a teacher waits for a
second variant. `--cold` first builds minimal with no cache at all. "Start" is
from creating the container (a random UID with GID 0, read-only root, as
nbs2i.restricted starts it) to the first HTTP 200 of /api/status; "stop" is
`docker stop` of a server with a running kernel. Everything made here is
tagged nbs2i-bench/* or labelled nbs2i.bench, and removed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

from nbs2i import builder, defaults, labels, restricted
from nbs2i.ca import default_ca_bundle
from nbs2i.engine import Engine

BENCH_LABELS = {"nbs2i.bench": "1"}
TOKEN = "bench-" + uuid.uuid4().hex[:8]
# docker-stacks' published sizes, for comparison (anchors.md).
DOCKER_STACKS = {"minimal": "1.58 GB (minimal-notebook)", "scipy": "4.19 GB (scipy-notebook)"}


def build_variant(engine: Engine, variant: str, nocache: bool = False) -> tuple[float, str]:
    tag = f"nbs2i-bench/builder-{variant}:{uuid.uuid4().hex[:8]}"
    request = builder.BuilderRequest(
        tags=(tag,), ca_bundle=default_ca_bundle(), nocache=nocache, variant=variant
    )
    started = time.monotonic()
    builder.build_builder(engine, request)
    return time.monotonic() - started, tag


def start_and_stop(engine: Engine, image: str) -> tuple[float, float]:
    spec = restricted.container_spec(
        image, uid=restricted.random_uid(), env={"JUPYTER_TOKEN": TOKEN}, labels=BENCH_LABELS
    )
    started = time.monotonic()
    cid = engine.create_container(spec)
    try:
        engine.start(cid)
        port = restricted.published_port(engine.inspect_container(cid), restricted.SERVER_PORT)
        assert port is not None
        ready = restricted.wait_ready(engine, cid, port, timeout=60)
        if not ready.ready:
            raise SystemExit(f"the server in {cid[:12]} did not answer within 60 s")
        seconds = time.monotonic() - started
        kernel = restricted.http_request(port, f"/api/kernels?token={TOKEN}", method="POST")
        if kernel.status != 201:
            raise SystemExit("could not start a kernel")
        stop_started = time.monotonic()
        engine.stop(cid, timeout=restricted.STOP_GRACE)
        return seconds, time.monotonic() - stop_started
    finally:
        engine.remove_container(cid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(defaults.VARIANTS))
    parser.add_argument("--cold", action="store_true", help="minimal with no build cache first")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, object] = {}
    built: list[str] = []
    with Engine.connect() as engine:
        stages = {i.id for i in engine.images(labels=[labels.BUILD_STAGE])}
        try:
            if args.cold:
                seconds, tag = build_variant(engine, "minimal", nocache=True)
                built.append(tag)
                figures["minimal_cold_build_s"] = round(seconds, 1)
            for variant in args.variants:
                seconds, tag = build_variant(engine, variant)
                built.append(tag)
                size = engine.inspect_image(tag).size
                figures[variant] = {
                    "build_s": round(seconds, 1),
                    "size_mb": round(size / 1e6, 1),
                    "docker_stacks": DOCKER_STACKS.get(variant, ""),
                }
                print(f"{variant}: {seconds:.0f} s, {size / 1e6:.0f} MB", file=sys.stderr)
            starts, stops = [], []
            for _ in range(args.runs):
                ready, stop = start_and_stop(engine, built[-len(args.variants)])
                starts.append(ready)
                stops.append(stop)
            figures["run_to_api_status_s_median"] = round(statistics.median(starts), 2)
            figures["docker_stop_s_median"] = round(statistics.median(stops), 2)
        finally:
            for tag in built:
                engine.remove_image(tag, force=True)
            for image in engine.images(labels=[labels.BUILD_STAGE]):
                if image.id not in stages and not image.tags:
                    engine.remove_image(image.id, force=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
