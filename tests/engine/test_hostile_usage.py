"""`nbs2i usage IMAGE` of an image that someone else made.

The usage script is the image's: it may print escape sequences, sleep for
ever, or print without end. Whatever it does, nbs2i's output holds no control
character but newlines and tabs, the command ends within its time limit with
one line saying why, its memory stays flat, Ctrl-C ends it within seconds, and
the container is gone in every case.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from nbs2i.building.assemble import USAGE_SECONDS
from nbs2i.engine import Docker
from tests.support import cli
from tests.support.images import build_dockerfile
from tests.support.sandbox import Sandbox
from tests.support.session import SESSION_FILTER, label_args, tag

SCRIPTS = {
    "escapes": (
        "printf 'plain help\\n\\033[2J\\033[31mred\\033[0m \\033]0;title\\007 bell\\007 "
        "cr\\rback \\233[1mc1\\n'"
    ),
    "sleeps": "echo 'some help'; exec sleep 100000",
    "endless": "exec yes",
    "polite": "echo 'nbs2i-test usage: build with it'",
}
# What nbs2i itself may take, whatever the image prints: its own start-up and
# docker-py, the output cap and what waits between the reader and the cap.
RSS_MARGIN_KIB = 16 * 1024


def usage_image(box: Sandbox, engine: Docker, kind: str) -> str:
    """A tiny image whose usage script does `kind`."""
    script = f"#!/bin/sh\n{SCRIPTS[kind]}\n"
    dockerfile = (
        "FROM debian:bookworm-slim\n"
        "COPY usage /usr/libexec/s2i/usage\n"
        "LABEL io.openshift.s2i.scripts-url=image:///usr/libexec/s2i\n"
        "USER 1001\n"
    )
    return build_dockerfile(
        engine, box.image(tag(f"usage-{kind}")), dockerfile, {"usage": script.encode()}
    )


def usage_args(image: str) -> list[str]:
    return ["usage", image, *label_args("--container-label")]


@dataclass(frozen=True)
class Measured:
    result: cli.Result
    seconds: float
    max_rss_kib: int


def measured(box: Sandbox, *args: str, timeout: float) -> Measured:
    """`nbs2i ARGS` as a separate process, its peak memory from the kernel
    (wait4's rusage of exactly that process)."""
    proc = subprocess.Popen(
        cli.command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=cli.environment(box.env),
    )
    out: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda n=n: out.__setitem__(n, getattr(proc, n).read()))
        for n in ("stdout", "stderr")
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    status, usage = 0, None
    while time.monotonic() - started < timeout:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        _, status, usage = os.wait4(proc.pid, 0)
        pytest.fail(f"nbs2i {args[0]} was still busy after {timeout} s", False)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout=10)
    result = cli.Result(
        proc.returncode,
        out.get("stdout", b"").decode("utf-8", "replace"),
        out.get("stderr", b"").decode("utf-8", "replace"),
    )
    assert usage is not None
    return Measured(result, seconds, usage.ru_maxrss)


def usage_containers(engine: Docker) -> list[str]:
    return [c.id for c in engine.containers(labels=[SESSION_FILTER, "nbs2i.role=usage"])]


def test_escape_sequences_never_reach_the_terminal(box: Sandbox, engine: Docker) -> None:
    image = usage_image(box, engine, "escapes")
    result = box.nbs2i(*usage_args(image), timeout=60)
    assert result.code == 0, result.stderr
    assert "plain help" in result.stdout and "?[31mred?[0m" in result.stdout
    assert not [ch for ch in result.stdout if ord(ch) < 0x20 and ch not in "\n\t"], result.stdout
    assert "\x9b" not in result.stdout
    assert not usage_containers(engine)


def test_a_usage_script_that_never_ends_is_stopped_in_time(box: Sandbox, engine: Docker) -> None:
    image = usage_image(box, engine, "sleeps")
    run = measured(box, *usage_args(image), timeout=USAGE_SECONDS + 30)
    assert run.result.code == 1, run.result.stderr
    line = run.result.error_line
    assert f"did not finish in {USAGE_SECONDS} s: it was stopped and removed" in line
    assert "some help" in run.result.stderr  # what it printed before, shown
    assert USAGE_SECONDS <= run.seconds < USAGE_SECONDS + 15
    assert not usage_containers(engine)


def test_endless_output_is_capped_with_flat_memory(box: Sandbox, engine: Docker) -> None:
    polite = usage_image(box, engine, "polite")
    endless = usage_image(box, engine, "endless")
    normal = measured(box, *usage_args(polite), timeout=60)
    assert normal.result.code == 0, normal.result.stderr
    assert normal.result.stdout == "nbs2i-test usage: build with it\n"
    flood = measured(box, *usage_args(endless), timeout=60)
    assert flood.result.code == 1, flood.result.stderr[-2000:]
    assert "printed more than 1 MiB: it was stopped and removed" in flood.result.error_line
    assert flood.seconds < 20
    assert flood.max_rss_kib < normal.max_rss_kib + RSS_MARGIN_KIB, (flood, normal.max_rss_kib)
    assert len(flood.result.stderr) < 4096  # a few lines of it shown, not a MiB
    assert not usage_containers(engine)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_it_at_once_and_removes_the_container(
    box: Sandbox, engine: Docker, signum: signal.Signals
) -> None:
    image = usage_image(box, engine, "sleeps")
    run = box.running(*usage_args(image))
    deadline = time.monotonic() + 60
    while not usage_containers(engine) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert usage_containers(engine), "the usage container never appeared"
    time.sleep(1)  # it runs its sleep now
    sent = time.monotonic()
    result = cli.interrupt(run, signum, timeout=30)
    assert time.monotonic() - sent < 10
    assert result.code == 130, result.stderr
    assert "interrupted" in result.stderr
    assert not usage_containers(engine)
