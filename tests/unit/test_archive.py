"""archive.py: what the source tar holds, built from real files in tmp_path."""

from __future__ import annotations

import io
import os
import tarfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest

from nbs2i import archive
from nbs2i.archive import (
    TarFile,
    check_source,
    files_tar,
    tar_mode,
    tar_stream,
)
from nbs2i.errors import SourceError, UsageError
from tests.support.archives import source_files

UID = 1000680000  # an OpenShift-style UID: needs PAX (more than 7 octal digits)
EPOCH = 1_700_000_000


def members(chunks: Iterable[bytes]) -> dict[str, tarfile.TarInfo]:
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(chunks: Iterable[bytes], name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def write(path: Path, text: str = "x", mode: int = 0o644, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def rels(root: Path, **kw: object) -> list[str]:
    return [p.as_posix() for p in source_files(root, **kw)]  # type: ignore[arg-type]


# -- owners, modes, times ----------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0o644, 0o664),
        (0o755, 0o775),
        (0o600, 0o660),
        (0o700, 0o770),
        (0o640, 0o660),
        (0o604, 0o664),
        (0o444, 0o444),
        (0o4755, 0o775),  # setuid dropped
        (0o2755, 0o775),  # setgid dropped
        (0o1777, 0o777),  # sticky dropped
        (0o000, 0o000),
    ],
)
def test_tar_mode_copies_user_bits_to_group(mode: int, expected: int) -> None:
    assert tar_mode(mode) == expected


def test_entries_owned_numerically_with_group_bits_and_clamped_times(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "a.ipynb", mode=0o644, mtime=EPOCH + 1000)  # edited after the commit
    write(root / "old.csv", mode=0o600, mtime=EPOCH - 1000)  # older than the commit
    write(root / "bin" / "tool", mode=0o4755, mtime=EPOCH + 5)
    (root / "bin").chmod(0o750)
    got = members(tar_stream(root, uid=UID, gid=0, epoch=EPOCH))

    assert list(got) == ["src", "src/a.ipynb", "src/bin", "src/bin/tool", "src/old.csv"]
    for m in got.values():
        assert (m.uid, m.gid, m.uname, m.gname) == (UID, 0, "", "")
    assert got["src/a.ipynb"].mode == 0o664
    assert got["src/old.csv"].mode == 0o660
    assert got["src/bin"].mode == 0o770 and got["src/bin"].isdir()
    assert got["src/bin/tool"].mode == 0o775
    assert got["src/a.ipynb"].mtime == EPOCH
    assert got["src/old.csv"].mtime == EPOCH - 1000
    assert got["src/bin/tool"].mtime == EPOCH


def test_times_kept_without_epoch_and_gid_and_prefix_honoured(tmp_path: Path) -> None:
    write(tmp_path / "r" / "f", mtime=EPOCH + 1234)
    got = members(tar_stream(tmp_path / "r", uid=1001, gid=5, epoch=None, prefix="tmp/src"))
    assert list(got) == ["tmp", "tmp/src", "tmp/src/f"]
    assert got["tmp/src/f"].mtime == EPOCH + 1234
    assert got["tmp/src/f"].gid == 5


def test_empty_prefix_puts_entries_at_the_top(tmp_path: Path) -> None:
    write(tmp_path / "r" / "d" / "f")
    assert list(members(tar_stream(tmp_path / "r", uid=1, epoch=None, prefix=""))) == [
        "d",
        "d/f",
    ]


def test_stream_is_deterministic_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for name in ["b/z", "b/a", "a", "B", "c/d/e", "_x", "a.b"]:
        write(root / name, text=name, mtime=EPOCH - 10)
    first = b"".join(tar_stream(root, uid=1001, epoch=EPOCH))
    second = b"".join(tar_stream(root, uid=1001, epoch=EPOCH))
    assert first == second
    assert len(first) % tarfile.RECORDSIZE == 0
    assert rels(root) == ["B", "_x", "a", "a.b", "b", "b/a", "b/z", "c", "c/d", "c/d/e"]
    assert read([first], "src/c/d/e") == b"c/d/e"


def test_long_and_non_ascii_names(tmp_path: Path) -> None:
    root = tmp_path / "r"
    deep = "/".join(["directory-with-a-long-name-" + str(i) for i in range(6)])
    long_name = f"{deep}/{'n' * 150}.ipynb"
    write(root / long_name, text="long")
    write(root / "Übung Kapitel 1 ✓ 日本.ipynb", text="uni")
    chunks = list(tar_stream(root, uid=UID, epoch=EPOCH))
    got = members(chunks)
    assert f"src/{long_name}" in got
    assert len(f"src/{long_name}") > 255
    assert read(chunks, f"src/{long_name}") == b"long"
    assert read(chunks, "src/Übung Kapitel 1 ✓ 日本.ipynb") == b"uni"


def test_empty_file_and_empty_dir(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "empty-dir").mkdir(parents=True)
    write(root / "empty", text="")
    got = members(tar_stream(root, uid=1, epoch=None))
    assert got["src/empty-dir"].isdir()
    assert got["src/empty"].isfile() and got["src/empty"].size == 0


# -- excludes and .s2iignore -------------------------------------------------


def test_default_exclude_leaves_out_git_only(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / ".git" / "config")
    write(root / "sub" / ".git")  # a submodule's gitlink file
    write(root / ".gitignore")
    write(root / ".github" / "workflow.yml")
    write(root / "x.git" / "f")
    assert rels(root) == [
        ".github",
        ".github/workflow.yml",
        ".gitignore",
        "sub",
        "x.git",
        "x.git/f",
    ]


def test_custom_excludes_and_empty_exclude(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / ".git" / "HEAD")
    write(root / "data" / "big.csv")
    write(root / "nb.ipynb")
    write(root / "notes.tmp")
    assert rels(root, excludes=[r"(^|/)data(/|$)", r"\.tmp$"]) == [".git", ".git/HEAD", "nb.ipynb"]
    assert rels(root, excludes=[""]) == [
        ".git",
        ".git/HEAD",
        "data",
        "data/big.csv",
        "nb.ipynb",
        "notes.tmp",
    ]


def test_bad_exclude_regex_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path / "f")
    with pytest.raises(UsageError, match=r"--exclude '\(' is not a valid regular expression"):
        list(source_files(tmp_path, excludes=["("]))


def test_s2iignore_globs_comments_dirs(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for name in ["a.ipynb", "b.pyc", "sub/c.pyc", "build/out", "docs/x.md", "keep.txt", "#odd"]:
        write(root / name)
    (root / ".s2iignore").write_text("# comment line\n\n   \n*.pyc\n/build/\ndocs\n  \\#odd\n")
    # *.pyc does not cross "/" (upstream uses Go's filepath.Match relative to the root)
    assert rels(root) == [".s2iignore", "a.ipynb", "keep.txt", "sub", "sub/c.pyc"]


def test_s2iignore_negation_brings_back_a_file_in_an_ignored_dir(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for name in ["data/big.bin", "data/small.csv", "data/deep/x", "nb.ipynb", "n2.ipynb"]:
        write(root / name)
    (root / ".s2iignore").write_text("data\n!data/small.csv\n*.ipynb\n!nb.ipynb\n")
    assert rels(root) == [".s2iignore", "data", "data/small.csv", "nb.ipynb"]
    got = members(tar_stream(root, uid=1001, epoch=None))
    assert "src/data" in got and got["src/data"].isdir()
    assert "src/data/deep" not in got


def test_s2iignore_character_class(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for name in ["a1", "a2", "ab"]:
        write(root / name)
    (root / ".s2iignore").write_text("a[0-9]\n")
    assert rels(root) == [".s2iignore", "ab"]
    (root / ".s2iignore").write_text("a[^0-9]\n")
    assert rels(root) == [".s2iignore", "a1", "a2"]


# -- links and special files -------------------------------------------------


def test_symlinks_inside_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / "data" / "w.csv", text="csv")
    (root / "nb").mkdir()
    (root / "nb" / "w.csv").symlink_to("../data/w.csv")
    (root / "datalink").symlink_to("data")  # a link to a directory: not followed
    (root / "dangling").symlink_to("not-there-yet")
    got = members(tar_stream(root, uid=1001, epoch=EPOCH))
    assert got["src/nb/w.csv"].issym() and got["src/nb/w.csv"].linkname == "../data/w.csv"
    assert got["src/datalink"].issym() and "src/datalink/w.csv" not in got
    assert got["src/dangling"].issym()
    check_source(root)


@pytest.mark.parametrize(
    "target",
    [
        "/etc/passwd",  # absolute
        "../outside.txt",  # up and out
        "sub/../../outside.txt",  # up and out after a detour
        "../r/data.csv",  # out and back in: dangles when unpacked under another name
    ],
)
def test_symlink_pointing_outside_is_refused(tmp_path: Path, target: str) -> None:
    root = tmp_path / "r"
    write(root / "data.csv")
    (root / "sub").mkdir()
    write(tmp_path / "outside.txt")
    (root / "evil").symlink_to(target)
    with pytest.raises(SourceError) as err:
        list(tar_stream(root, uid=1001, epoch=None))
    assert str(err.value) == (
        f"symlink evil points outside the source (-> {target}): "
        "remove it or replace it with the file"
    )
    with pytest.raises(SourceError, match="points outside the source"):
        check_source(root)


def test_symlink_through_a_link_that_leaves_is_refused(tmp_path: Path) -> None:
    # "up/.." looks inside as written, but "up" itself leads out of the tree.
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "up").symlink_to("../../..")
    (root / "a" / "b" / "sneaky").symlink_to("up/r/../outside.txt")
    write(tmp_path / "outside.txt")
    with pytest.raises(SourceError, match="points outside the source"):
        list(tar_stream(root, uid=1001, epoch=None))


def test_excluded_bad_symlink_is_not_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / "f")
    (root / "evil").symlink_to("/etc/passwd")
    (root / ".s2iignore").write_text("evil\n")
    assert "src/evil" not in members(tar_stream(root, uid=1001, epoch=None))


def test_hard_links_become_regular_files(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / "a", text="same")
    os.link(root / "a", root / "b")
    chunks = list(tar_stream(root, uid=1001, epoch=None))
    got = members(chunks)
    assert got["src/a"].isreg() and got["src/b"].isreg()
    assert read(chunks, "src/b") == b"same"


def test_fifos_and_sockets_are_skipped(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "r"
    write(root / "f")
    os.mkfifo(root / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        assert list(members(tar_stream(root, uid=1001, epoch=None))) == ["src", "src/f"]
    finally:
        sock.close()


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    write(root / "ok")
    write(root / "secret", mode=0o000)
    if os.geteuid() == 0:  # root reads any file: make the kernel's refusal happen anyway
        real_open = os.open

        def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
            if str(path).endswith("secret"):
                raise PermissionError(13, "Permission denied")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(SourceError) as err:
        list(tar_stream(root, uid=1001, epoch=None))
    assert str(err.value) == (
        "cannot read secret: Permission denied: "
        "make it readable, or leave it out with --exclude or .s2iignore"
    )


# -- extras ------------------------------------------------------------------


def test_extra_entries_from_memory_path_and_dir(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / "nb.ipynb")
    script = write(tmp_path / "assemble", text="#!/bin/sh\n", mode=0o755)
    injected = tmp_path / "certs"
    write(injected / "ca.pem", text="PEM", mode=0o600)
    write(tmp_path / "token", text="T", mode=0o644)
    extra = [
        TarFile("scripts/env", data=b"A=1\n", mode=0o600),
        TarFile("scripts/assemble", path=script, mode=0o755),
        TarFile("scripts/token", path=tmp_path / "token", mode=0o600),
        TarFile("/inject/certs", path=injected),
    ]
    chunks = list(tar_stream(root, uid=UID, epoch=EPOCH, extra=extra))
    got = members(chunks)
    assert list(got) == [
        "src",
        "src/nb.ipynb",
        "scripts",
        "scripts/env",
        "scripts/assemble",
        "scripts/token",
        "inject",
        "inject/certs",
        "inject/certs/ca.pem",
    ]
    assert got["scripts"].isdir() and got["scripts"].mode == 0o775
    assert got["scripts/env"].mode == 0o660
    assert got["scripts/assemble"].mode == 0o775
    assert got["scripts/token"].mode == 0o660  # the mode asked for, not the file's 0644
    assert got["inject/certs/ca.pem"].mode == 0o660
    assert all(m.uid == UID and m.gid == 0 and m.mtime <= EPOCH for m in got.values())
    assert read(chunks, "scripts/env") == b"A=1\n"
    assert read(chunks, "scripts/assemble") == b"#!/bin/sh\n"
    assert read(chunks, "inject/certs/ca.pem") == b"PEM"


def test_files_tar_holds_only_what_it_is_given(tmp_path: Path) -> None:
    script = write(tmp_path / "save-artifacts", text="#!/bin/sh\n", mode=0o700)
    chunks = list(
        files_tar(
            [TarFile("scripts/save-artifacts", path=script, mode=0o755)],
            uid=UID,
            dirs=["artifacts"],
        )
    )
    got = members(chunks)
    assert list(got) == ["artifacts", "scripts", "scripts/save-artifacts"]
    assert got["artifacts"].isdir() and got["artifacts"].mode == 0o775
    assert got["scripts/save-artifacts"].mode == 0o775
    assert all((m.uid, m.gid) == (UID, 0) for m in got.values())
    assert read(chunks, "scripts/save-artifacts") == b"#!/bin/sh\n"


def test_extra_needs_exactly_one_source_and_a_safe_name(tmp_path: Path) -> None:
    write(tmp_path / "r" / "f")
    with pytest.raises(ValueError, match="exactly one"):
        list(tar_stream(tmp_path / "r", uid=1, epoch=None, extra=[TarFile("x")]))
    with pytest.raises(ValueError, match=r"without '\.\.'"):
        list(tar_stream(tmp_path / "r", uid=1, epoch=None, extra=[TarFile("../x", data=b"")]))


# -- streaming ---------------------------------------------------------------


def test_big_file_is_streamed_in_small_chunks(tmp_path: Path) -> None:
    """200 MB go through with a peak of a few MB of Python allocations."""
    root = tmp_path / "r"
    root.mkdir()
    size = 200 * 1024 * 1024
    with open(root / "big.bin", "wb") as f:  # sparse: no 200 MB written to the test disk
        f.truncate(size)
        f.seek(size - 5)
        f.write(b"tail!")
    write(root / "small.txt", text="s")
    total = biggest = 0
    tail = b""
    tracemalloc.start()
    try:
        for chunk in tar_stream(root, uid=UID, epoch=EPOCH):
            total += len(chunk)
            biggest = max(biggest, len(chunk))
            if len(chunk) >= 5 and not tail and total > size:
                tail = chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total >= size + 3 * tarfile.BLOCKSIZE
    assert biggest <= 2 * archive.CHUNK
    assert peak < 8 * archive.CHUNK, f"peak {peak / 1e6:.1f} MB while streaming 200 MB"
    assert b"tail!" in tail


def test_file_that_shrinks_while_read_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    big = root / "grows-and-shrinks.bin"
    big.write_bytes(b"x" * (5 * archive.CHUNK))
    stream = tar_stream(root, uid=1, epoch=None)
    next(stream)  # the header and the first blocks are out
    big.write_bytes(b"")
    with pytest.raises(SourceError, match="got shorter while it was read"):
        list(stream)


def test_stream_is_lazy(tmp_path: Path) -> None:
    """Nothing is read before the consumer asks: a bad link late in the tree is met late."""
    root = tmp_path / "r"
    write(root / "a.bin", text="a" * (3 * archive.CHUNK))
    (root / "z-evil").symlink_to("/etc")
    stream = tar_stream(root, uid=1, epoch=None)
    sent = len(next(stream)) + len(next(stream))  # headers, then the first block of a.bin
    assert sent > archive.CHUNK
    with pytest.raises(SourceError):
        list(stream)
