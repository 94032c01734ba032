"""`nbs2i verify` against the real engine: the builder and a sample build pass
every check; the command's options, formats, exit codes, signals and clean-up."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from nbs2i import labels
from nbs2i.engine import Engine
from nbs2i.verify import VerifyOptions, verify
from nbs2i.verify.checks import CATALOGUE, Status, VerifyReport
from nbs2i.verify.runtime import SETUPS
from tests.support.cli import Running, interrupt, nbs2i
from tests.support.images import build_dockerfile, derived
from tests.support.leftovers import assert_a_signal_leaves_nothing, assert_nothing_left
from tests.support.poll import until
from tests.support.session import LABELS, case_label, label_args, tag
from tests.support.tracker import Tracker

OPTIONS = VerifyOptions(labels=LABELS, start_timeout=90)
BASE = "debian:bookworm-slim"


def not_passed(report: VerifyReport) -> list[str]:
    return [f"{c.id}={c.status.value}: {c.evidence}" for c in report.checks if c.status != "pass"]


def test_builder_passes_every_check(engine: Engine, builder_image: str) -> None:
    started = time.monotonic()
    report = verify(engine, builder_image, OPTIONS)
    took = time.monotonic() - started
    assert [c.id for c in report.checks] == [spec.id for spec in CATALOGUE]
    assert not_passed(report) == []
    assert report.ok and report.uid is not None and report.uid >= 1_000_000_000
    assert report.setups == tuple(s.name for s in SETUPS)
    # Both runs were made and both are in the evidence of each runtime check.
    for check in report.checks:
        if check.category == "runtime":
            assert [p.setup for p in check.parts] == list(report.setups), check
            assert all(p.status is Status.PASS for p in check.parts), check
    assert f"UID {report.uid} is 'jovyan'" in report.get("user-named").evidence
    home = report.get("home-writable").parts
    assert "HOME /tmp/jovyan is writable" in home[0].evidence  # a bare pod: the fallback
    assert "HOME /home/jovyan (the empty group-0 volume)" in home[1].evidence
    assert took < 120, f"a full verify of the builder took {took:.0f} s"
    assert_nothing_left(engine)


@pytest.mark.matrix
def test_sample_build_passes_every_check(engine: Engine, sample_build: Any) -> None:
    report = verify(engine, sample_build.tag, OPTIONS)
    assert not_passed(report) == []
    # A built image is still an S2I image: its run script is where the label says.
    assert "image:///usr/libexec/s2i" in report.get("s2i-builder").evidence
    assert_nothing_left(engine)


def test_shell_form_cmd_under_tini_g_is_a_warning_that_agrees_with_the_runtime(
    engine: Engine, builder_image: str, track: Tracker
) -> None:
    """What upstream `s2i build --as-dockerfile` writes: `CMD /usr/libexec/s2i/run`
    under the builder's `tini -g`. Orphans are reaped and SIGTERM stops it, so
    init-pid1 warns instead of failing."""
    image = track.image(tag(f"verify-shell-cmd-{uuid.uuid4().hex[:6]}"))
    derived(engine, builder_image, image, "CMD /usr/libexec/s2i/run")
    report = verify(engine, image, OPTIONS)
    assert report.ok, not_passed(report)
    init = report.get("init-pid1")
    assert init.status is Status.WARN, init.evidence
    assert "tini -g -- /usr/libexec/s2i/entrypoint /bin/sh -c /usr/libexec/s2i/run" in (
        init.evidence
    )
    assert report.get("reaps-orphans").status is Status.PASS
    assert report.get("sigterm").status is Status.PASS


def test_cli_table_uid_and_exit_0(builder_image: str) -> None:
    result = nbs2i("verify", builder_image, "--uid", "1000680123", "-q", *label_args())
    assert result.code == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["RESULT", "CHECK", "EVIDENCE"]
    rows = {line.split()[1]: line.split()[0] for line in lines[1 : len(CATALOGUE) + 1]}
    assert rows == {spec.id: "PASS" for spec in CATALOGUE}
    assert "UID 1000680123:0" in lines[-1] and "ready for a restricted platform" in lines[-1]
    assert "no volume and volume on HOME: UID 1000680123 is 'jovyan'" in result.stdout
    assert result.stderr == ""


def test_cli_json_no_runtime(builder_image: str) -> None:
    result = nbs2i("verify", builder_image, "--no-runtime", "--format", "json", "-q", *label_args())
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["uid"] is None and data["setups"] == []
    by_id = {c["id"]: c for c in data["checks"]}
    assert set(by_id) == {spec.id for spec in CATALOGUE}
    for spec in CATALOGUE:
        expected = "skip" if spec.category == "runtime" else "pass"
        assert by_id[spec.id]["result"] == expected, by_id[spec.id]
        assert by_id[spec.id]["evidence"] and "\n" not in by_id[spec.id]["evidence"]


def test_cli_wrong_port_fails_starts_as_junit(builder_image: str) -> None:
    # Nothing listens on 9999 in the builder: `starts` fails within --timeout.
    args = ("--port", "9999", "--timeout", "4", "--format", "junit", "-q")
    result = nbs2i("verify", builder_image, *args, *label_args())
    assert result.code == 1, result.stderr
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    cases = {case.get("name", "").split(":")[0]: case for case in root.iter("testcase")}
    failure = cases["starts"].find("failure")
    assert failure is not None
    assert "no HTTP answer on port 9999 within 4 s" in failure.get("message", "")
    assert cases["user-numeric"].find("failure") is None
    suite = root.find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1


def test_reports_stay_well_formed_whatever_the_image_prints(engine: Engine, track: Tracker) -> None:
    """An image whose output (the evidence of `starts`) is full of control
    characters and XML: the JUnit report still parses, the JSON too."""
    # (\013 and \014 end a line for splitlines: the last line starts after them.)
    noise = r"\013\014 <&> ]]> \033[31mred\033[0m \000\001\002 \357\277\276"
    image = track.image(tag(f"verify-noise-{uuid.uuid4().hex[:6]}"))
    cmd = json.dumps(["sh", "-c", f"printf '{noise}\\n'; exit 3"])
    build_dockerfile(engine, image, f"FROM {BASE}\nENV HOME=/home/x\nCMD {cmd}\n")
    junit = nbs2i("verify", image, "--format", "junit", "-q", *label_args())
    assert junit.code == 1, junit.stderr
    root = ET.fromstring(junit.stdout.split("\n", 1)[1])
    starts = next(c for c in root.iter("testcase") if c.get("name", "").startswith("starts"))
    failure = starts.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert "exited with code 3: <&> ]]> \\x1b[31mred\\x1b[0m" in message
    assert message.endswith("\\ufffe")
    as_json = nbs2i("verify", image, "--format", "json", "-q", *label_args())
    data = json.loads(as_json.stdout)
    starts_json = next(c for c in data["checks"] if c["id"] == "starts")
    assert "\\x00\\x01\\x02" in starts_json["evidence"]
    assert_nothing_left(engine)


def test_cli_missing_image_is_exit_2_one_line() -> None:
    result = nbs2i("verify", tag("absent-never-built"), *label_args())
    assert result.code == 2
    assert result.stdout == ""
    line = result.error_line
    assert len(result.stderr.strip().splitlines()) == 1
    assert line.startswith("nbs2i: error: cannot examine") and "docker images" in line


# SIGTERM on every engine; the three on the host's.
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.matrix), signal.SIGHUP]
)
def test_a_signal_removes_everything(engine: Engine, builder_image: str, signum: int) -> None:
    args = ["verify", builder_image, *label_args()]
    assert_a_signal_leaves_nothing(engine, args, case_label(), labels.ROLE_VERIFY, signum, 90)


def test_a_second_signal_during_clean_up_leaves_nothing(engine: Engine, builder_image: str) -> None:
    selector = case_label()
    running = Running("verify", builder_image, *label_args(), "--label", selector)
    try:
        until(
            lambda: [c for c in engine.containers(labels=[selector]) if c.running],
            timeout=90,
            what="verify's runtime container running",
        )
        # Back to back: the second lands while the first one unwinds.
        running.signal(signal.SIGTERM)
        result = interrupt(running, signal.SIGHUP)
    finally:
        running.finish(timeout=30)
    assert result.code == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_left(engine, selector)


def test_plain_debian_fails_the_static_rules_it_breaks(engine: Engine) -> None:
    # A stock base image: root, no init, set-id binaries, no HOME in ENV.
    report = verify(engine, BASE, VerifyOptions(runtime=False, labels=LABELS))
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
    # /tmp, /var/tmp and /run/lock are 1777: sticky, /tmp-like, fine.
    assert status["no-world-writable"] is Status.PASS
    assert status["s2i-builder"] is Status.SKIP
    assert all(c.status is Status.SKIP for c in report.checks if c.category == "runtime")
    assert_nothing_left(engine)


def test_an_image_that_exits_fails_starts_and_skips_the_rest(engine: Engine) -> None:
    # debian's CMD is bash, which exits at once without a terminal.
    started = time.monotonic()
    report = verify(engine, BASE, VerifyOptions(start_timeout=20, labels=LABELS))
    assert time.monotonic() - started < 40
    starts = report.get("starts")
    assert starts.status is Status.FAIL and "container exited with code 0" in starts.evidence
    # No HOME in ENV: there is nowhere a platform would mount a volume.
    assert "volume on HOME: HOME is /: nowhere to mount a volume" in starts.evidence
    runtime = [c for c in report.checks if c.category == "runtime" and c.id != "starts"]
    assert runtime and all(c.status is Status.SKIP for c in runtime)
    assert_nothing_left(engine)
