"""`nbs2i verify` against the real engine: the builder and a sample build pass
every check; the command's options, formats, exit codes and clean-up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

from nbs2i.checks import CATALOGUE, Status, VerifyReport
from nbs2i.engine import Engine
from nbs2i.verify import RUN_LABEL, VerifyOptions, verify
from tests.conftest import SESSION_FILTER, TEST_LABELS, Tracker
from tests.engine.run_support import builder, sample_image

LABEL_ARGS = [arg for k, v in TEST_LABELS.items() for arg in ("--label", f"{k}={v}")]
OPTIONS = VerifyOptions(labels=TEST_LABELS, start_timeout=90)


def nbs2i(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NBS2I_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "nbs2i", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def not_passed(report: VerifyReport) -> list[str]:
    return [f"{c.id}={c.status.value}: {c.evidence}" for c in report.checks if c.status != "pass"]


def assert_nothing_left(engine: Engine, selector: str) -> None:
    assert engine.containers(labels=[selector]) == []


@pytest.fixture(scope="module")
def builder_ref(request: pytest.FixtureRequest) -> str:
    return builder(request)


def test_builder_passes_every_check(engine: Engine, builder_ref: str) -> None:
    started = time.monotonic()
    report = verify(engine, builder_ref, OPTIONS)
    took = time.monotonic() - started
    assert [c.id for c in report.checks] == [spec.id for spec in CATALOGUE]
    assert not_passed(report) == []
    assert report.ok and report.uid is not None and report.uid >= 1_000_000_000
    assert f"UID {report.uid} is 'jovyan'" in report.get("user-named").evidence
    assert took < 120, f"a full verify of the builder took {took:.0f} s"
    assert_nothing_left(engine, SESSION_FILTER)


def test_sample_build_passes_every_check(
    request: pytest.FixtureRequest, engine: Engine, session_tracker: Tracker
) -> None:
    image = sample_image(request, engine, session_tracker)
    report = verify(engine, image, OPTIONS)
    assert not_passed(report) == []
    # A built image is still an S2I image: its run script is where the label says.
    assert "image:///usr/libexec/s2i" in report.get("s2i-builder").evidence
    assert_nothing_left(engine, SESSION_FILTER)


def test_cli_table_uid_and_exit_0(builder_ref: str) -> None:
    result = nbs2i(builder_ref, "--uid", "1000680123", "-q", *LABEL_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["RESULT", "CHECK", "EVIDENCE"]
    rows = {line.split()[1]: line.split()[0] for line in lines[1 : len(CATALOGUE) + 1]}
    assert rows == {spec.id: "PASS" for spec in CATALOGUE}
    assert "UID 1000680123:0" in lines[-1] and "ready for a restricted platform" in lines[-1]
    assert "UID 1000680123 is 'jovyan'" in result.stdout
    assert result.stderr == ""


def test_cli_json_no_runtime(builder_ref: str) -> None:
    result = nbs2i(builder_ref, "--no-runtime", "--format", "json", "-q", *LABEL_ARGS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["uid"] is None
    by_id = {c["id"]: c for c in data["checks"]}
    assert set(by_id) == {spec.id for spec in CATALOGUE}
    for spec in CATALOGUE:
        expected = "skip" if spec.category == "runtime" else "pass"
        assert by_id[spec.id]["result"] == expected, by_id[spec.id]
        assert by_id[spec.id]["evidence"] and "\n" not in by_id[spec.id]["evidence"]


def test_cli_wrong_port_fails_starts_as_junit(builder_ref: str) -> None:
    # Nothing listens on 9999 in the builder: `starts` fails within --timeout.
    result = nbs2i(
        builder_ref, "--port", "9999", "--timeout", "4", "--format", "junit", "-q", *LABEL_ARGS
    )
    assert result.returncode == 1, result.stderr
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    cases = {case.get("name", "").split(":")[0]: case for case in root.iter("testcase")}
    assert cases["starts"].find("failure") is not None
    assert "no HTTP answer on port 9999 within 4 s" in cases["starts"].find("failure").get(
        "message", ""
    )
    assert cases["user-numeric"].find("failure") is None
    suite = root.find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1


def test_cli_missing_image_is_exit_2_one_line(engine: Engine) -> None:
    result = nbs2i("nbs2i-test/absent:never", *LABEL_ARGS)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbs2i: error: cannot examine"), result.stderr
    assert "docker images" in lines[0]


def test_ctrl_c_removes_everything(engine: Engine, builder_ref: str) -> None:
    case = uuid.uuid4().hex[:10]
    selector = f"nbs2i.test.case={case}"
    env = {k: v for k, v in os.environ.items() if k != "NBS2I_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbs2i", "verify", builder_ref, *LABEL_ARGS, "--label", selector],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # Wait (bounded) until the runtime container is up, then press Ctrl-C.
        deadline = time.monotonic() + 90
        seen = []
        while time.monotonic() < deadline and proc.poll() is None:
            seen = [c for c in engine.containers(labels=[selector]) if c["State"] == "running"]
            if seen:
                break
            time.sleep(0.2)
        assert seen, "verify never started its container"
        assert all(RUN_LABEL in c["Labels"] for c in seen)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert engine.containers(labels=[selector]) == []


def test_status_values_are_stable() -> None:
    # Dashboards key on these strings.
    assert [s.value for s in Status] == ["pass", "fail", "warn", "skip"]


def test_plain_debian_fails_the_static_rules_it_breaks(engine: Engine) -> None:
    # A stock base image: root, no init, set-id binaries, no HOME in ENV.
    report = verify(
        engine, "debian:bookworm-slim", VerifyOptions(runtime=False, labels=TEST_LABELS)
    )
    status = {c.id: c.status for c in report.checks}
    assert status["user-numeric"] is Status.FAIL and status["user-not-root"] is Status.FAIL
    assert status["init-pid1"] is Status.FAIL
    assert status["no-setuid"] is Status.FAIL
    # Debian's shadow/util-linux tools, in archive order, with their modes.
    assert re.match(
        r"\d+ set-id files: /usr/bin/chage \(2755\), /usr/bin/chfn \(4755\)",
        report.get("no-setuid").evidence,
    ), report.get("no-setuid").evidence
    assert status["home-group-writable"] is Status.FAIL
    assert status["passwd-not-writable"] is Status.PASS
    assert status["s2i-builder"] is Status.SKIP
    assert all(c.status is Status.SKIP for c in report.checks if c.category == "runtime")
    assert_nothing_left(engine, SESSION_FILTER)


def test_an_image_that_exits_fails_starts_and_skips_the_rest(engine: Engine) -> None:
    # debian's CMD is bash, which exits at once without a terminal.
    started = time.monotonic()
    report = verify(
        engine, "debian:bookworm-slim", VerifyOptions(start_timeout=20, labels=TEST_LABELS)
    )
    assert time.monotonic() - started < 30
    starts = report.get("starts")
    assert starts.status is Status.FAIL and "container exited with code 0" in starts.evidence
    runtime = [c for c in report.checks if c.category == "runtime" and c.id != "starts"]
    assert runtime and all(c.status is Status.SKIP for c in runtime)
    assert_nothing_left(engine, SESSION_FILTER)
