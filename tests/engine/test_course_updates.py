"""Course updates reach a student who has started, and never cost them an edit.

One volume, three starts (the course's v1, then v2, then v2 again), each
under another random UID with GID 0 on a read-only root: the server started
by the run script (`nbs2i run --volume`), by plain `docker run` with the volume
on /home/jovyan/work (docker-stacks' and DockerSpawner's layout), and by a real
JupyterHub with DockerSpawner in both layouts. The student works through the
contents API as JupyterLab does. Also the opt-out (NBS2I_COURSE_UPDATES=off in
.s2i/environment). The rules themselves, case by case: tests/unit/test_seed.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbs2i import restricted, run
from nbs2i.engine import Engine, Mount
from nbs2i.restricted import random_uid
from tests.support.hub import HubError, HubSettings, Student, hub_tools, running_hub
from tests.support.images import build_notebooks
from tests.support.jupyter import cells_text, new_notebook, with_cell
from tests.support.lab import Lab
from tests.support.session import LABEL_PAIRS, LABELS, tag
from tests.support.tracker import Tracker

TOKEN = uuid.uuid4().hex
WORK = f"{restricted.HOME}/work"
STUDENT = f"student's note {uuid.uuid4().hex[:8]}"
TEACHER = f"teacher's fix {uuid.uuid4().hex[:8]}"
MINE = b"the student's own\n"


def notebook(text: str) -> str:
    return json.dumps(new_notebook(text))


V1 = {
    "a.ipynb": notebook("lecture a"),
    "b.ipynb": notebook("lecture b"),
    "c.ipynb": notebook("lecture c"),
    "data/d.csv": "x,y\n1,2\n",
}
V2 = {
    **V1,
    "a.ipynb": json.dumps(with_cell(json.loads(V1["a.ipynb"]), TEACHER)),
    "b.ipynb": json.dumps(with_cell(json.loads(V1["b.ipynb"]), TEACHER)),
    "data/d.csv": "x,y\n1,2\n3,4\n",
    "e.txt": "the course's e\n",
    "f.ipynb": notebook("lecture f"),
}
OPT_OUT = {".s2i/environment": "NBS2I_COURSE_UPDATES=off\n"}


def write_course(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def courses(
    engine: Engine, session_tracker: Tracker, builder_image: str, tmp_path_factory: Any
) -> dict[str, str]:
    """The course's versions, with updates on and with the opt-out."""
    made = {}
    versions = {
        "v1": V1,
        "v2": V2,
        "off-v1": {**V1, **OPT_OUT},
        "off-v2": {**V2, **OPT_OUT},
    }
    for name, files in versions.items():
        source = write_course(tmp_path_factory.mktemp(name), files)
        images = build_notebooks(
            engine, source, tag(f"course-{name}-{uuid.uuid4().hex[:6]}"), builder_image
        )
        for image in images:
            session_tracker.image(image)
        made[name] = images[0]
    return made


# -- what the student does and sees, through the contents API ----------------------------


def text(lab: Lab, path: str) -> str:
    answer = lab.api("GET", f"/contents/{path}?content=1&format=text&type=file")
    assert answer.status_code == 200, (path, answer.status_code)
    return str(answer.json()["content"])


def listing(lab: Lab) -> dict[str, tuple[str, int]]:
    """Every file of the workspace (not hidden), with its time and size."""
    found = {}
    for folder in ("", "data"):
        answer = lab.api("GET", f"/contents/{folder}")
        assert answer.status_code == 200, answer.status_code
        for item in answer.json()["content"]:
            found[item["path"]] = (item["last_modified"], item.get("size") or 0)
    return found


def first_visit(lab: Lab) -> None:
    """v1: the course is there; the student edits a lecture and the data,
    deletes a lecture, and makes a file of their own."""
    assert {"a.ipynb", "b.ipynb", "c.ipynb", "data"} <= set(lab.names())
    lab.save_notebook("a.ipynb", with_cell(lab.read_notebook("a.ipynb"), STUDENT))
    lab.upload("data/d.csv", MINE)
    lab.upload("e.txt", MINE)
    assert lab.api("DELETE", "/contents/c.ipynb").status_code == 204


def second_visit(lab: Lab) -> None:
    """v2 under another UID: what the student left alone is new, what they
    changed is theirs with the new version beside it, the deleted one stays
    deleted (the course did not change it), and the note says so."""
    names = set(lab.names())
    assert "c.ipynb" not in names
    assert {"a (course update).ipynb", "e (course update).txt", "f.ipynb"} <= names
    a = cells_text(lab.read_notebook("a.ipynb"))
    assert STUDENT in a and TEACHER not in a
    assert TEACHER in cells_text(lab.read_notebook("a (course update).ipynb"))
    assert TEACHER in cells_text(lab.read_notebook("b.ipynb"))
    assert text(lab, "data/d.csv").encode() == text(lab, "e.txt").encode() == MINE
    assert text(lab, "data/d (course update).csv") == V2["data/d.csv"]
    assert text(lab, "e (course update).txt") == V2["e.txt"]
    note = text(lab, "COURSE-UPDATES.md")
    for name in ("a.ipynb", "data/d.csv", "e.txt"):
        assert f"- {name}: " in note, note
    assert "b.ipynb" not in note and "c.ipynb" not in note
    # The student now edits the updated lecture: v2 again has nothing new for it.
    lab.save_notebook("b.ipynb", with_cell(lab.read_notebook("b.ipynb"), STUDENT))


def third_visit(lab: Lab, before: dict[str, tuple[str, int]]) -> None:
    """v2 again, another UID: nothing changed (no copy of a lecture the student
    edited since v2 came); every file, whichever UID wrote it (the first's
    seeding and edits, the second's updates), is writable."""
    assert listing(lab) == before
    for name in ("a.ipynb", "b.ipynb", "f.ipynb", "a (course update).ipynb"):
        lab.save_notebook(name, with_cell(lab.read_notebook(name), "third UID"))
    lab.upload("data/d.csv", b"third UID\n")


def seed_lines(log: str) -> list[str]:
    """What the seeder logged: a summary, updates, configuration not copied."""
    starts = ("nbs2i: course ", "nbs2i: not copied from the course")
    return [line for line in log.splitlines() if line.startswith(starts)]


def check_logs(second: str, third: str, workspace: str) -> None:
    told = "\n".join(seed_lines(second))
    assert "course update: a.ipynb: you changed it" in told, told
    assert "course update: data/d.csv: you changed it" in told, told
    assert "course update: e.txt: the course now has a file of this name" in told, told
    # a restart of the same image says one line
    lines = seed_lines(third)
    assert len(lines) == 1 and lines[0].startswith(f"nbs2i: course in {workspace}: "), lines


def check_manifest(engine: Engine, container: str, workspace: str) -> None:
    found = engine.exec(
        container, ["stat", "-c", "%g %a", f"{workspace}/.nbs2i", f"{workspace}/.nbs2i/course.json"]
    )
    assert found.output.split("\n")[:2] == ["0 775", "0 664"], found.output


# -- starting the server -------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    cid: str
    lab: Lab


def _by_run_script(engine: Engine, track: Tracker, image: str, volume: str, uid: int) -> Started:
    """`nbs2i run --volume`: the volume on /home/jovyan."""
    request = run.RunRequest(
        image=image, port=0, volume=volume, uid=uid, token=TOKEN, labels=LABEL_PAIRS
    )
    server = run.start(engine, request)
    track.container(server.container_id)
    return Started(
        server.container_id, Lab(f"http://{restricted.LOOPBACK}:{server.port}", token=TOKEN)
    )


def _with_work_volume(engine: Engine, track: Tracker, image: str, volume: str, uid: int) -> Started:
    """A spawner's layout: the volume on /home/jovyan/work, a read-only root."""
    spec = restricted.container_spec(
        image, uid=uid, home=Mount(volume, WORK), env={"JUPYTER_TOKEN": TOKEN}, labels=LABELS
    )
    cid = track.container(engine.create_container(spec))
    engine.start(cid)
    port = restricted.published_port(engine.inspect_container(cid), restricted.SERVER_PORT)
    assert port, "no published port"
    try:
        run.await_server(engine, cid, port, TOKEN, run.DEFAULT_TIMEOUT)
    except Exception as exc:
        pytest.fail(f"{exc}\n{engine.logs(cid, tail=40)}")
    return Started(cid, Lab(f"http://{restricted.LOOPBACK}:{port}", token=TOKEN))


LAYOUTS: dict[str, tuple[Callable[[Engine, Tracker, str, str, int], Started], str]] = {
    "volume-on-home": (_by_run_script, restricted.HOME),
    "volume-on-work": (_with_work_volume, WORK),
}


def stop(engine: Engine, cid: str) -> str:
    log = engine.logs(cid)
    engine.stop(cid, timeout=restricted.STOP_GRACE)
    engine.remove_container(cid)
    return log


def three_uids() -> Iterator[int]:
    first = random_uid()
    yield first
    yield first + 1 if first < restricted.UID_MAX else restricted.UID_MIN
    yield first + 2 if first < restricted.UID_MAX - 1 else restricted.UID_MIN + 1


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_three_starts_under_three_uids(
    engine: Engine, track: Tracker, courses: dict[str, str], layout: str
) -> None:
    start, workspace = LAYOUTS[layout]
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:10]}", LABELS))
    uids = three_uids()

    first = start(engine, track, courses["v1"], volume, next(uids))
    first_visit(first.lab)
    stop(engine, first.cid)

    second = start(engine, track, courses["v2"], volume, next(uids))
    second_visit(second.lab)
    before = listing(second.lab)
    second_log = stop(engine, second.cid)

    third = start(engine, track, courses["v2"], volume, next(uids))
    third_visit(third.lab, before)
    check_manifest(engine, third.cid, workspace)
    third_log = stop(engine, third.cid)
    check_logs(second_log, third_log, workspace)


def test_opt_out_only_adds_what_is_missing(
    engine: Engine, track: Tracker, courses: dict[str, str]
) -> None:
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:10]}", LABELS))
    uids = three_uids()
    first = _by_run_script(engine, track, courses["off-v1"], volume, next(uids))
    first_visit(first.lab)
    stop(engine, first.cid)

    second = _by_run_script(engine, track, courses["off-v2"], volume, next(uids))
    lab = second.lab
    names = set(lab.names())
    assert not any("course update" in n for n in names) and "COURSE-UPDATES.md" not in names
    assert "f.ipynb" in names and "c.ipynb" in names  # what was missing is copied
    assert TEACHER not in cells_text(lab.read_notebook("b.ipynb"))  # never overwritten
    assert STUDENT in cells_text(lab.read_notebook("a.ipynb"))
    assert text(lab, "e.txt").encode() == MINE
    log = stop(engine, second.cid)
    assert "NBS2I_COURSE_UPDATES=off" in "\n".join(seed_lines(log))


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_three_starts_under_jupyterhub(
    engine: Engine, courses: dict[str, str], layout: str
) -> None:
    workspace = LAYOUTS[layout][1]
    try:
        tools = hub_tools(
            engine.inspect_image(courses["v1"]).config.labels.get("io.nbs2i.jupyterhub-major", "6")
        )
    except HubError as exc:
        pytest.fail(str(exc), pytrace=False)
    settings = HubSettings(
        image=courses["v1"],
        students=("dana",),
        volume_target=workspace,
        notebook_dir=WORK if workspace == WORK else "",
    )
    with running_hub(engine, tools, settings) as hub:
        dana = Student(hub, "dana")
        dana.log_in()
        dana.spawn()
        first_visit(dana)
        dana.stop()

        hub.set_image("dana", courses["v2"])
        hub.set_uid("dana", random_uid())
        dana.spawn()
        second_visit(dana)
        before = listing(dana)
        second_log = dana.server_log()
        dana.stop()

        hub.set_uid("dana", random_uid())
        dana.spawn()
        third_visit(dana, before)
        check_manifest(engine, hub.container("dana"), workspace)
        third_log = dana.server_log()
        dana.stop()
    check_logs(second_log, third_log, workspace)
