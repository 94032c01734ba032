"""The catalogue of `nbs2i verify` checks and the values they produce.

Every check has a stable id (CI dashboards and users key on it, so an id is
never renamed or reused), a title, a category and whether it is required. A
required check that finds a problem fails; an advisory one only warns.

The runtime checks run once per runtime setup (see `runtime.SETUPS`); each
run gives a `Part`, and `combine` makes the one result a report shows: the
worst part decides, and the evidence names every run, so the verdict and the
evidence never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from nbs2i.examine import one_line


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


# Worst first: what decides a check seen in several runs.
SEVERITY = (Status.FAIL, Status.WARN, Status.PASS, Status.SKIP)


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    category: str  # "metadata", "files" or "runtime"
    required: bool = True


@dataclass(frozen=True)
class Part:
    """What one runtime setup showed for one check."""

    setup: str  # how the image was started, e.g. "no volume"
    status: Status
    evidence: str
    seconds: float = 0.0


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    category: str
    status: Status
    evidence: str  # one printable line: what the check saw
    required: bool = True
    seconds: float = 0.0
    parts: tuple[Part, ...] = ()  # one per runtime setup; () for the static checks


# In the order they are reported. Ids are kebab-case and stable.
CATALOGUE: tuple[CheckSpec, ...] = (
    CheckSpec("user-numeric", "USER is numeric", "metadata"),
    CheckSpec("user-not-root", "USER is not root", "metadata"),
    CheckSpec("init-pid1", "an init as PID 1, the server in exec form", "metadata"),
    CheckSpec("ports-unprivileged", "no exposed port below 1024", "metadata"),
    CheckSpec("env-no-secrets", "no secret-looking values in ENV", "metadata"),
    CheckSpec(
        "env-server", "ENV does not steer the server's login, configuration or code", "metadata"
    ),
    CheckSpec("s2i-builder", "S2I labels and scripts", "metadata"),
    CheckSpec("no-setuid", "no setuid or setgid files", "files"),
    CheckSpec(
        "passwd-not-writable", "/etc/passwd and /etc/group not group/world-writable", "files"
    ),
    CheckSpec("no-world-writable", "nothing world-writable outside /tmp-like places", "files"),
    CheckSpec("home-group-writable", "HOME and workspace: group 0 with group write", "files"),
    CheckSpec("no-package-caches", "no package caches left (apt lists, pip cache)", "files", False),
    CheckSpec("starts", "starts and answers HTTP 2xx/3xx", "runtime"),
    CheckSpec("api-auth", "API refuses requests without credentials", "runtime"),
    CheckSpec("home-writable", "HOME is writable", "runtime"),
    CheckSpec("user-named", "the user has a name", "runtime"),
    CheckSpec("file-group-writable", "a file it creates is group-writable", "runtime"),
    CheckSpec("reaps-orphans", "PID 1 reaps an orphan", "runtime"),
    CheckSpec("sigterm", "SIGTERM stops it within 10 s", "runtime"),
)
SPECS: dict[str, CheckSpec] = {spec.id: spec for spec in CATALOGUE}
RUNTIME_IDS: tuple[str, ...] = tuple(s.id for s in CATALOGUE if s.category == "runtime")


def result(
    check_id: str,
    status: Status,
    evidence: str,
    seconds: float = 0.0,
    parts: tuple[Part, ...] = (),
) -> CheckResult:
    """A result for a catalogued check; an advisory check's failure is a warning."""
    spec = SPECS[check_id]
    if status is Status.FAIL and not spec.required:
        status = Status.WARN
    return CheckResult(
        spec.id,
        spec.title,
        spec.category,
        status,
        one_line(evidence),
        spec.required,
        round(seconds, 3),
        parts,
    )


def combine(check_id: str, parts: Sequence[Part]) -> CheckResult:
    """One result for a check seen in several runs: the worst status of the
    runs that got to it decides (skip only when all skipped), and the
    evidence names each run."""
    ran = [p for p in parts if p.status is not Status.SKIP] or list(parts)
    status = min((p.status for p in ran), key=SEVERITY.index)
    if len({(p.status, p.evidence) for p in parts}) == 1:
        evidence = f"{' and '.join(p.setup for p in parts)}: {parts[0].evidence}"
    else:
        evidence = " | ".join(f"{p.setup}: {p.evidence}" for p in parts)
    clean = tuple(Part(p.setup, p.status, one_line(p.evidence), p.seconds) for p in parts)
    return result(check_id, status, evidence, sum(p.seconds for p in parts), clean)


@dataclass(frozen=True)
class VerifyReport:
    image: str
    image_id: str
    uid: int | None  # the UID the runtime checks ran as; None without them
    checks: tuple[CheckResult, ...]
    seconds: float
    setups: tuple[str, ...] = ()  # the runtime setups, in the order they ran

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAIL)

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    def get(self, check_id: str) -> CheckResult:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)
