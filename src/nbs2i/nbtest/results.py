"""What `nbs2i test` found, and the driver's output read as untrusted text.

The image under test prints what it likes: the driver's records are believed
only as far as they fit (a known kind, the right types, a notebook of the
plan, once), and every string is cut and made one printable line before it
travels. Anything else is noise; its last few lines are kept to explain a
run that reported nothing. Pure: no engine, no I/O.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nbs2i.examine import clip
from nbs2i.nbtest.driver import (
    ERROR,
    FAIL,
    MAX_ERROR,
    MAX_NOTEBOOKS,
    MAX_PATH,
    MAX_PATTERN,
    MAX_SOURCE,
    PASS,
    RECORD_PREFIX,
    TIMEOUT,
)

# The longest line read from the container, and all it may print: beyond
# that nbs2i stops the run (a flood cannot fill memory or the report).
MAX_LINE = 64 * 1024
MAX_OUTPUT = 8 * 1024 * 1024
# Lines of noise kept to explain a run that reported nothing, and their length.
NOISE_LINES = 5
NOISE_WIDTH = 300
# No notebook takes longer than this; a larger figure is the image's invention.
MAX_SECONDS = 10.0**7


class Status(StrEnum):
    PASS = PASS
    FAIL = FAIL
    TIMEOUT = TIMEOUT
    ERROR = ERROR  # could not start: no such kernel, not a notebook, ...


@dataclass(frozen=True)
class NotebookResult:
    path: str  # relative to the notebook directory, one printable line
    status: Status
    seconds: float = 0.0
    cell: int | None = None  # the failing or running cell, counted from 1
    source: str = ""  # that cell's first line
    error: str = ""  # "ename: evalue", or why it timed out or could not start
    ran_in: str = ""  # the folder it ran from (the seeded copy in HOME)


@dataclass(frozen=True)
class NotebookReport:
    image: str
    image_id: str
    uid: int
    notebook_dir: str  # where the course's notebooks were found
    home: str  # HOME inside the container, where they ran
    notebooks: tuple[NotebookResult, ...]
    seconds: float
    timeout: float
    total_timeout: float

    @property
    def failed(self) -> tuple[NotebookResult, ...]:
        return tuple(n for n in self.notebooks if n.status is not Status.PASS)

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, status: Status) -> int:
        return sum(1 for n in self.notebooks if n.status is status)


def _text(record: dict[str, Any], key: str, limit: int) -> str:
    value = record.get(key)
    return clip(value, limit) if isinstance(value, str) else ""


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return round(number, 2) if math.isfinite(number) and 0 <= number <= MAX_SECONDS else 0.0


def _cell(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10**6:
        return None
    return value


def parse_result(record: dict[str, Any], path: str) -> NotebookResult | None:
    """A result record for `path` as a value, or None when its status is unknown."""
    value = record.get("status")
    if not isinstance(value, str) or value not in set(Status):
        return None
    status = Status(value)
    return NotebookResult(
        path=clip(path, MAX_PATH),
        status=status,
        seconds=_seconds(record.get("seconds")),
        cell=_cell(record.get("cell")) if status in (Status.FAIL, Status.TIMEOUT) else None,
        source=_text(record, "source", MAX_SOURCE),
        error=_text(record, "error", MAX_ERROR) if status is not Status.PASS else "",
        ran_in=_text(record, "ran_in", MAX_PATH),
    )


def _record(line: str) -> dict[str, Any] | None:
    if not line.startswith(RECORD_PREFIX):
        return None
    try:
        found = json.loads(line[len(RECORD_PREFIX) :])
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


class Reading:
    """The driver's records, taken one output line at a time."""

    def __init__(self) -> None:
        self.planned: list[str] = []  # as the driver named them (the keys of results)
        self.plan_done = False
        self.unmatched: list[str] = []
        self.root = ""
        self.home = ""
        self.results: dict[str, NotebookResult] = {}
        self.fatal = ""
        self.done = False
        self.noise: deque[str] = deque(maxlen=NOISE_LINES)

    def feed(self, line: str) -> NotebookResult | None:
        """Take one line; the result it carried, if it is a new one."""
        record = _record(line)
        if record is None:
            if line.strip():
                self.noise.append(clip(line, NOISE_WIDTH))
            return None
        kind = record.get("kind")
        if kind == "result":
            return self._result(record)
        if kind == "notebook" and not self.plan_done:
            self._notebook(record.get("path"))
        elif kind == "unmatched" and not self.plan_done and len(self.unmatched) < 100:
            self.unmatched.append(_text(record, "pattern", MAX_PATTERN))
        elif kind == "planned" and not self.plan_done:
            self.plan_done = True
            self.root, self.home = _text(record, "root", MAX_PATH), _text(record, "home", MAX_PATH)
        elif kind == "fatal" and not self.fatal:
            self.fatal = _text(record, "error", MAX_ERROR) or "no reason given"
        elif kind == "done":
            self.done = True
        return None

    def _notebook(self, path: object) -> None:
        fits = isinstance(path, str) and 0 < len(path) <= MAX_PATH
        if fits and path not in self.planned and len(self.planned) < MAX_NOTEBOOKS:
            self.planned.append(str(path))

    def _result(self, record: dict[str, Any]) -> NotebookResult | None:
        path = record.get("path")
        if not self.plan_done or path not in self.planned or path in self.results:
            return None
        found = parse_result(record, str(path))
        if found is not None:
            self.results[str(path)] = found
        return found

    @property
    def last_noise(self) -> str:
        return self.noise[-1] if self.noise else ""

    def notebooks(self, missing: Status, why: str) -> tuple[NotebookResult, ...]:
        """Every planned notebook's result, in the order they ran; one the run
        never reported gets `missing` and `why`."""
        return tuple(
            self.results.get(p) or NotebookResult(clip(p, MAX_PATH), missing, error=clip(why, 400))
            for p in self.planned
        )
