"""`nbs2i test` without an engine: which notebooks are selected, the options,
the driver's output read as hostile text, the report in its three formats,
and where `nbs2i build --test` sits in the build (before the push)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from nbs2i import nbtest, restricted
from nbs2i.building import build
from nbs2i.errors import Nbs2iError
from nbs2i.examine import OptionError
from nbs2i.nbtest.driver import (
    MAX_ERROR,
    MAX_NOTEBOOKS,
    MAX_SOURCE,
    RECORD_PREFIX,
    clean_pattern,
    first_line,
    hidden,
    matches,
    select,
)
from nbs2i.nbtest.options import NotebookTestOptions, check_options
from nbs2i.nbtest.results import NotebookResult, Reading, Status
from nbs2i.progress import lines
from tests.support.cli import nbs2i
from tests.support.fake_engine import FakeEngine
from tests.unit.test_build_orchestration import BUILDER, CONFIG, request

COURSE = [
    "01-intro.ipynb",
    "week1/a.ipynb",
    "week1/data/helper.ipynb",
    "week2/b.ipynb",
    "drafts/old.ipynb",
    "image-tests/check.ipynb",
    "notes.md",
]
HOSTILE = "\x1b[2J\x1b]0;pwned\x07evil\x00\r\nline two </failure>]]>&amp;"


# -- selection -----------------------------------------------------------------------


def test_every_notebook_by_default_in_order_and_never_hidden_ones() -> None:
    chosen, unmatched = select([*COURSE, ".ipynb_checkpoints/x.ipynb", "w/.hidden.ipynb"], [], [])
    assert chosen == sorted(p for p in COURSE if p.endswith(".ipynb"))
    assert unmatched == []


@pytest.mark.parametrize(
    ("include", "skip", "expected"),
    [
        (["week1"], [], ["week1/a.ipynb", "week1/data/helper.ipynb"]),
        (["week1/*.ipynb"], [], ["week1/a.ipynb", "week1/data/helper.ipynb"]),
        (["01-intro.ipynb", "week2"], [], ["01-intro.ipynb", "week2/b.ipynb"]),
        (
            [],
            ["drafts", "week1/data"],
            ["01-intro.ipynb", "image-tests/check.ipynb", "week1/a.ipynb", "week2/b.ipynb"],
        ),
        (["week1"], ["*/helper.ipynb"], ["week1/a.ipynb"]),
        (["image-tests"], [], ["image-tests/check.ipynb"]),
    ],
)
def test_include_and_skip_name_notebooks_folders_or_globs(
    include: list[str], skip: list[str], expected: list[str]
) -> None:
    assert select(COURSE, include, skip) == (expected, [])


def test_an_include_that_matches_nothing_is_named() -> None:
    assert select(COURSE, ["week3", "week1"], []) == (
        ["week1/a.ipynb", "week1/data/helper.ipynb"],
        ["week3"],
    )
    # A skipped notebook still counts as matched: the pattern was not a typo.
    assert select(COURSE, ["drafts"], ["drafts"]) == ([], [])


def test_patterns_are_cleaned_and_matching_is_case_sensitive() -> None:
    assert clean_pattern(" ./week1/ ") == "week1"
    assert clean_pattern("././a.ipynb") == "a.ipynb"
    assert matches("week1/a.ipynb", "week1") and not matches("week1/a.ipynb", "Week1")
    assert not matches("week10/a.ipynb", "week1")
    assert hidden(".ipynb_checkpoints/a.ipynb") and not hidden("a/b.ipynb")


def test_first_line_of_a_cell_is_its_first_non_blank_line_cut() -> None:
    assert first_line("\n\n  x = 1 / 0  \ny = 2") == "x = 1 / 0"
    assert first_line("") == ""
    assert len(first_line("z" * 500)) == MAX_SOURCE


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (NotebookTestOptions(uid=0), "refusing to run as UID 0"),
        (NotebookTestOptions(uid=2**31), "out of range"),
        (NotebookTestOptions(timeout=0), "--timeout 0 is not a positive"),
        (NotebookTestOptions(timeout=float("nan")), "--timeout nan"),
        (NotebookTestOptions(total_timeout=-1), "--total-timeout -1"),
        (NotebookTestOptions(include=("/etc/passwd",)), "not a path inside the course"),
        (NotebookTestOptions(skip=("../up",)), "not a path inside the course"),
        (NotebookTestOptions(include=("./",)), "not a path inside the course"),
        (NotebookTestOptions(include=("a\x1bb",)), "control characters"),
        (NotebookTestOptions(include=("x" * 600,)), "too long"),
        (NotebookTestOptions(include=("a",) * 101), "101 --include patterns"),
    ],
)
def test_bad_options_are_exit_2(options: NotebookTestOptions, message: str) -> None:
    with pytest.raises(OptionError, match=message) as exc:
        check_options(options)
    assert exc.value.exit_code == 2


def test_good_options_come_back_cleaned() -> None:
    given = NotebookTestOptions(include=("./week1/",), skip=("drafts/",), uid=restricted.UID_MIN)
    assert check_options(given) == replace(given, include=("week1",), skip=("drafts",))


def test_the_driver_goes_as_arguments_to_the_server_python() -> None:
    command = nbtest.driver_command("/opt/app-root/src", NotebookTestOptions(include=("a",)))
    python, isolated, dash_c, source, config = command
    assert (python, isolated, dash_c) == ("/opt/jupyter/bin/python", "-I", "-c")
    compile(source, "driver", "exec")
    assert json.loads(config) == {
        "root": "/opt/app-root/src",
        "include": ["a"],
        "skip": [],
        "timeout": 300.0,
        "total": 3600.0,
    }
    # The entrypoint treats an argument ending like an S2I script as a build step.
    assert not any(arg.endswith(("/assemble", "/usage", "/save-artifacts")) for arg in command)
    assert "/assemble;" not in source


# -- reading the driver's output ------------------------------------------------------


def record(**fields: object) -> str:
    return RECORD_PREFIX + json.dumps(fields)


def planned(*paths: str) -> Reading:
    reading = Reading()
    for path in paths:
        reading.feed(record(kind="notebook", path=path))
    reading.feed(record(kind="planned", count=len(paths), root="/opt/app-root/src", home="/h"))
    return reading


def test_records_make_results_in_plan_order() -> None:
    reading = planned("b.ipynb", "a.ipynb")
    fail = record(
        kind="result",
        path="a.ipynb",
        status="fail",
        seconds=1.234,
        cell=3,
        source="x = 1 / 0",
        error="ZeroDivisionError: division by zero",
        ran_in="/h",
    )
    found = reading.feed(fail)
    assert found == NotebookResult(
        "a.ipynb", Status.FAIL, 1.23, 3, "x = 1 / 0", "ZeroDivisionError: division by zero", "/h"
    )
    reading.feed(record(kind="result", path="b.ipynb", status="pass", seconds=2))
    reading.feed(record(kind="done"))
    results = reading.notebooks(Status.ERROR, "never")
    assert [r.path for r in results] == ["b.ipynb", "a.ipynb"]
    assert results[0].status is Status.PASS and reading.done and reading.home == "/h"


def test_what_the_image_makes_up_is_ignored_or_cut() -> None:
    reading = planned("a.ipynb", HOSTILE)
    before = reading.feed(record(kind="result", path="zzz.ipynb", status="pass"))
    assert before is None and "zzz.ipynb" not in reading.results  # not in the plan
    assert reading.feed(record(kind="result", path="a.ipynb", status="bogus")) is None
    assert reading.feed(record(kind="notebook", path="late.ipynb")) is None
    assert "late.ipynb" not in reading.planned  # the plan was complete
    weird = record(
        kind="result",
        path=HOSTILE,
        status="fail",
        seconds=1e308,
        cell=True,
        source=HOSTILE * 50,
        error=HOSTILE * 500,
    )
    found = reading.feed(weird)
    assert found is not None and found.cell is None and found.seconds == 0.0
    for text in (found.path, found.source, found.error):
        assert text.isprintable() and "\x1b" not in text
    assert len(found.source) <= MAX_SOURCE and len(found.error) <= MAX_ERROR
    # The first result for a notebook stands.
    assert reading.feed(record(kind="result", path=HOSTILE, status="pass")) is None
    for value in (float("nan"), -5, "3", [1]):
        again = planned("n.ipynb")
        result = again.feed(
            RECORD_PREFIX
            + json.dumps({"kind": "result", "path": "n.ipynb", "status": "pass", "seconds": value})
        )
        assert result is not None and result.seconds == 0.0


@pytest.mark.parametrize(
    "line",
    [
        "plain noise",
        RECORD_PREFIX + "{not json",
        RECORD_PREFIX + "[" * 100_000,
        RECORD_PREFIX + "1" * 10_000,
        RECORD_PREFIX + '"a string"',
        RECORD_PREFIX + '{"kind": ["list"]}',
        "\x1b[31m" + RECORD_PREFIX + '{"kind": "done"}',
    ],
)
def test_lines_that_are_not_records_are_noise(line: str) -> None:
    reading = Reading()
    assert reading.feed(line) is None
    assert not reading.done and not reading.plan_done
    assert reading.last_noise.isprintable()


def test_noise_keeps_only_its_last_lines_and_the_first_fatal_wins() -> None:
    reading = Reading()
    for i in range(100):
        reading.feed(f"line {i} " + "y" * 1000)
    assert len(reading.noise) == 5 and reading.last_noise.startswith("line 99")
    assert len(reading.last_noise) <= 300
    reading.feed(record(kind="fatal", error="ModuleNotFoundError: No module named 'nbclient'"))
    reading.feed(record(kind="fatal", error="second"))
    assert reading.fatal == "ModuleNotFoundError: No module named 'nbclient'"


def test_the_plan_is_bounded() -> None:
    reading = planned(*(f"{i}.ipynb" for i in range(MAX_NOTEBOOKS + 50)), "", "x" * 5000)
    assert len(reading.planned) == MAX_NOTEBOOKS


def test_unreported_notebooks_get_what_the_run_says() -> None:
    reading = planned("a.ipynb", "b.ipynb")
    reading.feed(record(kind="result", path="a.ipynb", status="pass"))
    missing = reading.notebooks(Status.TIMEOUT, "the whole run's limit of 9 s was reached")
    assert missing[1] == NotebookResult(
        "b.ipynb", Status.TIMEOUT, error="the whole run's limit of 9 s was reached"
    )


def test_lines_cut_a_line_without_end_and_keep_the_next() -> None:
    chunks = [b"short\n", b"x" * 40, b"x" * 40, b"x" * 40 + b"\nafter\n", b"tail"]
    assert list(lines(chunks, limit=50)) == ["short", "x" * 50, "after", "tail"]
    assert list(lines([b"a\r\nb"])) == ["a", "b"]
    assert list(lines([b"\xff\xfe\n"])) == ["\ufffd\ufffd"]


# -- how a run ended -------------------------------------------------------------------

ENDED = nbtest.Ending(exit_code=0, killed_at_limit=False, flooded=False)
DEFAULTS = NotebookTestOptions()


@pytest.mark.parametrize(
    ("lines_", "ending", "message"),
    [
        (
            [record(kind="fatal", error="ModuleNotFoundError: No module named 'nbclient'")],
            ENDED,
            "cannot run the notebooks of img: ModuleNotFoundError: No module named 'nbclient'",
        ),
        (
            ["sh: 1: exec: /opt/jupyter/bin/python: not found"],
            replace(ENDED, exit_code=127),
            "img did not report its notebooks (exit code 127: sh: 1: exec: /opt/jupyter/bin/",
        ),
        (
            ["x" * 100],
            replace(ENDED, flooded=True),
            "img did not report its notebooks (it printed more than 8 MiB)",
        ),
        (
            [],
            replace(ENDED, exit_code=None, killed_at_limit=True),
            "img did not report its notebooks (no plan within 3630 s)",
        ),
        (
            [record(kind="planned", count=0, root="/opt/app-root/src", home="/h")],
            ENDED,
            "no notebook of img to run in /opt/app-root/src, outside hidden folders",
        ),
    ],
)
def test_a_run_that_could_not_examine_the_notebooks_is_exit_2(
    lines_: list[str], ending: nbtest.Ending, message: str
) -> None:
    reading = Reading()
    for line in lines_:
        reading.feed(line)
    with pytest.raises(Nbs2iError) as exc:
        nbtest.judge_plan("img", reading, ending, DEFAULTS)
    assert exc.value.exit_code == 2 and message in str(exc.value)


def test_an_include_that_matched_nothing_is_an_option_error() -> None:
    reading = planned()
    reading.unmatched.append("week3")
    with pytest.raises(OptionError, match="no notebook of img matches 'week3'"):
        nbtest.judge_plan("img", reading, ENDED, DEFAULTS)


@pytest.mark.parametrize(
    ("ending", "fatal", "expected"),
    [
        (
            replace(ENDED, flooded=True),
            "",
            (Status.ERROR, "no result: the image printed more than 8 MiB"),
        ),
        (
            replace(ENDED, killed_at_limit=True),
            "",
            (Status.TIMEOUT, "the whole run's limit of 3600 s was reached"),
        ),
        (
            replace(ENDED, exit_code=137),
            "",
            (Status.ERROR, "no result: the run ended with exit code 137: last words"),
        ),
        (ENDED, "KeyError: 'x'", (Status.ERROR, "no result: the run stopped: KeyError: 'x'")),
    ],
)
def test_what_an_unreported_notebook_gets(
    ending: nbtest.Ending, fatal: str, expected: tuple[Status, str]
) -> None:
    reading = planned("a.ipynb")
    reading.feed("last words")
    if fatal:
        reading.feed(record(kind="fatal", error=fatal))
    nbtest.judge_plan("img", reading, ending, DEFAULTS)  # a plan came: examinable
    assert nbtest.missing_result(ending, reading, DEFAULTS) == expected


# -- build --test: before the push ----------------------------------------------------


def test_a_failing_notebook_stops_the_build_before_the_push(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = FakeEngine()
    engine.add_image(BUILDER, CONFIG, ("sha256:base1", "sha256:base2"))
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.ipynb").write_text("{}")
    seen: list[tuple[str, bool]] = []

    def failing(engine_: object, tag: str, options: object, pushing: bool, report_: object) -> None:
        seen.append((tag, tag in engine.store))
        raise nbtest.NotebooksFailed("notebook a.ipynb failed at cell 1", "nothing was pushed")

    monkeypatch.setattr(nbtest, "gate", failing)
    with pytest.raises(nbtest.NotebooksFailed, match=r"a\.ipynb failed at cell 1"):
        build(engine, request(course, push=True, test=NotebookTestOptions()))
    assert seen == [("class/w1:1", True)]  # after the tag moved: kept to look into
    assert "push" not in engine.calls

    monkeypatch.setattr(nbtest, "gate", lambda *args: seen.append(("passed", True)))
    build(engine, request(course, push=True, test=NotebookTestOptions()))
    assert seen[-1] == ("passed", True) and engine.calls[-1] == "push"


def test_build_test_options_are_checked_before_anything_slow(tmp_path: Path) -> None:
    from nbs2i.building.request import BuildRequest, check

    bad = BuildRequest(source=str(tmp_path), tag="a/b:1", test=NotebookTestOptions(timeout=-1))
    with pytest.raises(OptionError, match="--timeout -1"):
        check(bad)


# -- the command line ------------------------------------------------------------------

UNREACHABLE = {"DOCKER_HOST": "tcp://127.0.0.1:1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0"], "--timeout 0 is not a positive number"),
        (["--total-timeout", "-3"], "--total-timeout -3 is not a positive number"),
        (["/abs.ipynb"], "'/abs.ipynb' is not a path inside the course"),
        (["--skip", "../x"], "--skip '../x' is not a path inside the course"),
        (["--uid", "0"], "refusing to run as UID 0"),
    ],
)
def test_cli_bad_values_fail_before_the_engine_is_asked(args: list[str], message: str) -> None:
    result = nbs2i("test", "img", *args, env=UNREACHABLE, timeout=120)
    assert result.code == 2
    assert message in result.error_line and "engine" not in result.stderr


def test_cli_engine_down_and_usage_errors_are_exit_2() -> None:
    down = nbs2i("test", "img", env=UNREACHABLE, timeout=120)
    assert down.code == 2 and down.error_line.startswith("nbs2i: error: no Docker engine answers")
    bad_format = nbs2i("test", "img", "--format", "xml", env=UNREACHABLE)
    assert bad_format.code == 2 and "'xml' is not one of" in bad_format.stderr
    dockerfile = nbs2i("build", ".", "a/b:1", "--test", "--as-dockerfile", "out", env=UNREACHABLE)
    assert dockerfile.code == 2 and "--test runs an image" in dockerfile.stderr
