"""A course's dependency files as `nbs2i build` needs them: what goes into the
dependency layer, and its cache key.

Which files count, their precedence and what is done with each are decided by
`nbs2i.depfiles`, the definition the builder's assemble follows too (it
carries the same code), so both build paths install the same things and refuse
with the same line. Here that decision meets the builder's labels (its Python,
whether it has R) and becomes the dependency layer's input: the files it
reads, the Debian packages from apt.txt, and whether the layer needs the whole
source (the repository is installed as a package) or cannot be made alone (a
requirement installs from the source tree).

Everything here is pure: files are read through `depfiles.Tree` (never through
a link out of the source, never a special file, bounded), nothing touches the
engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nbs2i import defaults, depfiles, labels
from nbs2i.errors import SourceError

# What a notice is: ("info" | "ignored", one line).
Notice = tuple[str, str]


@dataclass(frozen=True)
class Dependencies:
    """What the dependency layer installs."""

    files: tuple[tuple[str, bytes], ...]  # (path relative to the source, content), sorted
    apt_packages: tuple[str, ...] = ()
    # Why the dependencies cannot get a layer of their own ("" when they can):
    # they install from the source tree, which is not there yet.
    one_step: str = ""
    # The repository itself is installed: the layer is made from the whole
    # source, and keyed by its package files only.
    whole_source: bool = False


@dataclass(frozen=True)
class Found:
    deps: Dependencies | None  # None: nothing to install
    notices: tuple[Notice, ...]  # what happens to each file, one line each


def builder_facts(builder_labels: Mapping[str, str]) -> depfiles.Builder:
    """The builder's Python and R as its labels say; unknown (not checked here,
    its assemble checks) when it does not say."""
    variant = builder_labels.get(labels.VARIANT)
    return depfiles.Builder(
        python=builder_labels.get(labels.KERNEL_PYTHON) or None,
        r=None if variant is None else variant in defaults.R_VARIANTS,
    )


def find(root: Path, builder_labels: Mapping[str, str] | None = None) -> Found:
    """The course's dependency files and a line for each file that is not
    installed; SourceError (one line: the file and a fix) when one is refused."""
    try:
        decision = depfiles.decide(depfiles.Tree(root), builder_facts(builder_labels or {}))
    except depfiles.Refused as exc:
        raise SourceError(exc.problem, exc.fix) from None
    if not decision.actions:
        return Found(None, decision.notices)
    apt = next((a.detail.split() for a in decision.actions if a.kind == "apt"), [])
    deps = Dependencies(decision.files, tuple(apt), decision.local, decision.whole_source)
    return Found(deps, decision.notices)


def key(parts: Mapping[str, str], files: tuple[tuple[str, bytes], ...] = ()) -> str:
    """A cache key over named strings and file contents (order-independent names)."""
    digest = hashlib.sha256()
    for name in sorted(parts):
        digest.update(f"{name}={parts[name]}".encode() + b"\0")
    for rel, data in files:
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:20]
