"""`nbs2i build --json` stays a well-formed event stream, whatever happens.

CI reads stdout one JSON object a line. A failure, at any step, is an event
there (stderr keeps its one line); an interrupt too; and the repository's own
output (assemble prints what it likes: control characters, invalid UTF-8, a
line that looks like nbs2i's own "done" event) stays inside "output" events.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from nbs2i.engine import Docker
from tests.support.cli import Result
from tests.support.hostile import link, notebook_tree, write
from tests.support.sandbox import Sandbox
from tests.support.session import tag


def events(result: Result) -> list[dict[str, Any]]:
    """Every stdout line, each a JSON object with an "event" (else the test fails)."""
    found = []
    for line in result.stdout.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict) and "event" in event, line
        found.append(event)
    return found


def assert_error_event(result: Result) -> dict[str, Any]:
    assert result.code != 0
    found = events(result)
    assert found and found[-1]["event"] == "error", result.stdout
    error = found[-1]
    assert error["problem"] and error["fix"], error
    assert result.stderr.strip().splitlines()[-1].startswith("nbs2i: error: ")
    return error


def failing_cases(tmp_path: Path, builder: str) -> dict[str, tuple[str, list[str], dict[str, str]]]:
    src = notebook_tree(tmp_path / "src")
    linked = notebook_tree(tmp_path / "linked")
    link(linked, "notes.txt", "/etc/hostname")
    return {
        "bad-tag": (str(src), ["--builder", builder], {"tag": "Bad Tag"}),
        "no-builder": (
            str(src),
            ["--builder", "nbs2i-test/absent:0", "--pull-policy", "never"],
            {},
        ),
        "missing-source": (str(tmp_path / "nowhere"), ["--builder", builder], {}),
        "link-out": (str(linked), ["--builder", builder], {}),
        "assemble-fails": (str(src), ["--builder", builder, "-e", "TINY_FAIL=1"], {}),
    }


CASES = ["bad-tag", "no-builder", "missing-source", "link-out", "assemble-fails"]


@pytest.mark.parametrize("case", CASES)
def test_a_failing_build_emits_an_error_event(
    box: Sandbox, tiny_builder: str, tmp_path: Path, case: str
) -> None:
    source, options, special = failing_cases(tmp_path, tiny_builder)[case]
    image = special.get("tag") or box.image(tag("json-fail"))
    args = box.build_args(source, image, tiny_builder, *options, "--json")
    result = box.nbs2i(*args, timeout=120)
    error = assert_error_event(result)
    if case == "assemble-fails":
        # The failed script's last lines came as output events before the error.
        outputs = [e["message"] for e in events(result) if e["event"] == "output"]
        assert "failing line 30" in outputs, outputs
        assert "exit code 3" in error["problem"]


def test_an_interrupted_build_emits_an_event(
    box: Sandbox, tiny_builder: str, tmp_path: Path
) -> None:
    src = notebook_tree(tmp_path / "src")
    args = box.build_args(
        str(src), box.image(tag("json-int")), tiny_builder, "-e", "TINY_SLEEP=120", "--json"
    )
    run = box.running(*args)
    # With --json the progress is on stdout: wait there for assemble to sleep.
    run.wait_for("sleeping", timeout=60, stream="stdout")
    run.signal(signal.SIGTERM)
    result = run.finish(timeout=30)
    assert result.code == 130, result.stderr
    found = events(result)
    assert found[-1]["event"] in ("error", "interrupted"), found[-3:]


WEIRD = (
    b"plain line\n"
    b"\x1b[31mred\x1b[0m and a bell \x07\n"
    b"carriage\rreturn\n"
    b"invalid utf-8 \xff\xfe here\n"
    b'{"event": "done", "message": "Built evil/image", "image": "sha256:0"}\n'
    b"tab\tand unicode \xc3\xa9\xe2\x9c\x93\n"
)


def test_hostile_assemble_output_stays_inside_output_events(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path
) -> None:
    src = notebook_tree(tmp_path / "src")
    write(src, "weird.txt", WEIRD)
    image = box.image(tag("json-weird"))
    args = box.build_args(
        str(src), image, tiny_builder, "-e", "TINY_SHOW=/tmp/src/weird.txt", "--json"
    )
    result = box.nbs2i(*args, timeout=120)
    assert result.code == 0, result.stderr
    found = events(result)
    done = [e for e in found if e["event"] == "done"]
    assert len(done) == 1 and done[0]["image"] == engine.inspect_image(image).id, done
    outputs = "\n".join(e["message"] for e in found if e["event"] == "output")
    assert "Built evil/image" in outputs
    assert "\x1b[31mred" in outputs
