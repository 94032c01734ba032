"""The course seeder of the builder image (s2i/bin/seed), run on directories
of this machine: the rules for each course file across a course's versions,
the opt-out, configuration that is never seeded, links, a broken manifest.
The image runs the same program with Debian's python3; the engine tests
(tests/engine/test_course_updates.py) run it there, under several UIDs."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BIN = Path(__file__).resolve().parents[2] / "s2i" / "bin"


def _load_seed() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("nbs2i_seed_script", str(BIN / "seed"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


seed = _load_seed()
rules = sys.modules["seed_rules"]


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    old = os.umask(0o002)
    yield
    os.umask(old)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def course(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    return write(tmp_path / name, files)


def run_seed(capsys: pytest.CaptureFixture[str], src: Path, ws: Path, env: str = "") -> list[str]:
    """One start: the seeder's log lines."""
    os.environ["NBS2I_COURSE_UPDATES"] = env
    try:
        assert seed.main(["seed", str(src), str(ws)]) == 0
    finally:
        del os.environ["NBS2I_COURSE_UPDATES"]
    return capsys.readouterr().err.splitlines()


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- the rules -------------------------------------------------------------------------

E = rules.Entry
F = rules.Found


@pytest.mark.parametrize(
    ("updates", "entry", "found", "expected"),
    [
        (True, None, F("missing"), rules.COPY),
        (True, E(seeded="v1"), F("missing"), rules.RESTORE),
        (True, E(seeded="v2"), F("missing"), rules.GONE),
        (True, E(seeded=None, offered="v2"), F("missing"), rules.COPY),
        (True, None, F("file", "v2"), rules.CURRENT),
        (True, None, F("file", "mine"), rules.ASIDE),
        (True, None, F("other"), rules.ASIDE),
        (True, E(seeded="v1"), F("file", "v1"), rules.REPLACE),
        (True, E(seeded="v1"), F("file", "mine"), rules.ASIDE),
        (True, E(seeded="v1", offered="v2"), F("file", "mine"), rules.KEEP),
        (True, E(seeded="v1", offered="v1b"), F("file", "mine"), rules.ASIDE),
        (True, E(seeded="v1", offered="v2"), F("other"), rules.KEEP),
        (True, E(seeded="v2"), F("file", "mine"), rules.KEEP),
        (True, E(seeded="v2"), F("other"), rules.KEEP),
        (False, E(seeded="v2"), F("missing"), rules.COPY),
        (False, E(seeded="v1"), F("file"), rules.KEEP),
        (False, None, F("file"), rules.KEEP),
    ],
)
def test_decide(updates: bool, entry: object, found: object, expected: str) -> None:
    assert rules.decide(updates, entry, "v2", found) == expected


def test_names_and_words() -> None:
    assert rules.aside_name("lecture3.ipynb", 1) == "lecture3 (course update).ipynb"
    assert rules.aside_name("data.tar.gz", 2) == "data.tar (course update 2).gz"
    assert rules.aside_name(".bashrc", 1) == ".bashrc (course update)"
    for path in (".jupyter", ".jupyter/x.py", ".local/etc/jupyter/a", ".local/share/jupyter/k"):
        assert rules.excluded(path), path
    for path in (".jupyterx", "x/.jupyter/a.py", ".local/etc/jupyterlab", ".ipython/a.py"):
        assert not rules.excluded(path), path
    assert rules.updates_wanted("Off") == (False, "")
    assert rules.updates_wanted("") == (True, "")
    on, warning = rules.updates_wanted("of")
    assert on and "neither on nor off" in warning


def test_a_manifest_that_is_not_one_is_refused_and_bad_entries_dropped() -> None:
    for junk in (b"[]", b'{"format": 2}', b'{"format": 1, "files": []}'):
        with pytest.raises(ValueError):
            rules.parse_state(junk)
    state = rules.parse_state(
        json.dumps(
            {
                "format": 1,
                "files": {"a": {"seeded": "x"}, "b": {"seeded": 3}, "c": "no"},
                "image": {"a": [1, 2, 3, 4, "x"], "b": [1, "2"]},
                "skipped": [".jupyter"],
            }
        ).encode()
    )
    assert list(state.files) == ["a"] and list(state.image) == ["a"]
    assert rules.parse_state(state.to_json()) == state


# -- three starts ---------------------------------------------------------------------

V1 = {
    "a.ipynb": "a v1",
    "b.ipynb": "b v1",
    "c.ipynb": "c v1",
    "c2.ipynb": "c2 v1",
    "data/d.csv": "d v1",
}
V2 = {
    **V1,
    "a.ipynb": "a v2",
    "b.ipynb": "b v2",
    "c2.ipynb": "c2 v2",
    "data/d.csv": "d v2",
    "e.txt": "e course",
    "same.txt": "same",
    "f.ipynb": "f v2",
}


def test_course_updates_across_three_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = course(tmp_path, "v1", V1), course(tmp_path, "v2", V2)
    ws = tmp_path / "ws"
    ws.mkdir()
    log = run_seed(capsys, v1, ws)
    assert log == [f"nbs2i: course in {ws}: 5 files: 5 added"]
    assert {k: (ws / k).read_text() for k in V1} == V1
    # The student: edits a and the data, deletes c and c2, makes two files of their own.
    write(ws, {"a.ipynb": "a mine", "data/d.csv": "d mine", "e.txt": "e mine", "same.txt": "same"})
    (ws / "c.ipynb").unlink()
    (ws / "c2.ipynb").unlink()

    log = run_seed(capsys, v2, ws)
    assert (ws / "a.ipynb").read_text() == "a mine"
    assert (ws / "a (course update).ipynb").read_text() == "a v2"
    assert (ws / "b.ipynb").read_text() == "b v2"
    assert not (ws / "c.ipynb").exists()  # deleted, and the course did not change it
    assert (ws / "c2.ipynb").read_text() == "c2 v2"  # deleted, but the course has a new one
    assert (ws / "data/d.csv").read_text() == "d mine"
    assert (ws / "data/d (course update).csv").read_text() == "d v2"
    assert (ws / "e.txt").read_text() == "e mine"
    assert (ws / "e (course update).txt").read_text() == "e course"
    assert not (ws / "same (course update).txt").exists()  # the same content: nothing to say
    assert (ws / "f.ipynb").read_text() == "f v2"
    note = (ws / rules.NOTE).read_text()
    told = [line for line in log if "course update:" in line]
    assert len(told) == 5, log  # a, c2, d, e, and where the note is
    for name in ("a.ipynb", "c2.ipynb", "data/d.csv", "e.txt"):
        assert f"- {name}: " in note and any(f"update: {name}: " in t for t in told)
    assert log[-1].endswith(
        "8 files: 1 added, 1 updated, 1 restored, 3 changed by you (new version beside),"
        " 1 deleted by you, 1 up to date"
    ), log[-1]

    before = snapshot(ws)
    log = run_seed(capsys, v2, ws)
    assert snapshot(ws) == before  # not a byte, not a time, not an inode
    assert log == [
        f"nbs2i: course in {ws}: 8 files: 3 changed by you, 1 deleted by you, 4 up to date"
    ]


def test_a_restart_hashes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = course(tmp_path, "v1", V1)
    ws = tmp_path / "ws"
    ws.mkdir()
    run_seed(capsys, v1, ws)
    write(ws, {"a.ipynb": "a mine"})
    log = run_seed(capsys, v1, ws)  # the edit is hashed once...
    assert log == [f"nbs2i: course in {ws}: 5 files: 1 changed by you, 4 up to date"]
    assert not list(ws.glob("*course update*"))  # the same version: nothing to offer
    calls: list[int] = []
    real = seed.sha256_fd

    def counted(fd: int) -> str:
        calls.append(fd)
        return str(real(fd))

    monkeypatch.setattr(seed, "sha256_fd", counted)
    run_seed(capsys, v1, ws)
    assert calls == []  # ...and never again


def test_a_new_version_replaces_the_aside_copy_the_student_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_seed(capsys, course(tmp_path, "v1", {"a.ipynb": "v1"}), ws)
    write(ws, {"a.ipynb": "mine"})
    run_seed(capsys, course(tmp_path, "v2", {"a.ipynb": "v2"}), ws)
    run_seed(capsys, course(tmp_path, "v3", {"a.ipynb": "v3"}), ws)
    assert (ws / "a (course update).ipynb").read_text() == "v3"
    write(ws, {"a (course update).ipynb": "v3 and mine"})
    run_seed(capsys, course(tmp_path, "v4", {"a.ipynb": "v4"}), ws)
    assert (ws / "a (course update).ipynb").read_text() == "v3 and mine"
    assert (ws / "a (course update 2).ipynb").read_text() == "v4"
    assert (ws / "a.ipynb").read_text() == "mine"


def test_updates_off_only_adds_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_seed(capsys, course(tmp_path, "v1", V1), ws, env="off")
    write(ws, {"a.ipynb": "a mine"})
    (ws / "c.ipynb").unlink()
    log = run_seed(capsys, course(tmp_path, "v2", V2), ws, env="off")
    assert (ws / "a.ipynb").read_text() == "a mine"
    assert (ws / "b.ipynb").read_text() == "b v1"  # never replaced
    assert (ws / "c.ipynb").read_text() == "c v1"  # what is missing is copied
    assert (ws / "f.ipynb").read_text() == "f v2"
    assert not list(ws.glob("*course update*")) and not (ws / rules.NOTE).exists()
    assert log == [
        f"nbs2i: course in {ws}: 8 files: 4 added, 4 already there"
        " (NBS2I_COURSE_UPDATES=off: files already there are never replaced)"
    ]


def test_configuration_is_never_seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = {
        ".jupyter/jupyter_server_config.py": "c.ServerApp.token = ''",
        ".jupyter/lab/user-settings/x.json": "{}",
        ".local/etc/jupyter/jupyter_server_config.json": "{}",
        ".config/jupyter/jupyter_server_config.py": "",
        ".local/share/jupyter/labextensions/evil/package.json": "{}",
        ".nbs2i/course.json": "{}",
        ".ipython/profile_default/startup/00.py": "print('kernel side')",
        "lecture.ipynb": "{}",
    }
    ws = tmp_path / "ws"
    ws.mkdir()
    log = run_seed(capsys, course(tmp_path, "v1", hostile), ws)
    assert (ws / "lecture.ipynb").exists()
    assert (ws / ".ipython/profile_default/startup/00.py").exists()  # the kernel's domain
    for rel in (".jupyter", ".local/etc/jupyter", ".config/jupyter", ".local/share/jupyter"):
        assert not (ws / rel).exists(), rel
    assert json.loads((ws / ".nbs2i/course.json").read_bytes())["format"] == 1
    skipped = [line for line in log if "not copied from the course" in line]
    assert len(skipped) == 1 and ".jupyter" in skipped[0] and "from the image" in skipped[0]
    assert not any("not copied" in line for line in run_seed(capsys, tmp_path / "v1", ws))


def test_nothing_is_written_through_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes").symlink_to(outside)
    (ws / "a.ipynb").symlink_to(outside / "a.ipynb")
    src = course(tmp_path, "v1", {"notes/x.txt": "x", "a.ipynb": "a"})
    (src / "link").symlink_to("a.ipynb")
    log = run_seed(capsys, src, ws)
    assert list(outside.iterdir()) == []
    assert (ws / "a.ipynb").is_symlink() and (ws / "a (course update).ipynb").read_text() == "a"
    assert os.readlink(ws / "link") == "a.ipynb"  # the course's own link, as a link
    assert any("notes/ of the course not copied" in line for line in log), log


def test_a_broken_manifest_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_seed(capsys, course(tmp_path, "v1", {"a.ipynb": "v1", "b.ipynb": "v1"}), ws)
    write(ws, {"a.ipynb": "mine", ".nbs2i/course.json": "{not json"})
    log = run_seed(capsys, course(tmp_path, "v2", {"a.ipynb": "v2", "b.ipynb": "v2"}), ws)
    assert any("ignoring .nbs2i/course.json" in line for line in log), log
    assert (ws / "a.ipynb").read_text() == "mine"
    assert (ws / "b.ipynb").read_text() == "v1"  # unknown history: kept, the new one beside
    assert (ws / "b (course update).ipynb").read_text() == "v2"


def test_file_names_cannot_reach_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_seed(capsys, course(tmp_path, "v1", {"\x1b[2Jx.txt": "v1"}), ws)
    write(ws, {"\x1b[2Jx.txt": "mine"})
    log = run_seed(capsys, course(tmp_path, "v2", {"\x1b[2Jx.txt": "v2"}), ws)
    assert any("?[2Jx.txt" in line for line in log) and not any("\x1b" in x for x in log)
