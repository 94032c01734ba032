"""What a flood of assemble output costs, and how fast a signal ends it.

Builds a course whose `.s2i/bin/assemble` is `exec yes` with the builder
given (as a whole `nbs2i build` process), lets it flood for a few seconds,
and then sends a signal. Prints, per signal, the median over the rounds of:
seconds from the signal to nbs2i's exit and to an engine with nothing of the
build left; nbs2i's resident memory while it read the flood (min and max);
the largest size of the engine's log file of the container. For SIGKILL,
which nbs2i cannot act on: seconds until the container stopped (its guard
ends it when the attach connection closes); what is left is then removed by
this script. Everything it creates carries the label nbs2i.benchmark=flood.

    .venv/bin/python benchmarks/flood.py nbs2i-dev/builder:base --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import docker.utils

LABEL = "nbs2i.benchmark=flood"
FLOOD_SECONDS = 5
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGKILL")


def course(root: Path) -> Path:
    (root / ".s2i" / "bin").mkdir(parents=True)
    (root / "lecture.ipynb").write_text('{"cells": [], "nbformat": 4, "nbformat_minor": 5}')
    assemble = root / ".s2i" / "bin" / "assemble"
    assemble.write_text("#!/bin/sh\necho flooding\nexec yes\n")
    assemble.chmod(0o755)
    return root


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ours(client: docker.APIClient) -> tuple[list[str], list[str]]:
    containers = [c["Id"] for c in client.containers(all=True, filters={"label": LABEL})]
    volumes = client.volumes(filters={"label": LABEL}).get("Volumes") or []
    return containers, [v["Name"] for v in volumes]


def log_mib(client: docker.APIClient) -> float:
    sizes = []
    for cid in ours(client)[0]:
        path = client.inspect_container(cid).get("LogPath") or ""
        if os.path.exists(path):
            sizes.append(os.stat(path).st_size / (1 << 20))
    return max(sizes, default=0.0)


def one_round(client: docker.APIClient, builder: str, src: Path, name: str) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbs2i", "build", str(src), "nbs2i-bench/flood:1",
         "--builder", builder, "--container-label", LABEL, "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not ours(client)[0] and proc.poll() is None:
        time.sleep(0.2)
    memory, logs = [], []
    for _ in range(FLOOD_SECONDS):
        time.sleep(1)
        memory.append(rss_mib(proc.pid))
        logs.append(log_mib(client))
    proc.send_signal(getattr(signal, name))
    sent = time.monotonic()
    proc.wait(timeout=300)
    exited = time.monotonic() - sent
    while any(ours(client)) and name != "SIGKILL" and time.monotonic() - sent < 300:
        time.sleep(0.1)
    clean = time.monotonic() - sent
    while name == "SIGKILL" and _running(client) and time.monotonic() - sent < 300:
        time.sleep(0.1)
    stopped = time.monotonic() - sent
    _remove(client)
    return {
        "exit_s": exited,
        "clean_s": clean if name != "SIGKILL" else float("nan"),
        "container_stopped_s": stopped,
        "rss_min_mib": min(memory),
        "rss_max_mib": max(memory),
        "log_max_mib": max(logs),
    }


def _running(client: docker.APIClient) -> bool:
    return bool(client.containers(filters={"label": LABEL, "status": "running"}))


def _remove(client: docker.APIClient) -> None:
    containers, volumes = ours(client)
    for cid in containers:
        client.remove_container(cid, force=True, v=True)
    for name in volumes:
        client.remove_volume(name, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("builder")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    work = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    try:
        src = course(work / "course")
        for name in SIGNALS:
            rounds = [one_round(client, args.builder, src, name) for _ in range(args.rounds)]
            medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(name, " ".join(f"{k}={v:.2f}" for k, v in medians.items()))
    finally:
        _remove(client)
        shutil.rmtree(work)
        client.close()


if __name__ == "__main__":
    main()
