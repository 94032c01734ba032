"""The rules of course seeding, without touching a file: what the manifest
remembers, what happens to each course file, what is never seeded, and what the
student is told. Used by /usr/libexec/s2i/seed (Debian's python3, standard
library only) and by the unit tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

STATE_DIR = ".nbs2i"
MANIFEST = "course.json"
MANIFEST_LIMIT = 16 << 20
FORMAT = 1
NOTE = "COURSE-UPDATES.md"
NOTE_IF_TAKEN = "COURSE-UPDATES (nbs2i).md"
# Where a HOME holds what Jupyter reads as configuration or serves as code:
# JUPYTER_CONFIG_DIR's default, the user-site and platformdirs config dirs, the
# data dir (lab extensions, settings overrides, kernel specs); and the
# manifest's own folder.
NOT_SEEDED = (
    ".jupyter",
    ".local/etc/jupyter",
    ".config/jupyter",
    ".local/share/jupyter",
    STATE_DIR,
)
WHY_NOT_SEEDED = "Jupyter's configuration comes from the image, never from the course"
OFF_WORDS = ("off", "no", "false", "0")
ON_WORDS = ("on", "yes", "true", "1", "")

# What happens to one course file.
COPY = "copy"  # absent: copied
RESTORE = "restore"  # deleted by the student, changed by the course: back
REPLACE = "replace"  # unchanged by the student: the new version replaces it
ASIDE = "aside"  # changed by the student: the new version goes beside it
CURRENT = "current"  # the workspace has the course's version
KEEP = "keep"  # the student's; the course has nothing new for it
GONE = "gone"  # deleted by the student; the course has not changed it

ON_LABELS = (
    (COPY, "added"),
    (REPLACE, "updated"),
    (RESTORE, "restored"),
    (ASIDE, "changed by you (new version beside)"),
    (KEEP, "changed by you"),
    (GONE, "deleted by you"),
    (CURRENT, "up to date"),
)
OFF_LABELS = ((COPY, "added"), (KEEP, "already there"))

NOTE_HEADER = """# Course updates

Your files are never overwritten. When the course has a new version of a file
you changed, yours stays as it is and the new version is put beside it; a file
you deleted comes back only when the course has a new version of it.
"""

# (size, mtime_ns, ctime_ns, inode) of a file, and with its sha256.
Key = tuple[int, int, int, int]
Record = tuple[int, int, int, int, str]


@dataclass(frozen=True)
class Entry:
    """What the manifest remembers of one course path."""

    seeded: str | None = None  # sha256 of the course version the workspace's copy is
    offered: str | None = None  # sha256 of the version last put beside the student's
    aside: str | None = None  # the name it went under, in the same folder
    home: Record | None = None  # the workspace's file when last seen


@dataclass
class State:
    """The manifest: entries by course path, the image's file hashes by path,
    and the configuration paths left out."""

    files: dict[str, Entry] = field(default_factory=dict)
    image: dict[str, Record] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        files = {
            rel: {k: v for k, v in vars(e).items() if v is not None}
            for rel, e in sorted(self.files.items())
        }
        body = {"format": FORMAT, "files": files, "image": self.image, "skipped": self.skipped}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _record(value: object) -> Record | None:
    if (
        isinstance(value, list)
        and len(value) == 5
        and all(isinstance(v, int) for v in value[:4])
        and isinstance(value[4], str)
    ):
        return (value[0], value[1], value[2], value[3], value[4])
    return None


def _entry(value: object) -> Entry | None:
    if not isinstance(value, dict):
        return None
    text = {k: value.get(k) for k in ("seeded", "offered", "aside")}
    if not all(v is None or isinstance(v, str) for v in text.values()):
        return None
    return Entry(text["seeded"], text["offered"], text["aside"], _record(value.get("home")))


def parse_state(data: bytes) -> State:
    """The manifest's content. A ValueError when it is not a manifest; entries
    that do not parse are left out (the workspace may hold anything)."""
    body = json.loads(data)
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError("not a course manifest of this format")
    sections = [body.get(k, {}) for k in ("files", "image")]
    if not all(isinstance(s, dict) for s in sections):
        raise ValueError("not a course manifest of this format")
    state = State()
    for rel, value in sections[0].items():
        entry = _entry(value)
        if entry is not None:
            state.files[str(rel)] = entry
    for rel, value in sections[1].items():
        record = _record(value)
        if record is not None:
            state.image[str(rel)] = record
    skipped = body.get("skipped")
    state.skipped = [str(s) for s in skipped] if isinstance(skipped, list) else []
    return state


@dataclass(frozen=True)
class Found:
    """The workspace's side of one course path: missing, a regular file (with
    its sha256 when updates are on), or something else in the way."""

    kind: str  # "missing" | "file" | "other"
    sha: str = ""


def decide(updates: bool, entry: Entry | None, course: str, found: Found) -> str:
    """What to do with one course file whose version has sha256 `course`."""
    if found.kind == "missing":
        if not updates or entry is None or entry.seeded is None:
            return COPY
        return GONE if entry.seeded == course else RESTORE
    if not updates:
        return KEEP
    if found.kind == "file" and found.sha == course:
        return CURRENT
    if found.kind == "file" and entry is not None and found.sha == entry.seeded:
        return REPLACE
    if entry is not None and course in (entry.offered, entry.seeded):
        return KEEP  # the student's, and no version they have not seen
    return ASIDE


def aside_name(name: str, n: int) -> str:
    """'lecture3.ipynb' -> 'lecture3 (course update).ipynb', then '... 2)' and on."""
    stem, ext = os.path.splitext(name)
    return f"{stem} (course update{'' if n == 1 else f' {n}'}){ext}"


def excluded(rel: str) -> bool:
    """Whether the course path `rel` is configuration that is never seeded."""
    return any(rel == top or rel.startswith(top + "/") for top in NOT_SEEDED)


def updates_wanted(value: str) -> tuple[bool, str]:
    """NBS2I_COURSE_UPDATES: on (the default) or off; a warning for anything else."""
    word = value.strip().lower()
    if word in OFF_WORDS:
        return False, ""
    if word in ON_WORDS:
        return True, ""
    return True, f"warning: NBS2I_COURSE_UPDATES={value!r} is neither on nor off; updates stay on"


def summary(root: str, files: int, counts: dict[str, int], updates: bool) -> str:
    """The one line every start logs."""
    labels = ON_LABELS if updates else OFF_LABELS
    parts = [f"{counts[a]} {label}" for a, label in labels if counts.get(a)]
    noun = "file" if files == 1 else "files"
    text = f"course in {root}: {files} {noun}" + (": " + ", ".join(parts) if parts else "")
    if not updates:
        text += " (NBS2I_COURSE_UPDATES=off: files already there are never replaced)"
    return text


def skipped_line(skipped: list[str]) -> str:
    shown = ", ".join(sorted(skipped)[:5])
    if len(skipped) > 5:
        shown += f" and {len(skipped) - 5} more"
    return f"not copied from the course: {shown}: {WHY_NOT_SEEDED}"


def aside_note(rel: str, where: str, was_seeded: bool) -> str:
    why = (
        "you changed it and the course has a new version"
        if was_seeded
        else "the course now has a file of this name"
    )
    return f"{rel}: {why}: yours is kept as it is, the course's is {where}"


def restore_note(rel: str) -> str:
    return f"{rel}: you had deleted it; the course has a new version of it, so it is back"
