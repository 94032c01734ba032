"""`nbs2i test` against the real engine: real images, real kernels.

The sample course passes; a course with a broken notebook is reported with
its cell; a notebook that hangs is stopped at its limit and its kernel (with
what it started) is killed; a kernel the image lacks, an R notebook on the R
builder, JUnit that parses, signals, and a hostile image whose "driver"
prints escapes, floods or hangs. Every run leaves nothing behind.
"""

from __future__ import annotations

import json
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.engine import Engine
from nbs2i.nbtest import START_GRACE
from nbs2i.nbtest.driver import RECORD_PREFIX
from nbs2i.restricted import http_request
from tests.support import registry
from tests.support.cli import Result, nbs2i
from tests.support.images import build_dockerfile, build_notebooks
from tests.support.leftovers import assert_a_signal_leaves_nothing, assert_nothing_left
from tests.support.notebooks import R, notebook, write_course
from tests.support.session import SESSION_ID, case_label, label_args, tag
from tests.support.tracker import Tracker

# Each notebook's limit: a kernel takes seconds to start on a busy machine.
TIMEOUT = 15.0
# What a time-out may take beyond its limit: killing the kernel, the report.
TIMEOUT_SLACK = 15.0
BASE = "debian:bookworm-slim"

# Proves that the kernel of the notebook that timed out is gone, with the
# process it had started: no other kernel and no `sleep 3600` is left.
NOTHING_LEFT_RUNNING = """\
import os
mine = {os.getpid(), os.getppid()}
left = []
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) not in mine:
        try:
            args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
        except OSError:
            continue
        if b'ipykernel_launcher' in args or b'3600' in args:
            left.append(args)
assert not left, left
"""
# A student's server: the seeded copy in HOME (the volume), its own folder,
# a random UID with GID 0 and a name, a read-only root.
AS_A_STUDENT = """\
import getpass, os
assert os.environ['HOME'] == '/home/jovyan', os.environ['HOME']
assert os.getcwd() == '/home/jovyan/week1', os.getcwd()
assert os.getuid() >= 1_000_000_000 and os.getgid() == 0
assert getpass.getuser() == 'jovyan'
open('written-by-the-test.txt', 'w').write('ok')
try:
    open('/opt/app-root/src/x', 'w')
except OSError as exc:
    assert exc.errno == 30, exc  # EROFS
else:
    raise AssertionError('the root is writable')
"""
COURSE = {
    "good.ipynb": notebook("x = 1 + 1", "assert x == 2"),
    "week1/broken.ipynb": notebook("import math", "y = 1 / 0\nprint(y)", "print('never')"),
    "week1/reads-data.ipynb": notebook("assert open('data/values.txt').read() == '1 2 3'"),
    "week1/as-a-student.ipynb": notebook(AS_A_STUDENT),
    "week1/data/values.txt": "1 2 3",
    "slow.ipynb": notebook("import subprocess", "subprocess.run(['sleep', '3600'])"),
    "zz-after-slow.ipynb": notebook(NOTHING_LEFT_RUNNING),
    "julia.ipynb": notebook("1 + 1", kernel=("julia-1.9", "julia")),
    ".ipynb_checkpoints/good-checkpoint.ipynb": notebook("raise SystemExit('a checkpoint ran')"),
    "drafts/notyet.ipynb": notebook("raise ValueError('a draft ran')"),
}


@dataclass(frozen=True)
class Run:
    result: Result
    seconds: float
    selector: str


def nbs2i_test(*args: str, timeout: float = 600) -> Run:
    """`nbs2i test ARGS`, timed as a user waits, its containers labelled for this run."""
    selector = case_label()
    started = time.monotonic()
    result = nbs2i("test", *args, *label_args(), "--label", selector, timeout=timeout)
    return Run(result, time.monotonic() - started, selector)


def cases(run: Run) -> dict[str, ET.Element]:
    root = ET.fromstring(run.result.stdout)
    return {c.get("name", ""): c for c in root.iter("testcase")}


@pytest.fixture(scope="module")
def course_image(
    engine: Engine, builder_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tracker = Tracker(engine)
    source = write_course(tmp_path_factory.mktemp("course"), COURSE)
    for image in build_notebooks(engine, source, tag("nbtest-course"), builder_image):
        tracker.image(image)
    yield tag("nbtest-course")
    tracker.cleanup()


@pytest.fixture(scope="module")
def full_run(course_image: str) -> Run:
    """The whole course but its drafts, as JUnit: one run that the tests below read."""
    args = (course_image, "--skip", "drafts", "--timeout", f"{TIMEOUT:g}", "--format", "junit")
    return nbs2i_test(*args, "-q")


def test_the_sample_notebooks_all_pass(engine: Engine, lecture_image: str) -> None:
    run = nbs2i_test(lecture_image, "--format", "json")
    assert run.result.code == 0, run.result.stderr + run.result.stdout
    report = json.loads(run.result.stdout)
    assert report["ok"] is True and report["summary"]["pass"] == 4
    assert [n["path"] for n in report["notebooks"]] == [
        "01-python-basics.ipynb",
        "02-reading-a-csv.ipynb",
        "03-plotting.ipynb",
        "04-random-walks.ipynb",
    ]
    assert all(n["ran_in"] == "/home/jovyan" for n in report["notebooks"])
    assert report["uid"] >= 1_000_000_000 and report["notebook_dir"] == "/opt/app-root/src"
    assert "==> PASS 03-plotting.ipynb" in run.result.stderr
    assert_nothing_left(engine, run.selector)


def test_a_broken_notebook_is_named_with_its_cell(engine: Engine, course_image: str) -> None:
    run = nbs2i_test(course_image, "good.ipynb", "week1", "-q")
    assert run.result.code == 1, run.result.stderr
    rows = {line.split()[1]: line for line in run.result.stdout.splitlines()[1:5]}
    assert rows["week1/broken.ipynb"].startswith("FAIL")
    assert rows["week1/broken.ipynb"].endswith(
        "cell 3 (y = 1 / 0): ZeroDivisionError: division by zero"
    )
    for passed in ("good.ipynb", "week1/reads-data.ipynb", "week1/as-a-student.ipynb"):
        assert rows[passed].startswith("PASS"), rows
    assert "1 of 4 notebooks did NOT pass" in run.result.stdout
    assert_nothing_left(engine, run.selector)


def test_junit_parses_with_the_right_counts(full_run: Run) -> None:
    assert full_run.result.code == 1, full_run.result.stderr
    suite = ET.fromstring(full_run.result.stdout).find("testsuite")
    assert suite is not None
    # good, julia, slow, week1 x3, zz-after-slow: no checkpoint, no draft.
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("7", "1", "2")
    found = cases(full_run)
    assert sorted(found) == sorted(
        p for p in COURSE if p.endswith(".ipynb") and not p.startswith((".", "drafts"))
    )
    no_kernel = found["julia.ipynb"].find("error")
    assert no_kernel is not None and no_kernel.get("type") == "error"
    assert "no kernel named 'julia-1.9' (the image has: python3)" in (no_kernel.text or "")


def test_a_notebook_that_hangs_times_out_and_its_kernel_is_killed(full_run: Run) -> None:
    found = cases(full_run)
    slow = found["slow.ipynb"]
    error = slow.find("error")
    assert error is not None and error.get("type") == "timeout"
    assert "cell 3 (subprocess.run(['sleep', '3600'])): no end within 15 s" in (error.text or "")
    assert "the kernel was killed" in (error.text or "")
    assert TIMEOUT <= float(slow.get("time", "0")) <= TIMEOUT + TIMEOUT_SLACK
    # The next notebook saw neither that kernel nor the sleep it started.
    after = found["zz-after-slow.ipynb"]
    assert after.find("failure") is None and after.find("error") is None
    assert full_run.seconds < 180, f"the course took {full_run.seconds:.0f} s"


def test_the_full_run_left_nothing(engine: Engine, full_run: Run) -> None:
    assert_nothing_left(engine, full_run.selector)


def test_an_r_notebook_runs_on_the_r_builder(
    engine: Engine, r_builder: str, tmp_path: Path, track: Tracker
) -> None:
    source = write_course(
        tmp_path / "r-course",
        {
            "stats.ipynb": notebook("x <- c(1, 2, 3)\nstopifnot(sum(x) == 6)", kernel=R),
            "broken.ipynb": notebook("1 + 1", "stop('broken on purpose')", kernel=R),
        },
    )
    for image in build_notebooks(engine, source, tag("nbtest-r"), r_builder):
        track.image(image)
    run = nbs2i_test(tag("nbtest-r"), "--format", "json", "-q")
    assert run.result.code == 1, run.result.stderr
    results = {n["path"]: n for n in json.loads(run.result.stdout)["notebooks"]}
    assert results["stats.ipynb"]["result"] == "pass"
    broken = results["broken.ipynb"]
    assert broken["result"] == "fail" and broken["cell"] == 3
    assert "broken on purpose" in broken["error"]
    assert_nothing_left(engine, run.selector)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_removes_everything(engine: Engine, course_image: str, signum: int) -> None:
    args = ["test", course_image, "slow.ipynb", "--timeout", "600", *label_args()]
    role = labels.ROLE_NOTEBOOK_TEST
    assert_a_signal_leaves_nothing(engine, args, case_label(), role, signum, 60)


# -- a hostile image: its "driver" prints what it likes --------------------------------

EVIL = "\x1b[2J\x1b]0;pwned\x07evil\x00\r\n</testcase>]]>&amp;.ipynb"


def records(*fields: dict[str, object]) -> bytes:
    return b"".join(RECORD_PREFIX.encode() + json.dumps(f).encode() + b"\n" for f in fields)


def plan(*paths: str) -> bytes:
    return records(
        *({"kind": "notebook", "path": p} for p in paths),
        {"kind": "planned", "count": len(paths), "root": "/c\x1b]0;t\x07", "home": "/h"},
    )


def hostile_image(engine: Engine, track: Tracker, name: str, script: str, out: bytes) -> str:
    """An image whose server Python is a shell script printing `out`, then `script`."""
    dockerfile = f"FROM {BASE}\nCOPY out /opt/out\nCOPY python /opt/jupyter/bin/python\n"
    python = f"#!/bin/sh\ncat /opt/out\n{script}\n".encode()
    return build_dockerfile(
        engine, track.image(tag(f"nbtest-{name}")), dockerfile, {"out": out, "python": python}
    )


ESCAPES = b"".join(
    [
        b"\x1b[2J\x1b]0;pwned\x07 noise\r\n\xff\xfe not utf-8\n",
        plan(EVIL, "ok.ipynb"),
        RECORD_PREFIX.encode() + b'{"kind": "result", "path": "ok.ipynb", "error": "\x1b"}\n',
        records(
            {
                "kind": "result",
                "path": EVIL,
                "status": "fail",
                "seconds": 1e308,
                "cell": True,
                "source": EVIL,
                "error": EVIL * 200,
            },
            {"kind": "result", "path": "ok.ipynb", "status": "pass", "seconds": -1},
            {"kind": "result", "path": "ghost.ipynb", "status": "fail"},
        ),
        RECORD_PREFIX.encode() + b"[" * 50_000 + b"\n",
        records({"kind": "done"}),
    ]
)


@pytest.mark.parametrize("fmt", ["table", "json", "junit"])
def test_escapes_from_the_image_cannot_break_the_report(
    engine: Engine, track: Tracker, fmt: str
) -> None:
    image = hostile_image(engine, track, "escapes", "", ESCAPES)
    run = nbs2i_test(image, "--format", fmt)
    assert run.result.code == 1, run.result.stderr
    for text in (run.result.stdout, run.result.stderr):
        assert not any(c in text for c in "\x1b\x07\x00\r"), repr(text[:300])
    if fmt == "json":
        found = json.loads(run.result.stdout)["notebooks"]
        assert [n["result"] for n in found] == ["fail", "pass"]
        assert found[0]["cell"] is None and found[0]["seconds"] == 0.0
        assert len(found[0]["error"]) <= 400 and "\\x1b[2J" in found[0]["path"]
    elif fmt == "junit":
        found = cases(run)
        assert len(found) == 2 and found["ok.ipynb"].find("failure") is None
        (evil,) = (case for name, case in found.items() if name != "ok.ipynb")
        assert evil.find("failure") is not None
    else:
        assert run.result.stdout.splitlines()[-1].endswith(")")
    assert_nothing_left(engine, run.selector)


def test_a_flood_is_cut_and_named(engine: Engine, track: Tracker) -> None:
    image = hostile_image(
        engine, track, "flood", "yes flood-flood-flood | head -c 67108864", plan("a.ipynb")
    )
    run = nbs2i_test(image, "--format", "json", timeout=180)
    assert run.result.code == 1, run.result.stderr
    (only,) = json.loads(run.result.stdout)["notebooks"]
    assert only["result"] == "error"
    assert only["error"] == "no result: the image printed more than 8 MiB"
    assert_nothing_left(engine, run.selector)


def test_an_endless_line_before_any_plan_is_exit_2(engine: Engine, track: Tracker) -> None:
    image = hostile_image(engine, track, "endless", "head -c 67108864 /dev/zero | tr '\\0' x", b"")
    run = nbs2i_test(image, timeout=180)
    assert run.result.code == 2, run.result.stderr
    assert "did not report its notebooks (it printed more than 8 MiB)" in run.result.error_line
    assert run.result.stdout == ""
    assert_nothing_left(engine, run.selector)


def test_a_driver_that_hangs_is_killed_at_the_run_limit(engine: Engine, track: Tracker) -> None:
    image = hostile_image(engine, track, "hang", "exec sleep 3600", plan("a.ipynb"))
    run = nbs2i_test(image, "--total-timeout", "1", "--format", "json", timeout=180)
    assert run.result.code == 1, run.result.stderr
    (only,) = json.loads(run.result.stdout)["notebooks"]
    assert only["result"] == "timeout"
    assert only["error"] == "the whole run's limit of 1 s was reached"
    assert run.seconds < 1 + START_GRACE + 30
    assert_nothing_left(engine, run.selector)


# -- nbs2i build --test --------------------------------------------------------------


def manifest_status(reg: registry.Registry, repository: str, tag_: str) -> int:
    path = f"/v2/{repository}/manifests/{tag_}"
    answer = http_request(reg.port, path, method="HEAD", headers={"Accept": registry.MANIFEST_V2})
    return answer.status


def test_build_test_fails_before_the_push_and_keeps_the_tag(
    engine: Engine, builder_image: str, tmp_path: Path, track: Tracker
) -> None:
    two = ("good.ipynb", "week1/broken.ipynb")
    broken = write_course(tmp_path / "broken", {k: COURSE[k] for k in two})
    good = write_course(tmp_path / "good", {"good.ipynb": COURSE["good.ipynb"]})
    build = ("--builder", builder_image, "--test", "--push", *label_args("--container-label"))
    with registry.running() as reg:
        name = f"nbs2i-test/nbtest-{SESSION_ID}"
        failed = nbs2i("build", str(broken), track.image(f"{reg.host}/{name}:broken"), *build)
        assert failed.code == 1, failed.stderr
        assert (
            "notebook week1/broken.ipynb failed at cell 3 (y = 1 / 0): "
            "ZeroDivisionError: division by zero: nothing was pushed;" in failed.error_line
        )
        assert "==> PASS good.ipynb" in failed.stderr
        assert engine.image_exists(f"{reg.host}/{name}:broken")  # kept, to look into
        assert manifest_status(reg, name, "broken") == 404

        passed = nbs2i("build", str(good), track.image(f"{reg.host}/{name}:good"), *build)
        assert passed.code == 0, passed.stderr
        pinned = track.image(passed.stdout.strip().splitlines()[-1])
        assert pinned == f"{reg.host}/{name}@{reg.manifest_digest(name, 'good')}"
        assert passed.stderr.index("==> PASS good.ipynb") < passed.stderr.index("Pushing")
    assert_nothing_left(engine)
