"""Progress events: how long-running steps tell the CLI what is happening.

Library code never prints. It calls a `Reporter` with `Event`s; the CLI turns
them into readable lines, or into one JSON object a line for CI logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One thing that happened. `kind` is a stable, machine-readable name."""

    kind: str  # e.g. "step", "output", "warning", "done"
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Reporter = Callable[[Event], None]


def silent(_event: Event) -> None:
    """A reporter that drops everything (library default)."""
