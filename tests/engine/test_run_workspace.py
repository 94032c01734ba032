"""The workspace: student edits survive restarts, new random UIDs and newer images.

End to end through the real engine, the real builder and Jupyter's contents API:
the same volume is used by a first image as one UID, then by a newer image (one
more notebook, and a teacher's change to a notebook the student edited) as
another UID. Also the zero-to-jupyterhub way (a volume on /home/jovyan given by
plain `docker run`, not by nbs2i), a bind-mounted directory, and a volume the UID
cannot write.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from nbs2i import labels, restricted, run
from nbs2i.engine import ContainerSpec, Engine, Mount, PortBinding
from nbs2i.errors import RunError
from tests.support.builds import LECTURES, SAMPLES
from tests.support.images import build_notebooks
from tests.support.jupyter import Api, cells_text, new_notebook, with_cell
from tests.support.session import LABEL_PAIRS, LABELS, SESSION_FILTER, tag
from tests.support.tracker import Tracker

EDITED = LECTURES[0]


@pytest.fixture
def image(sample_build: Any) -> str:
    return str(sample_build.tag)


def volume_name(track: Tracker, what: str) -> str:
    return track.volume(f"nbs2i-test-{what}-{uuid.uuid4().hex[:8]}")


def start(engine: Engine, track: Tracker, request: run.RunRequest) -> run.Server:
    server = run.start(engine, request)
    track.container(server.container_id)
    return server


def other_uid(uid: int) -> int:
    return uid + 1 if uid < restricted.UID_MAX else restricted.UID_MIN


def test_edits_survive_a_newer_image_and_a_new_uid(
    builder_image: str,
    engine: Engine,
    image: str,
    track: Tracker,
    tmp_path: Path,
) -> None:
    volume = volume_name(track, "ws")
    request = run.RunRequest(image=image, port=0, volume=volume, labels=LABEL_PAIRS)
    first = start(engine, track, request)
    assert first.workspace == run.Workspace("volume", volume, created=True)
    api = Api(first.port, first.token)
    assert set(LECTURES) <= set(api.names())
    student = f"student edit {uuid.uuid4().hex}"
    assert api.save_notebook(EDITED, with_cell(api.notebook(EDITED), student)) == 200
    assert api.save_text("my-notes.txt", "written by the first UID\n") == 201
    # The student ran code too: IPython and Jupyter left their files in HOME.
    assert api.run_in_kernel("x = 1; print(x)").strip() == "1"
    stopped = run.stop(engine, first.name)
    assert stopped.workspace == volume  # the volume stays

    # The teacher's next version: one more notebook, and a change to the edited one.
    newer = tmp_path / "v2"
    shutil.copytree(SAMPLES, newer)
    (newer / "05-new-lecture.ipynb").write_text(
        json.dumps(new_notebook("week five")), encoding="utf-8"
    )
    teacher = f"teacher change {uuid.uuid4().hex}"
    nb = json.loads((newer / EDITED).read_text(encoding="utf-8"))
    (newer / EDITED).write_text(json.dumps(with_cell(nb, teacher)), encoding="utf-8")
    v2 = tag(f"run-sample-v2-{uuid.uuid4().hex[:6]}")
    track.image(v2)
    for made in build_notebooks(engine, newer, v2, builder_image):
        track.image(made)

    again = run.RunRequest(
        image=v2, port=0, volume=volume, uid=other_uid(first.uid), labels=LABEL_PAIRS
    )
    second = start(engine, track, again)
    assert second.uid != first.uid
    assert second.workspace == run.Workspace("volume", volume, created=False)
    api = Api(second.port, second.token)
    names = api.names()
    assert "05-new-lecture.ipynb" in names and "my-notes.txt" in names
    text = cells_text(api.notebook(EDITED))
    assert student in text  # the student's edit is intact...
    assert teacher not in text  # ...and was not overwritten by the newer image
    # Both the edited notebook (written by the first UID) and the new one are writable.
    assert api.save_notebook(EDITED, with_cell(api.notebook(EDITED), "second UID")) == 200
    new = api.notebook("05-new-lecture.ipynb")
    assert api.save_notebook("05-new-lecture.ipynb", with_cell(new, "second UID")) == 200
    assert api.save_text("my-notes.txt", "changed by the second UID\n") == 200
    # Kernels run code too: nothing the first UID left in HOME locks the second one out.
    code = "import os; open('kernel.txt', 'w').write(str(os.getuid()))"
    api.run_in_kernel(code)
    assert api.text("kernel.txt") == str(second.uid)
    run.stop(engine, second.name)


def _plain_run(
    engine: Engine, track: Tracker, image: str, volume: str, uid: int
) -> tuple[str, Api]:
    """What KubeSpawner does: the image's own CMD as uid:0, the user's volume on
    /home/jovyan, no nbs2i involved (and no read-only root)."""
    token = run.new_token()
    spec = ContainerSpec(
        image=image,
        user=f"{uid}:0",
        env={"JUPYTER_TOKEN": token},
        labels=LABELS,
        mounts=(Mount(volume, restricted.HOME),),
        ports=(PortBinding(restricted.SERVER_PORT, restricted.LOOPBACK),),
    )
    cid = track.container(engine.create_container(spec))
    engine.start(cid)
    port = restricted.published_port(engine.inspect_container(cid), restricted.SERVER_PORT)
    assert port is not None
    try:
        run.await_server(engine, cid, port, token, run.DEFAULT_TIMEOUT)
    except RunError as exc:
        pytest.fail(f"{exc}\n{exc.details}")
    return cid, Api(port, token)


def test_z2jh_volume_on_home_with_plain_docker_run(
    engine: Engine, image: str, track: Tracker
) -> None:
    volume = volume_name(track, "z2jh")
    engine.create_volume(volume, labels=LABELS)
    uid_a = restricted.random_uid()
    uid_b = other_uid(uid_a)

    cid, api = _plain_run(engine, track, image, volume, uid_a)
    # The image's notebooks were seeded into the volume although it hides /home/jovyan.
    assert set(LECTURES) <= set(api.names())
    assert api.save_text("from-a.txt", "A\n") == 201
    # Files a student's code writes (a kernel is a child of the server: umask 0002).
    api.run_in_kernel("import os; os.makedirs('project'); open('project/a.txt', 'w').write('a')")
    engine.stop(cid, timeout=restricted.STOP_GRACE)
    engine.remove_container(cid)

    cid, api = _plain_run(engine, track, image, volume, uid_b)
    owners = engine.exec(cid, ["stat", "-c", "%u:%g %A %n", "/home/jovyan/from-a.txt"]).output
    assert owners.startswith(f"{uid_a}:0 -rw-rw-"), owners  # A's file, group 0, g+w
    assert api.save_text("from-a.txt", "A then B\n") == 200
    assert api.save_notebook(EDITED, with_cell(api.notebook(EDITED), "B")) == 200
    api.run_in_kernel(
        "open('project/a.txt', 'a').write('b'); open('project/b.txt', 'w').write('b')"
    )
    assert api.text("project/a.txt") == "ab"
    engine.stop(cid, timeout=restricted.STOP_GRACE)


def test_bind_mounted_directory(engine: Engine, image: str, track: Tracker, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, os.getuid(), 0)
    os.chmod(work, 0o2775)
    request = run.RunRequest(image=image, port=0, volume=str(work), labels=LABEL_PAIRS)
    server = start(engine, track, request)
    assert server.workspace == run.Workspace("directory", str(work), created=False)
    api = Api(server.port, server.token)
    assert api.save_notebook(EDITED, with_cell(api.notebook(EDITED), "on the host")) == 200
    run.stop(engine, server.name)
    # The notebooks are on this machine now, group 0 and group-writable.
    for name in LECTURES:
        st = (work / name).stat()
        assert st.st_gid == 0 and st.st_mode & stat.S_IWGRP, (name, oct(st.st_mode))
    assert "on the host" in (work / EDITED).read_text(encoding="utf-8")


def test_volume_the_uid_cannot_write_is_an_error_not_a_silent_tmp_home(
    engine: Engine, image: str, track: Tracker
) -> None:
    """Falling back to a HOME on /tmp would lose the student's work without a word."""
    volume = volume_name(track, "ro")
    engine.create_volume(volume, labels=LABELS)
    # Make the volume root root:root 0755 with one file in it (so the engine
    # does not copy the image's /home/jovyan ownership into it).
    spec = ContainerSpec(image=image, user="0:0", labels=LABELS, mounts=(Mount(volume, "/v"),))
    cid = track.container(engine.create_container(spec))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("keep.txt")
        info.size = 3
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(b"old"))
    engine.put_archive(cid, "/v", buf.getvalue())
    engine.remove_container(cid)

    request = run.RunRequest(image=image, port=0, volume=volume, labels=LABEL_PAIRS)
    with pytest.raises(RunError, match="exited during start-up") as exc:
        start(engine, track, request)
    assert "/home/jovyan is a volume that uid" in exc.value.details
    assert "cannot write" in exc.value.details
    runs = [SESSION_FILTER, f"{labels.ROLE}={labels.ROLE_RUN}"]
    assert engine.containers(labels=runs) == []
