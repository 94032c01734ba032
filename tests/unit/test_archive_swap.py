"""A directory of the source swapped for a symlink while nbs2i reads it.

The stream is a generator: the test takes it chunk by chunk and, between two
chunks, renames a directory of the source and puts a symlink to a directory
of "the host" (a temp dir holding marker files) in its place, as a process
racing the build would. Whatever the moment, the stream either fails with one
line or holds what was in the source; a marker never appears in a byte of it.
The control-file reader and the root are checked the same way.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import pytest

from nbs2i import archive
from nbs2i.archive import check_source, tar_stream
from nbs2i.errors import SourceError
from nbs2i.source import read_control_file
from nbs2i.source.dirfd import MAX_DEPTH, open_root

MARKER = b"HOST-MARKER-not-in-the-source"
BIG = 3 * archive.CHUNK


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory of the build machine, with every name the source uses."""
    place = tmp_path / "host"
    for rel in ("big.bin", "z-after.txt", "b/big.bin", "b/z-after.txt", "d/z-after.txt"):
        write(place / rel, MARKER)
    return place


def swap(directory: Path, host: Path) -> None:
    directory.rename(directory.with_name(directory.name + ".old"))
    directory.symlink_to(host)


def stream_with_swap(root: Path, when: int, directory: Path, host: Path) -> tuple[bytes, str]:
    """The stream, with `directory` swapped after chunk `when`; the bytes that
    came out and the error ("" when it ended well)."""
    out = bytearray()
    stream: Iterator[bytes] = tar_stream(root, uid=1001, epoch=None)
    try:
        for number, chunk in enumerate(stream):
            out += chunk
            if number == when:
                swap(directory, host)
    except SourceError as exc:
        return bytes(out), str(exc)
    return bytes(out), ""


def contents(data: bytes) -> dict[str, bytes]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            found[member.name] = handle.read() if handle else b""
    return found


@pytest.mark.parametrize(
    ("big", "swapped", "target"),
    [
        ("d/big.bin", "d", ""),  # the big file's directory, a child of the root
        ("a/b/big.bin", "a/b", "b"),  # the big file's directory, two deep
        ("a/b/big.bin", "a", ""),  # the root's child above it
    ],
)
@pytest.mark.parametrize("when", [0, 1, 2])
def test_a_directory_swapped_while_its_file_streams_is_read_as_it_was(
    tmp_path: Path, host: Path, big: str, swapped: str, target: str, when: int
) -> None:
    root = tmp_path / "src"
    write(root / big, b"s" * BIG)
    write(root / big.replace("big.bin", "z-after.txt"), b"the source's own")
    data, error = stream_with_swap(root, when, root / swapped, host / target)
    assert MARKER not in data
    assert not error, error  # entered before the swap: read as it was
    got = contents(data)
    assert got[f"src/{big}"] == b"s" * BIG
    assert got[f"src/{big.replace('big.bin', 'z-after.txt')}"] == b"the source's own"


def test_a_directory_swapped_before_the_walk_enters_it_is_refused(
    tmp_path: Path, host: Path
) -> None:
    root = tmp_path / "src"
    write(root / "big.bin", b"s" * BIG)  # sorted before d/
    write(root / "d" / "z-after.txt", b"the source's own")
    data, error = stream_with_swap(root, 0, root / "d", host / "d")
    assert MARKER not in data
    assert (
        error
        == "d changed while nbs2i read the source: build again when nothing is changing the source"
    )


def test_a_swapped_directory_is_refused_by_check_source(tmp_path: Path, host: Path) -> None:
    root = tmp_path / "src"
    write(root / "d" / "z-after.txt", b"x")
    swap(root / "d", host / "d")  # now a link out, as check_source sees it
    with pytest.raises(SourceError, match="symlink d points outside the source"):
        check_source(root)


def test_a_root_whose_path_became_a_link_is_refused(tmp_path: Path, host: Path) -> None:
    # The root was resolved when the build started; a link on its path now
    # would lead the read elsewhere.
    parent = tmp_path / "course"
    root = parent / "week1"
    write(root / "nb.ipynb", b"{}")
    write(host / "week1" / "nb.ipynb", MARKER)
    swap(parent, host)
    with pytest.raises(SourceError, match="changed since the build started"):
        list(tar_stream(root, uid=1, epoch=None))
    with pytest.raises(SourceError, match="changed since the build started"):
        read_control_file(root, "nb.ipynb")


def test_a_control_file_behind_a_swapped_directory_is_not_read(tmp_path: Path, host: Path) -> None:
    root = tmp_path / "src"
    write(root / ".s2i" / "environment", b"A=1\n")
    write(host / "environment", MARKER)
    assert read_control_file(root, ".s2i/environment") == b"A=1\n"
    swap(root / ".s2i", host)
    with pytest.raises(SourceError, match=r"\.s2i/environment links outside the source"):
        read_control_file(root, ".s2i/environment")


def test_links_inside_are_followed_for_control_files(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "binder" / "real.txt", b"numpy\n")
    (root / "deep").mkdir()
    (root / "deep" / "up").symlink_to("..")
    (root / "requirements.txt").symlink_to("deep/up/binder/./real.txt")
    (root / "loop").symlink_to("loop")
    (root / "gone").symlink_to("missing/../../outside")
    assert read_control_file(root, "requirements.txt") == b"numpy\n"
    assert read_control_file(root, "binder/nothing/../real.txt") == b"numpy\n"
    assert read_control_file(root, "binder/real.txt/..") is None  # as realpath: not a file
    with pytest.raises(SourceError, match="too many symlinks"):
        read_control_file(root, "loop")
    with pytest.raises(SourceError, match="links outside the source"):
        read_control_file(root, "gone")


def test_a_loop_of_links_inside_is_kept_as_links(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    got = contents(b"".join(tar_stream(root, uid=1, epoch=None)))
    assert set(got) == {"src", "src/a", "src/b"}


def test_a_tree_deeper_than_the_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "src"
    deep = root.joinpath(*["d"] * (MAX_DEPTH + 2))
    deep.mkdir(parents=True)
    with pytest.raises(SourceError, match=f"more than {MAX_DEPTH} directories deep"):
        check_source(root)


def test_every_descriptor_is_closed_after_a_walk_whatever_happened(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write(root / "a" / "b" / "c" / "f", b"x" * BIG)
    (root / "z-evil").symlink_to("/etc")
    before = len(os.listdir("/proc/self/fd"))
    list(tar_stream(root, uid=1, epoch=None, excludes=["z-evil"]))
    with pytest.raises(SourceError):
        check_source(root)
    stream = cast(Generator[bytes, None, None], tar_stream(root, uid=1, epoch=None))
    next(stream)
    stream.close()  # a consumer that stops half-way
    fd = open_root(root)
    os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == before
