"""A `VerifyReport` as text: a readable table, JSON, or JUnit XML for CI.

Whatever an image printed ends up in evidence; `examine.one_line` has already
made it one printable line, and the image name goes through it here too, so
every format stays well-formed (valid XML 1.0, valid JSON, no terminal
escapes in the table).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from nbs2i import defaults
from nbs2i.examine import junit_document, one_line
from nbs2i.verify.checks import CheckResult, Status, VerifyReport

_MARK = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.WARN: "WARN", Status.SKIP: "skip"}
_WORDS = (
    (Status.PASS, "passed"),
    (Status.FAIL, "failed"),
    (Status.WARN, "warned"),
    (Status.SKIP, "skipped"),
)


def summary(report: VerifyReport) -> str:
    counts = ", ".join(f"{report.count(s)} {word}" for s, word in _WORDS)
    who = f" as UID {report.uid}:0" if report.uid is not None else ""
    verdict = "NOT READY" if report.failed else "ready"
    took = f"{report.seconds:.1f} s"
    image = one_line(report.image)
    return f"{image}: {verdict} for a restricted platform ({counts}{who}, {took})"


def as_table(report: VerifyReport) -> str:
    width = max((len(c.id) for c in report.checks), default=10)
    lines = [f"{'RESULT':6}  {'CHECK':{width}}  EVIDENCE"]
    lines += [f"{_MARK[c.status]:6}  {c.id:{width}}  {c.evidence}" for c in report.checks]
    if report.setups:
        lines += ["", "runtime checks ran twice: " + "; ".join(report.setups)]
    lines += ["", summary(report)]
    return "\n".join(lines)


def _check_dict(check: CheckResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": check.id,
        "title": check.title,
        "category": check.category,
        "required": check.required,
        "result": check.status.value,
        "evidence": check.evidence,
        "seconds": check.seconds,
    }
    if check.parts:
        data["runs"] = [
            {
                "setup": p.setup,
                "result": p.status.value,
                "evidence": p.evidence,
                "seconds": p.seconds,
            }
            for p in check.parts
        ]
    return data


def as_dict(report: VerifyReport) -> dict[str, Any]:
    return {
        "image": one_line(report.image),
        "image_id": report.image_id,
        "uid": report.uid,
        "ok": report.ok,
        "seconds": report.seconds,
        "setups": list(report.setups),
        "summary": {s.value: report.count(s) for s in Status},
        "checks": [_check_dict(c) for c in report.checks],
    }


def as_json(report: VerifyReport) -> str:
    return json.dumps(as_dict(report), indent=2)


def _testcase(suite: ET.Element, check: CheckResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"nbs2i.verify.{check.category}",
        name=f"{check.id}: {check.title}",
        time=f"{check.seconds:.3f}",
    )
    if check.status is Status.FAIL:
        failure = ET.SubElement(case, "failure", message=check.evidence, type="fail")
        failure.text = check.evidence
    elif check.status is Status.SKIP:
        ET.SubElement(case, "skipped", message=check.evidence)
    out = ET.SubElement(case, "system-out")
    runs = [f"{p.setup}: {p.status.value}: {p.evidence}" for p in check.parts]
    out.text = "\n".join(runs or [f"{check.status.value}: {check.evidence}"])


def as_junit(report: VerifyReport) -> str:
    """One <testsuite> per run, one <testcase> per check. A warning passes
    (it is reported in system-out); a skip is <skipped/>; a failure <failure/>;
    each runtime setup's evidence is a line of system-out."""
    root = ET.Element("testsuites", name="nbs2i verify")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"nbs2i verify {one_line(report.image)}",
        tests=str(len(report.checks)),
        failures=str(report.count(Status.FAIL)),
        errors="0",
        skipped=str(report.count(Status.SKIP)),
        time=f"{report.seconds:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="image_id", value=report.image_id)
    if report.uid is not None:
        ET.SubElement(props, "property", name="uid", value=str(report.uid))
    for check in report.checks:
        _testcase(suite, check)
    root.set("tests", suite.get("tests", "0"))
    root.set("failures", suite.get("failures", "0"))
    return junit_document(root)


# The --format choices (defined once, in nbs2i.defaults) and their renderers.
FORMATS = defaults.REPORT_FORMATS
DEFAULT_FORMAT = defaults.REPORT_FORMAT
RENDERERS: dict[str, Callable[[VerifyReport], str]] = dict(
    zip(FORMATS, (as_table, as_json, as_junit), strict=True)
)


def render(report: VerifyReport, fmt: str = DEFAULT_FORMAT) -> str:
    return RENDERERS[fmt](report)
