"""This test run's identity: every container, image, volume and network a test
creates carries LABELS, so that two runs on one engine never judge (or remove)
each other's things."""

from __future__ import annotations

import uuid

SESSION_ID = uuid.uuid4().hex[:10]
LABELS = {"nbs2i.test": "1", "nbs2i.test.session": SESSION_ID}
SESSION_FILTER = f"nbs2i.test.session={SESSION_ID}"
# The same labels as repeated `--label K=V` / `--container-label K=V` options.
LABEL_PAIRS = tuple(LABELS.items())


def label_args(option: str = "--label") -> list[str]:
    return [arg for key, value in LABEL_PAIRS for arg in (option, f"{key}={value}")]


def tag(name: str) -> str:
    """An image reference private to this run."""
    return f"nbs2i-test/{name}:{SESSION_ID}"


def case_label() -> str:
    """A label unique to one test, to find what that test alone left behind."""
    return f"nbs2i.test.case={uuid.uuid4().hex[:10]}"
