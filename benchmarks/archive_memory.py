"""Peak memory and throughput of streaming a source tree into a container.

Generates a 20 MB and a 200 MB repository of 2,000 files each (in a temp dir,
removed afterwards), streams each with `nbs2i.archive.tar_stream` into a real
container (debian:bookworm-slim) with put_archive, checks that every byte
arrived, and prints the peak RSS of the Python process that streamed it. Each
size is measured in a fresh subprocess (resource.getrusage ru_maxrss) so the
two do not share a peak; a third subprocess measures the same process without
streaming (imports + engine connection) as the baseline.

Target: peak under 150 MB, about the same for 20 MB and 200 MB.

    .venv/bin/python benchmarks/archive_memory.py          # both sizes
    .venv/bin/python benchmarks/archive_memory.py --json   # one JSON line

`generate_repo()` is importable by other benchmarks (`from archive_memory import
generate_repo` when run from benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024
FILES = 2000
SIZES_MB = (20, 200)
IMAGE = "debian:bookworm-slim"
LABELS = {"nbs2i.benchmark": "archive_memory"}


def generate_repo(root: Path, total_bytes: int, files: int = FILES, seed: int = 4) -> Path:
    """A tree of `files` files in 20 directories adding up to `total_bytes`.

    Sizes vary (a few big data files, many small notebooks), contents are random
    (incompressible), written in blocks so generating does not use much memory.
    """
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.5) for _ in range(files)]
    scale = total_bytes / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[0] += total_bytes - sum(sizes)
    block = rng.randbytes(MB)
    for i, size in enumerate(sizes):
        folder = root / f"unit-{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".csv" if size > 256 * 1024 else ".ipynb"
        with open(folder / f"file-{i:04d}{suffix}", "wb") as f:
            left, offset = size, i * 7919 % MB
            while left > 0:
                piece = block[offset : offset + min(left, MB - offset)]
                f.write(piece)
                left -= len(piece)
                offset = 0
    return root


def measure(root: Path, stream: bool) -> dict[str, float]:
    """In this (fresh) process: stream root into a container; peak RSS and time."""
    from nbs2i.archive import tar_stream
    from nbs2i.engine import ContainerSpec, Engine

    engine = Engine.connect()
    result: dict[str, float] = {}
    spec = ContainerSpec(IMAGE, command=("sleep", "600"), labels=LABELS, network="none")
    cid = engine.create_container(spec)
    try:
        engine.start(cid)
        if stream:
            start = time.perf_counter()
            engine.put_archive(cid, "/tmp", tar_stream(root, uid=1001, epoch=1_700_000_000))
            result["seconds"] = time.perf_counter() - start
            check = engine.exec(cid, ["sh", "-c", "find /tmp/src -type f | wc -l; du -sb /tmp/src"])
            count, size = check.output.split()[0], check.output.split()[1]
            result["files_in_container"] = int(count)
            result["bytes_in_container"] = int(size)
    finally:
        engine.remove_container(cid)
        engine.close()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_child(root: Path | None) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", str(root) if root else "-"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        root = None if opts.child == "-" else Path(opts.child)
        print(json.dumps(measure(root or Path("/nonexistent"), stream=root is not None)))
        return 0

    report: dict[str, object] = {"baseline_peak_rss_mb": run_child(None)["peak_rss_mb"]}
    for size_mb in SIZES_MB:
        tmp = Path(tempfile.mkdtemp(prefix="nbs2i-bench-"))
        try:
            root = generate_repo(tmp / "repo", size_mb * MB)
            content = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            got = run_child(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if got["files_in_container"] != FILES:
            raise SystemExit(
                f"{size_mb} MB: {got['files_in_container']} files arrived, not {FILES}"
            )
        report[f"{size_mb}MB"] = {
            "content_mb": round(content / MB, 1),
            "peak_rss_mb": round(got["peak_rss_mb"], 1),
            "seconds": round(got["seconds"], 2),
            "throughput_mb_s": round(content / MB / got["seconds"], 1),
            "bytes_in_container": got["bytes_in_container"],
        }
    if opts.json:
        print(json.dumps(report))
    else:
        print(
            f"baseline (imports + engine, no stream): {report['baseline_peak_rss_mb']:.1f} MB RSS"
        )
        for size_mb in SIZES_MB:
            r = report[f"{size_mb}MB"]
            assert isinstance(r, dict)
            print(
                f"{size_mb:>4} MB repo, {FILES} files: peak RSS {r['peak_rss_mb']:.1f} MB, "
                f"{r['seconds']:.2f} s, {r['throughput_mb_s']:.0f} MB/s into the container"
            )
        peaks = [report[f"{s}MB"]["peak_rss_mb"] for s in SIZES_MB]  # type: ignore[index]
        ok = max(peaks) < 150 and max(peaks) - min(peaks) < 15
        print(f"target: peak < 150 MB and the same for both sizes: {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
