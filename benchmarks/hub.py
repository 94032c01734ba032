"""A notebook image under a real JupyterHub: how long a student waits, and
what an idle student costs in memory.

Starts JupyterHub (from `make hub-tools`, the major the image's
`io.nbs2i.jupyterhub-major` label names) with DockerSpawner on a network of
its own and the restricted flags of tests/support/hub.py (random UID with GID
0, read-only root, tmpfs /tmp, cap-drop ALL, no-new-privileges, a volume per
student). Then, for N students (default 5):

- spawn-to-ready: one student after another logs in and presses "Start"; the
  time from the press to the server answering through the proxy with the
  OAuth handshake done (what the student waits for). One spawn first, not
  counted: page cache and the engine's first-use costs.
- memory per idle student: with all N servers up and left alone for a few
  seconds, each container's memory as `docker stats` counts it (cgroup usage
  minus inactive file cache), median and max; then the same with one idle
  kernel per student (a student with a notebook open).

Everything (hub, proxy, containers, volumes, network) is removed at the end.

    .venv/bin/python benchmarks/hub.py [IMAGE] [--students 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.hub import (
    Hub,
    HubError,
    HubSettings,
    Student,
    hub_tools,
    running_hub,
)

from nbs2i.defaults import JUPYTERHUB_MAJOR
from nbs2i.engine import Engine
from on_image import DEFAULT_IMAGE, measure_image

SETTLE_SECONDS = 5.0
MIB = 1024 * 1024
# cgroup v1 and v2 paths inside the container, and the stat line that counts
# page cache the kernel may drop (docker stats subtracts it too).
CGROUP_FILES = {
    "v1": ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "total_inactive_file"),
    "v2": ("/sys/fs/cgroup/memory.current", "inactive_file"),
}


def container_memory(engine: Engine, container: str) -> int:
    """Bytes the container uses, as `docker stats` counts them."""
    for usage_file, inactive_key in CGROUP_FILES.values():
        stat_file = usage_file.rsplit("/", 1)[0] + "/memory.stat"
        result = engine.exec(container, ["cat", usage_file, stat_file])
        if result.exit_code != 0:
            continue
        lines = result.output.split("\n")
        usage = int(lines[0])
        inactive = next(
            (int(line.split()[1]) for line in lines[1:] if line.startswith(inactive_key + " ")),
            0,
        )
        return usage - inactive
    raise HubError(f"no cgroup memory files in {container}")


def memory_of(engine: Engine, hub: Hub, students: list[Student]) -> list[float]:
    time.sleep(SETTLE_SECONDS)
    return [container_memory(engine, hub.container(s.name)) / MIB for s in students]


def measure(engine: Engine, image: str, count: int) -> dict[str, object]:
    major = engine.inspect_image(image).config.labels.get(
        "io.nbs2i.jupyterhub-major", JUPYTERHUB_MAJOR
    )
    tools = hub_tools(major)
    names = tuple(f"student{i}" for i in range(count + 1))
    with running_hub(engine, tools, HubSettings(image=image, students=names)) as hub:
        warmup, *students = [Student(hub, name) for name in names]
        warmup.log_in()
        warmup.spawn()
        warmup.stop()
        ready = []
        for student in students:
            student.log_in()
            ready.append(student.spawn())
        idle = memory_of(engine, hub, students)
        for student in students:
            answer = student.api("POST", "/kernels", {"name": "python3"})
            if answer.status_code != 201:
                raise HubError(f"{student.name}: no kernel ({answer.status_code})")
        with_kernel = memory_of(engine, hub, students)
        for student in students:
            student.stop()
    return {
        "jupyterhub": tools.version,
        "students": count,
        "spawn_to_ready_median_s": round(statistics.median(ready), 2),
        "spawn_to_ready_max_s": round(max(ready), 2),
        "idle_server_mib_median": round(statistics.median(idle), 1),
        "idle_server_mib_max": round(max(idle), 1),
        "idle_with_kernel_mib_median": round(statistics.median(with_kernel), 1),
        "idle_with_kernel_mib_max": round(max(with_kernel), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=DEFAULT_IMAGE)
    parser.add_argument("--students", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure_image(
        "benchmarks/hub.py",
        args.image,
        lambda engine, image: measure(engine, image, max(1, args.students)),
        (HubError,),
    )
    if isinstance(figures, int):
        return figures
    if args.json:
        print(json.dumps({"image": args.image, **figures}))
        return 0
    print(
        f"image: {args.image} under JupyterHub {figures['jupyterhub']}, "
        f"{figures['students']} students (restricted flags, a volume each)"
    )
    print(
        f"  spawn-to-ready through the proxy: median {figures['spawn_to_ready_median_s']} s,"
        f" max {figures['spawn_to_ready_max_s']} s"
    )
    print(
        f"  memory per idle student: median {figures['idle_server_mib_median']} MiB,"
        f" max {figures['idle_server_mib_max']} MiB"
    )
    print(
        f"  with one idle kernel:    median {figures['idle_with_kernel_mib_median']} MiB,"
        f" max {figures['idle_with_kernel_mib_max']} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
