"""What the commands that judge an image share: `nbs2i verify` and `nbs2i test`.

- Exit codes: 0 when nothing failed, 1 when something did (the command says
  so itself), 2 when the image could not be examined or an option is bad
  (`ImageUnexaminable`, `OptionError`), never "a check failed".
- Whatever an image printed is shown as one printable line (`one_line`), so a
  terminal, JSON and XML 1.0 can all carry it.
- Everything one run creates carries the run's label and is removed by a
  `Sandbox`, also what an interrupted create call made before it returned.
- JUnit XML is written with xml.etree and serialised by `junit_document`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

from nbs2i import labels
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError, UsageError

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from nbs2i.engine import Docker, ImageInfo


class ImageUnexaminable(Nbs2iError):
    """The image could not be examined at all (absent, engine refused)."""

    exit_code = 2


class OptionError(UsageError):
    """A bad option: nothing was examined (exit 2, never "a check failed")."""

    exit_code = 2


def one_line(text: str) -> str:
    """Text as one printable line. Whitespace runs become one space; any other
    control character (a terminal escape or a NUL that an image printed) is
    shown escaped, so a terminal, JSON and XML 1.0 can all carry it."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in " ".join(text.split())
    )


def clip(text: str, limit: int) -> str:
    """`one_line(text)`, cut to at most `limit` characters (marked with "...")."""
    line = one_line(text)
    return line if len(line) <= limit else line[: max(limit - 3, 0)] + "..."


def inspect_image(engine: Docker, image: str) -> ImageInfo:
    """The image's metadata, or ImageUnexaminable naming why not."""
    try:
        return engine.inspect_image(image)
    except EngineUnavailable:
        raise
    except EngineError as exc:
        raise ImageUnexaminable(
            f"cannot examine {image}: {exc.problem}",
            exc.fix or "check the name with `docker images`",
        ) from exc


class Sandbox:
    """What one run created, found by what it was told and by its label."""

    def __init__(self, engine: Docker, extra: Mapping[str, str], role: str, run_label: str) -> None:
        from nbs2i.cleanup import Leftovers

        self.engine = engine
        self.run_id = secrets.token_hex(6)
        self.selector = f"{run_label}={self.run_id}"
        self.labels = {**extra, labels.ROLE: role, run_label: self.run_id}
        self.leftovers = Leftovers(engine)

    def sweep(self) -> None:
        """Remove what we know we made, then anything carrying this run's label
        (a container whose create call was interrupted before it returned)."""
        self.leftovers.remove_all()
        for container in self.engine.containers(labels=[self.selector]):
            self.engine.remove_container(container.id)
        for volume in self.engine.volumes(labels=[self.selector]):
            self.engine.remove_volume(volume.name)


def junit_document(root: ET.Element) -> str:
    """A JUnit XML document, indented, with its declaration."""
    import xml.etree.ElementTree as ET

    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
