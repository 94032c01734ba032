"""A `VerifyReport` as text: a readable table, JSON, or JUnit XML for CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from nbs2i.checks import Status, VerifyReport

FORMATS = ("table", "json", "junit")
_MARK = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.WARN: "WARN", Status.SKIP: "skip"}


def summary(report: VerifyReport) -> str:
    counts = ", ".join(
        f"{report.count(s)} {word}"
        for s, word in (
            (Status.PASS, "passed"),
            (Status.FAIL, "failed"),
            (Status.WARN, "warned"),
            (Status.SKIP, "skipped"),
        )
    )
    who = f" as UID {report.uid}:0" if report.uid is not None else ""
    verdict = "NOT READY" if report.failed else "ready"
    took = f"{report.seconds:.1f} s"
    return f"{report.image}: {verdict} for a restricted platform ({counts}{who}, {took})"


def as_table(report: VerifyReport) -> str:
    width = max(len(c.id) for c in report.checks) if report.checks else 10
    lines = [f"{'RESULT':6}  {'CHECK':{width}}  EVIDENCE"]
    for check in report.checks:
        lines.append(f"{_MARK[check.status]:6}  {check.id:{width}}  {check.evidence}")
    lines.append("")
    lines.append(summary(report))
    return "\n".join(lines)


def as_dict(report: VerifyReport) -> dict[str, Any]:
    return {
        "image": report.image,
        "image_id": report.image_id,
        "uid": report.uid,
        "ok": report.ok,
        "seconds": report.seconds,
        "summary": {s.value: report.count(s) for s in Status},
        "checks": [
            {
                "id": c.id,
                "title": c.title,
                "category": c.category,
                "required": c.required,
                "result": c.status.value,
                "evidence": c.evidence,
                "seconds": c.seconds,
            }
            for c in report.checks
        ],
    }


def as_json(report: VerifyReport) -> str:
    return json.dumps(as_dict(report), indent=2)


def as_junit(report: VerifyReport) -> str:
    """One <testsuite> per run, one <testcase> per check. A warning passes
    (it is reported in system-out); a skip is <skipped/>; a failure <failure/>."""
    root = ET.Element("testsuites", name="nbs2i verify")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"nbs2i verify {report.image}",
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
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{check.status.value}: {check.evidence}"
    root.set("tests", suite.get("tests", "0"))
    root.set("failures", suite.get("failures", "0"))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def render(report: VerifyReport, fmt: str) -> str:
    if fmt == "json":
        return as_json(report)
    if fmt == "junit":
        return as_junit(report)
    return as_table(report)
