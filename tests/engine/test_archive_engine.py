"""The source tar, streamed into a real container: what arrives is what was meant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbs2i.archive import TarFile, tar_stream
from nbs2i.engine import ContainerSpec, Engine
from nbs2i.errors import SourceError
from tests.support.session import LABELS
from tests.support.tracker import Tracker

pytestmark = pytest.mark.matrix

UID = 1000680000  # OpenShift-style: beyond what plain ustar headers hold
EPOCH = 1_700_000_000


@pytest.fixture
def container(engine: Engine, track: Tracker) -> str:
    spec = ContainerSpec(
        "debian:bookworm-slim", command=("sleep", "300"), labels=LABELS, network="none"
    )
    cid = track.container(engine.create_container(spec))
    engine.start(cid)
    return cid


def sh(engine: Engine, cid: str, script: str) -> str:
    result = engine.exec(cid, ["sh", "-c", script])
    assert result.exit_code == 0, result.output
    return result.output


def make_tree(root: Path) -> None:
    (root / "nb").mkdir(parents=True)
    (root / "nb" / "lecture.ipynb").write_text("{}")
    (root / "nb" / "lecture.ipynb").chmod(0o644)
    os.utime(root / "nb" / "lecture.ipynb", (EPOCH + 500, EPOCH + 500))  # after the commit
    (root / "data.csv").write_text("a,b\n")
    (root / "data.csv").chmod(0o600)
    os.utime(root / "data.csv", (EPOCH - 500, EPOCH - 500))  # before it
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o4755)
    (root / "nb" / "data.csv").symlink_to("../data.csv")
    os.link(root / "data.csv", root / "hard.csv")
    long_dir = root / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("f" * 120 + ".ipynb")).write_text("long")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


def test_owners_modes_times_and_links_arrive(
    engine: Engine, container: str, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    make_tree(root)
    extra = [TarFile("scripts/assemble", data=b"#!/bin/sh\necho hi\n", mode=0o755)]
    engine.put_archive(container, "/tmp", tar_stream(root, uid=UID, epoch=EPOCH, extra=extra))

    long_rel = "d" * 120 + "/" + "f" * 120 + ".ipynb"
    out = sh(
        engine,
        container,
        "cd /tmp && stat -c '%n %u %g %a %Y %F' src src/nb src/nb/lecture.ipynb src/data.csv "
        f"src/run.sh src/hard.csv src/nb/data.csv src/{long_rel} scripts scripts/assemble",
    )
    seen = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    u, g = str(UID), "0"
    assert seen["src"][:4] == [u, g, "775", str(EPOCH)]
    assert seen["src/nb"][:4] == [u, g, "775", str(EPOCH)]
    assert seen["src/nb/lecture.ipynb"][:4] == [u, g, "664", str(EPOCH)]  # clamped
    assert seen["src/data.csv"][:4] == [u, g, "660", str(EPOCH - 500)]  # older: kept
    assert seen["src/run.sh"][:4] == [u, g, "775", str(EPOCH)]  # setuid dropped
    assert seen["src/hard.csv"][:3] == [u, g, "660"]
    assert " ".join(seen["src/hard.csv"][4:]) == "regular file"
    assert " ".join(seen["src/nb/data.csv"][4:]) == "symbolic link"
    assert seen["src/nb/data.csv"][:2] == [u, g]
    assert seen[f"src/{long_rel}"][:3] == [u, g, "664"]
    assert seen["scripts"][:3] == [u, g, "775"]
    assert seen["scripts/assemble"][:3] == [u, g, "775"]

    assert sh(engine, container, "readlink /tmp/src/nb/data.csv").strip() == "../data.csv"
    assert sh(engine, container, "cat /tmp/src/nb/data.csv") == "a,b\n"  # resolves inside
    assert sh(engine, container, f"cat /tmp/src/{long_rel}") == "long"
    assert sh(engine, container, "test ! -e /tmp/src/.git && echo gone").strip() == "gone"
    # The arbitrary UID in group 0 can write everything it was given.
    out = sh(
        engine,
        container,
        "setpriv --reuid=1234567 --regid=0 --clear-groups sh -c "
        "'echo x >> /tmp/src/nb/lecture.ipynb && mkdir /tmp/src/nb/new && echo ok'",
    )
    assert out.strip() == "ok"


def test_outside_symlink_stops_the_upload(engine: Engine, container: str, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.ipynb").write_text("{}")
    (root / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(SourceError, match="symlink passwd points outside the source"):
        engine.put_archive(container, "/tmp", tar_stream(root, uid=UID, epoch=EPOCH))
    # Nothing that follows the bad link was unpacked.
    assert sh(engine, container, "test ! -e /tmp/src/passwd && echo none").strip() == "none"
