"""Figures for the builder image: cold build time, size, start and stop times.

    .venv/bin/python benchmarks/builder.py                 # cold build once, 5 start/stop runs
    .venv/bin/python benchmarks/builder.py --cold-runs 3   # median of 3 cold builds
    .venv/bin/python benchmarks/builder.py --image nbs2i/builder:latest  # no build

A cold build uses a fresh tag and no build cache (nocache), through
nbs2i.builder exactly as `nbs2i builder build` does; it is removed afterwards.
"Start" is the time from creating the container (as a random UID with GID 0)
to the first HTTP 200 of /api/status on 127.0.0.1; "stop" is `docker stop`
(SIGTERM, then KILL after 10 s) of a server that has a running kernel.
Everything started here is labelled nbs2i.bench and removed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid

from nbs2i import builder
from nbs2i.engine import Engine

LABELS = {"nbs2i.bench": "1"}
STAGE_LABEL = "io.nbs2i.build-stage"
TOKEN = "bench-" + uuid.uuid4().hex[:8]
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method)
    try:
        with HTTP.open(request, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def cold_build(engine: Engine) -> tuple[float, str]:
    tag = f"nbs2i-bench/builder:{uuid.uuid4().hex[:8]}"
    request = builder.BuilderRequest(
        tags=(tag,), ca_bundle=builder.default_ca_bundle(), nocache=True
    )
    stages = {i["Id"] for i in engine.images(labels=[STAGE_LABEL])}
    started = time.monotonic()
    builder.build_builder(engine, request)
    seconds = time.monotonic() - started
    # The uncached build made a new build-stage image: it is this run's to remove.
    for image in engine.images(labels=[STAGE_LABEL]):
        if image["Id"] not in stages:
            engine.remove_image(image["Id"], force=True)
    return seconds, tag


def start_and_stop(engine: Engine, image: str) -> tuple[float, float]:
    uid = random.randint(100_000, 2_000_000_000)
    started = time.monotonic()
    cid = engine.create_container(
        image,
        user=f"{uid}:0",
        environment={"JUPYTER_TOKEN": TOKEN},
        labels=LABELS,
        ports=[8888],
        host_config={"port_bindings": {8888: ("127.0.0.1",)}},
    )
    try:
        engine.start(cid)
        port = engine.inspect_container(cid)["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        ready = None
        for _ in range(600):  # at most 60 s
            if status(f"{base}/api/status?token={TOKEN}") == 200:
                ready = time.monotonic() - started
                break
            time.sleep(0.1)
        if ready is None:
            raise SystemExit(f"the server in {cid[:12]} did not answer within 60 s")
        # A kernel, so that the stop also has to end it.
        if status(f"{base}/api/kernels?token={TOKEN}", "POST") != 201:
            raise SystemExit("could not start a kernel")
        stop_started = time.monotonic()
        engine.stop(cid, timeout=10)
        return ready, time.monotonic() - stop_started
    finally:
        engine.remove_container(cid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="", help="measure this image; skip the cold build")
    parser.add_argument("--cold-runs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, object] = {}
    with Engine.connect() as engine:
        image = args.image
        built: list[str] = []
        try:
            if not image:
                times = []
                for _ in range(args.cold_runs):
                    seconds, tag = cold_build(engine)
                    times.append(seconds)
                    built.append(tag)
                    print(f"cold build: {seconds:.1f} s", file=sys.stderr)
                figures["cold_build_s_median"] = round(statistics.median(times), 1)
                image = built[-1]
            figures["image"] = image
            figures["image_size_mb"] = round(engine.inspect_image(image)["Size"] / 1e6, 1)
            starts, stops = [], []
            for _ in range(args.runs):
                ready, stop = start_and_stop(engine, image)
                starts.append(ready)
                stops.append(stop)
                print(f"start {ready:.2f} s, stop {stop:.2f} s", file=sys.stderr)
            figures["run_to_api_status_s_median"] = round(statistics.median(starts), 2)
            figures["docker_stop_s_median"] = round(statistics.median(stops), 2)
            figures["runs"] = args.runs
        finally:
            for tag in built:
                engine.remove_image(tag, force=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
