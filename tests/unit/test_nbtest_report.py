"""`nbs2i test`'s report without an engine: the table, JSON and JUnit, the
lines a build and the progress print, also fed what a hostile image printed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from nbs2i.nbtest.report import as_json, as_junit, as_table, first_failure, progress_line, render
from nbs2i.nbtest.results import NotebookReport, NotebookResult, Status
from tests.unit.test_nbtest import HOSTILE, planned, record

# -- the report ----------------------------------------------------------------------


def report(*notebooks: NotebookResult, image: str = "class/w1:1") -> NotebookReport:
    return NotebookReport(
        image=image,
        image_id="sha256:" + "0" * 64,
        uid=1000680000,
        notebook_dir="/opt/app-root/src",
        home="/home/jovyan",
        notebooks=notebooks,
        seconds=12.5,
        timeout=300.0,
        total_timeout=3600.0,
    )


MIXED = report(
    NotebookResult("01-intro.ipynb", Status.PASS, 1.5),
    NotebookResult(
        "week1/broken.ipynb",
        Status.FAIL,
        0.8,
        3,
        "y = 1 / 0",
        "ZeroDivisionError: division by zero",
    ),
    NotebookResult("slow.ipynb", Status.TIMEOUT, 5.1, 2, "time.sleep(600)", "no end within 5 s"),
    NotebookResult("julia.ipynb", Status.ERROR, 0.1, error="no kernel named 'julia-1.9'"),
)


def test_the_table_names_each_notebook_and_the_failing_cell() -> None:
    table = as_table(MIXED)
    assert "FAIL     week1/broken.ipynb" in table
    assert "cell 3 (y = 1 / 0): ZeroDivisionError: division by zero" in table
    assert "TIMEOUT  slow.ipynb" in table and "ERROR    julia.ipynb" in table
    assert table.splitlines()[-1] == (
        "class/w1:1: 3 of 4 notebooks did NOT pass (1 passed, 1 failed, 1 timed out, "
        "1 could not start; as UID 1000680000:0, 12.5 s)"
    )
    assert not MIXED.ok and report(NotebookResult("a.ipynb", Status.PASS)).ok


def test_json_carries_every_field() -> None:
    data = json.loads(as_json(MIXED))
    assert data["ok"] is False and data["summary"] == {
        "pass": 1,
        "fail": 1,
        "timeout": 1,
        "error": 1,
    }
    broken = data["notebooks"][1]
    assert broken["result"] == "fail" and broken["cell"] == 3 and broken["source"] == "y = 1 / 0"
    assert render(MIXED, "json") == as_json(MIXED)


def test_junit_counts_failures_and_errors() -> None:
    root = ET.fromstring(as_junit(MIXED))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [n.path for n in MIXED.notebooks]
    failure = cases[1].find("failure")
    assert failure is not None and "cell 3 (y = 1 / 0)" in (failure.get("message") or "")
    timeout = cases[2].find("error")
    assert timeout is not None and timeout.get("type") == "timeout"
    assert cases[0].find("failure") is None and cases[0].find("error") is None


def test_every_format_survives_what_an_image_printed() -> None:
    reading = planned(HOSTILE)
    reading.feed(
        record(kind="result", path=HOSTILE, status="fail", cell=1, source=HOSTILE, error=HOSTILE)
    )
    hostile = report(*reading.notebooks(Status.ERROR, "x"), image="img\x1b[2J:1")
    for fmt in ("table", "json", "junit"):
        text = render(hostile, fmt)
        assert "\x1b" not in text and "\x00" not in text and "\x07" not in text and "\r" not in text
    ET.fromstring(as_junit(hostile))
    assert json.loads(as_json(hostile))["notebooks"][0]["error"].isprintable()


def test_the_build_line_names_the_first_notebook_and_cell() -> None:
    assert first_failure(MIXED) == (
        "notebook week1/broken.ipynb failed at cell 3 (y = 1 / 0): "
        "ZeroDivisionError: division by zero (and 2 more of 4)"
    )
    alone = report(MIXED.notebooks[3])
    assert first_failure(alone) == "notebook julia.ipynb did not run: no kernel named 'julia-1.9'"
    assert progress_line(MIXED.notebooks[0]) == "PASS 01-intro.ipynb (1.5 s)"
