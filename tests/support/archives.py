"""What nbs2i's stream of a source holds, by name: the entries `--exclude` and
`.s2iignore` select, read back from the tar that `archive.tar_stream` writes."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from nbs2i.archive import DEFAULT_EXCLUDE, tar_stream


def source_files(root: Path, excludes: Sequence[str] = (DEFAULT_EXCLUDE,)) -> list[Path]:
    """Relative paths of the entries the stream holds (dirs, files, symlinks), in
    its order: sorted by name, a directory before its contents; the root left out."""
    data = b"".join(tar_stream(root, uid=1, epoch=None, prefix="", excludes=excludes))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [Path(member.name) for member in tar.getmembers()]
