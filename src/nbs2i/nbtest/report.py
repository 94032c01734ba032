"""A `NotebookReport` as text: a readable table, JSON, or JUnit XML for CI.

Every string in a report came through `results`, cut and made one printable
line, and the image name goes through `one_line` here, so every format stays
well-formed whatever the image printed. The formats are `nbs2i verify`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from nbs2i import defaults
from nbs2i.examine import junit_document, one_line
from nbs2i.nbtest.results import NotebookReport, NotebookResult, Status

_MARK = {
    Status.PASS: "PASS",
    Status.FAIL: "FAIL",
    Status.TIMEOUT: "TIMEOUT",
    Status.ERROR: "ERROR",
}
_WORDS = (
    (Status.PASS, "passed"),
    (Status.FAIL, "failed"),
    (Status.TIMEOUT, "timed out"),
    (Status.ERROR, "could not start"),
)


def detail(result: NotebookResult) -> str:
    """Where and why a notebook did not pass: `cell 3 (x = 1 / 0): ZeroDivisionError: ...`."""
    if result.status is Status.PASS:
        return ""
    where = ""
    if result.cell is not None:
        quoted = f" ({result.source})" if result.source else ""
        where = f"cell {result.cell}{quoted}: "
    return f"{where}{result.error}"


def progress_line(result: NotebookResult) -> str:
    """One line as a notebook ends."""
    why = detail(result)
    line = f"{_MARK[result.status]} {result.path} ({result.seconds:.1f} s)"
    return f"{line}: {why}" if why else line


def first_failure(report: NotebookReport) -> str:
    """The line a failed `nbs2i build --test` ends with."""
    first, *others = report.failed
    more = f" (and {len(others)} more of {len(report.notebooks)})" if others else ""
    verb = {Status.FAIL: "failed at", Status.TIMEOUT: "timed out in"}.get(first.status, "")
    if first.cell is not None and verb:
        quoted = f" ({first.source})" if first.source else ""
        return f"notebook {first.path} {verb} cell {first.cell}{quoted}: {first.error}{more}"
    return f"notebook {first.path} did not run: {first.error}{more}"


def summary(report: NotebookReport) -> str:
    counts = ", ".join(f"{report.count(s)} {word}" for s, word in _WORDS)
    total = len(report.notebooks)
    verdict = (
        f"all {total} notebooks passed"
        if report.ok
        else f"{len(report.failed)} of {total} notebooks did NOT pass"
    )
    took = f"{report.seconds:.1f} s"
    return f"{one_line(report.image)}: {verdict} ({counts}; as UID {report.uid}:0, {took})"


def as_table(report: NotebookReport) -> str:
    width = max((len(n.path) for n in report.notebooks), default=8)
    lines = [f"{'RESULT':7}  {'NOTEBOOK':{width}}  {'TIME':>8}  DETAIL"]
    lines += [
        f"{_MARK[n.status]:7}  {n.path:{width}}  {n.seconds:>6.1f} s  {detail(n)}".rstrip()
        for n in report.notebooks
    ]
    lines += ["", summary(report)]
    return "\n".join(lines)


def _notebook_dict(result: NotebookResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "result": result.status.value,
        "seconds": result.seconds,
        "cell": result.cell,
        "source": result.source,
        "error": result.error,
        "ran_in": result.ran_in,
    }


def as_dict(report: NotebookReport) -> dict[str, Any]:
    return {
        "image": one_line(report.image),
        "image_id": report.image_id,
        "uid": report.uid,
        "ok": report.ok,
        "seconds": report.seconds,
        "notebook_dir": report.notebook_dir,
        "home": report.home,
        "timeout": report.timeout,
        "total_timeout": report.total_timeout,
        "summary": {s.value: report.count(s) for s in Status},
        "notebooks": [_notebook_dict(n) for n in report.notebooks],
    }


def as_json(report: NotebookReport) -> str:
    return json.dumps(as_dict(report), indent=2)


def as_junit(report: NotebookReport) -> str:
    """One <testsuite>, one <testcase> per notebook: a failing cell is a
    <failure/>, a time-out or a notebook that could not start an <error/>."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="nbs2i test")
    failures = report.count(Status.FAIL)
    errors = report.count(Status.TIMEOUT) + report.count(Status.ERROR)
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"nbs2i test {one_line(report.image)}",
        tests=str(len(report.notebooks)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="image_id", value=report.image_id)
    ET.SubElement(props, "property", name="uid", value=str(report.uid))
    for notebook in report.notebooks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="nbs2i.test",
            name=notebook.path,
            time=f"{notebook.seconds:.3f}",
        )
        if notebook.status is not Status.PASS:
            tag = "failure" if notebook.status is Status.FAIL else "error"
            element = ET.SubElement(case, tag, message=detail(notebook), type=notebook.status.value)
            element.text = detail(notebook)
    root.set("tests", str(len(report.notebooks)))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    return junit_document(root)


# The --format choices (defined once, in nbs2i.defaults) and their renderers.
FORMATS = defaults.REPORT_FORMATS
RENDERERS: dict[str, Callable[[NotebookReport], str]] = dict(
    zip(FORMATS, (as_table, as_json, as_junit), strict=True)
)


def render(report: NotebookReport, fmt: str = defaults.REPORT_FORMAT) -> str:
    return RENDERERS[fmt](report)
