"""What `nbs2i test` (and `nbs2i build --test`) is asked, checked before the
engine is: the notebooks to select, the time limits, the UID, the labels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from nbs2i import defaults, restricted
from nbs2i.errors import Nbs2iError
from nbs2i.examine import OptionError
from nbs2i.nbtest.driver import MAX_PATTERN, clean_pattern

# More patterns than this is a mistake (a shell glob expanded on this machine).
MAX_PATTERNS = 100


@dataclass(frozen=True)
class NotebookTestOptions:
    # Globs relative to the notebook directory, each a notebook or a folder;
    # no include: every notebook. A skip wins over an include.
    include: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    timeout: float = defaults.TEST_TIMEOUT  # seconds for each notebook
    total_timeout: float = defaults.TEST_TOTAL_TIMEOUT  # seconds for the whole run
    uid: int | None = None  # None: a random UID, as OpenShift assigns
    labels: Mapping[str, str] = field(default_factory=dict)  # put on all it creates


def _patterns(given: tuple[str, ...], option: str) -> tuple[str, ...]:
    if len(given) > MAX_PATTERNS:
        raise OptionError(
            f"{len(given)} {option} patterns", f"give at most {MAX_PATTERNS}; quote globs"
        )
    cleaned = []
    for pattern in given:
        text = clean_pattern(pattern)
        parts = PurePosixPath(text).parts
        if not text or text.startswith("/") or ".." in parts:
            raise OptionError(
                f"{option} {pattern!r} is not a path inside the course",
                "give a notebook, a folder or a glob relative to the notebook directory, "
                "e.g. week1/*.ipynb",
            )
        if len(text) > MAX_PATTERN or not text.isprintable():
            raise OptionError(
                f"{option} {pattern!r} is too long or has control characters",
                f"give a pattern of at most {MAX_PATTERN} printable characters",
            )
        cleaned.append(text)
    return tuple(cleaned)


def _seconds(value: float, option: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise OptionError(f"{option} {value:g} is not a positive number of seconds", "e.g. 300")


def check_options(options: NotebookTestOptions) -> NotebookTestOptions:
    """The options as the run uses them (patterns cleaned); OptionError (exit 2)
    for a bad one, before the engine is asked anything."""
    if options.uid is not None:
        try:
            restricted.check_uid(options.uid)
        except Nbs2iError as exc:
            raise OptionError(exc.problem, exc.fix) from exc
    _seconds(options.timeout, "--timeout")
    _seconds(options.total_timeout, "--total-timeout")
    return replace(
        options,
        include=_patterns(options.include, "--include"),
        skip=_patterns(options.skip, "--skip"),
    )
