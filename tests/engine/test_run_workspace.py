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

from nbs2i import run
from nbs2i.engine import Engine
from nbs2i.errors import RunError
from tests.conftest import SESSION_ID, TEST_LABELS, Tracker
from tests.engine.run_support import (
    LABEL_PAIRS,
    LECTURES,
    SAMPLE,
    Api,
    build_notebooks,
    cells_text,
    kernel_runs,
    new_notebook,
    with_cell,
)

EDITED = LECTURES[0]


@pytest.fixture
def image(sample_build: Any) -> str:
    return str(sample_build.tag)


def volume_name(track: Tracker) -> str:
    return track.volume(f"nbs2i-test-ws-{SESSION_ID}-{uuid.uuid4().hex[:6]}")


def start(engine: Engine, track: Tracker, image: str, **kw: object) -> run.Server:
    server = run.start(engine, run.RunRequest(image=image, port=0, labels=LABEL_PAIRS, **kw))  # type: ignore[arg-type]
    track.container(server.container_id)
    return server


def other_uid(uid: int) -> int:
    return uid + 1 if uid < run.UID_MAX else run.UID_MIN


def test_edits_survive_a_newer_image_and_a_new_uid(
    builder_image: str,
    engine: Engine,
    image: str,
    track: Tracker,
    session_tracker: Tracker,
    tmp_path: Path,
) -> None:
    volume = volume_name(track)
    first = start(engine, track, image, volume=volume)
    assert first.workspace == run.Workspace("volume", volume, created=True)
    api = Api(first.port, first.token)
    assert set(LECTURES) <= set(api.names())
    student = f"student edit {uuid.uuid4().hex}"
    assert api.save_notebook(EDITED, with_cell(api.notebook(EDITED), student)) == 200
    assert api.save_text("my-notes.txt", "written by the first UID\n") == 201
    # The student ran code too: IPython and Jupyter left their files in HOME.
    assert kernel_runs(engine, first.container_id, api, "x = 1") == "ok"
    stopped = run.stop(engine, first.name)
    assert stopped.workspace == volume  # the volume stays

    # The teacher's next version: one more notebook, and a change to the edited one.
    newer = tmp_path / "v2"
    shutil.copytree(SAMPLE, newer)
    (newer / "05-new-lecture.ipynb").write_text(
        json.dumps(new_notebook("week five")), encoding="utf-8"
    )
    teacher = f"teacher change {uuid.uuid4().hex}"
    nb = json.loads((newer / EDITED).read_text(encoding="utf-8"))
    (newer / EDITED).write_text(json.dumps(with_cell(nb, teacher)), encoding="utf-8")
    tag = f"nbs2i-test/run-sample-v2:{SESSION_ID}"
    build_notebooks(engine, session_tracker, newer, tag, builder_image)

    second = start(engine, track, tag, volume=volume, uid=other_uid(first.uid))
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
    assert kernel_runs(engine, second.container_id, api, code) == "ok"
    assert api.call("GET", "/api/contents/kernel.txt")[1]["content"] == str(second.uid)
    run.stop(engine, second.name)


def test_z2jh_volume_on_home_with_plain_docker_run(
    engine: Engine, image: str, track: Tracker
) -> None:
    """KubeSpawner mounts the user's volume on /home/jovyan and runs the image's own CMD."""
    volume = track.volume(f"nbs2i-test-z2jh-{SESSION_ID}-{uuid.uuid4().hex[:6]}")
    engine.create_volume(volume, labels=TEST_LABELS)
    uid_a, uid_b = run.choose_uid(None), 0
    while uid_b in (0, uid_a):
        uid_b = run.choose_uid(None)

    def plain_run(uid: int) -> tuple[str, Api]:
        token = run.new_token()
        cid = track.container(
            engine.create_container(
                image,
                user=f"{uid}:0",
                environment={"JUPYTER_TOKEN": token},
                labels=TEST_LABELS,
                ports=[8888],
                host_config={
                    "binds": {volume: {"bind": "/home/jovyan", "mode": "rw"}},
                    "port_bindings": {8888: ("127.0.0.1",)},
                },
            )
        )
        engine.start(cid)
        port = run.published_port(engine, cid, 8888)
        assert port is not None
        try:
            run.wait_until_ready(engine, cid, port, token, 60)
        except RunError as exc:
            pytest.fail(f"{exc}\n{exc.details}")
        return cid, Api(port, token)

    cid, api = plain_run(uid_a)
    # The image's notebooks were seeded into the volume although it hides /home/jovyan.
    assert set(LECTURES) <= set(api.names())
    assert api.save_text("from-a.txt", "A\n") == 201
    # Files a student's code writes (a kernel is a child of the server: umask 0002).
    code = "import os; os.makedirs('project'); open('project/a.txt', 'w').write('a')"
    assert kernel_runs(engine, cid, api, code) == "ok"
    engine.stop(cid, timeout=10)
    engine.remove_container(cid)

    cid, api = plain_run(uid_b)
    owners = engine.exec(cid, ["stat", "-c", "%u:%g %A %n", "/home/jovyan/from-a.txt"]).output
    assert owners.startswith(f"{uid_a}:0 -rw-rw-"), owners  # A's file, group 0, g+w
    assert api.save_text("from-a.txt", "A then B\n") == 200
    assert api.save_notebook(EDITED, with_cell(api.notebook(EDITED), "B")) == 200
    code = "open('project/a.txt', 'a').write('b'); open('project/b.txt', 'w').write('b')"
    assert kernel_runs(engine, cid, api, code) == "ok"
    assert api.call("GET", "/api/contents/project/a.txt")[1]["content"] == "ab"
    engine.stop(cid, timeout=10)


def test_bind_mounted_directory(engine: Engine, image: str, track: Tracker, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, os.getuid(), 0)
    os.chmod(work, 0o2775)
    server = start(engine, track, image, volume=str(work))
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
    volume = track.volume(f"nbs2i-test-ro-{SESSION_ID}-{uuid.uuid4().hex[:6]}")
    engine.create_volume(volume, labels=TEST_LABELS)
    # Make the volume root root:root 0755 with one file in it (so the engine
    # does not copy the image's /home/jovyan ownership into it).
    cid = track.container(
        engine.create_container(
            image, user="0:0", labels=TEST_LABELS, host_config={"binds": {volume: {"bind": "/v"}}}
        )
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("keep.txt")
        info.size = 3
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(b"old"))
    engine.put_archive(cid, "/v", buf.getvalue())
    engine.remove_container(cid)

    with pytest.raises(RunError, match="exited during start-up") as exc:
        start(engine, track, image, volume=volume)
    assert "/home/jovyan is a volume that uid" in exc.value.details
    assert "cannot write" in exc.value.details
    assert engine.containers(labels=[f"nbs2i.test.session={SESSION_ID}", "nbs2i.role=run"]) == []
