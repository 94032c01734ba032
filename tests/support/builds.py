"""Builds in the tests: requests labelled as this session's, and their events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbs2i.building import BuildRequest
from nbs2i.progress import Event
from tests.support.session import LABEL_PAIRS

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "sample-notebooks"
LECTURES = (
    "01-python-basics.ipynb",
    "02-reading-a-csv.ipynb",
    "03-plotting.ipynb",
    "04-random-walks.ipynb",
)


def request(source: Path | str, tag: str, builder: str, **options: Any) -> BuildRequest:
    """A BuildRequest whose containers and volumes carry the session's labels."""
    return BuildRequest(
        source=str(source), tag=tag, builder=builder, container_labels=LABEL_PAIRS, **options
    )


@dataclass
class Events:
    """A reporter that keeps what a build said."""

    all: list[Event] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.all.append(event)

    def of(self, kind: str) -> list[str]:
        return [e.message for e in self.all if e.kind == kind]

    @property
    def outputs(self) -> list[str]:
        return self.of("output")

    @property
    def warnings(self) -> list[str]:
        return self.of("warning")

    @property
    def steps(self) -> list[str]:
        return self.of("step")
