"""The image under a real JupyterHub: JupyterHub and DockerSpawner from PyPI,
configurable-http-proxy from npm (`make hub-tools`), students who log in
through the login form and work through the proxy (tests/support/hub.py).

Every student's container runs as a random UID with GID 0, read-only root,
tmpfs /tmp, no capabilities, no-new-privileges, with a volume of its own on
HOME. The first test is a class of three with one student coming back under
another UID; the others are the spawner settings a hub administrator changes
(Spawner.args, Spawner.cmd, Spawner.notebook_dir) and the builder's other
JupyterHub major against a hub of that major.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from nbs2i.defaults import JUPYTERHUB_MAJOR
from nbs2i.engine import Engine
from nbs2i.restricted import random_uid
from tests.support import docker_api
from tests.support.builds import LECTURES
from tests.support.hub import (
    HUB_LABEL,
    Hub,
    HubError,
    HubSettings,
    HubTools,
    Student,
    hub_tools,
    running_hub,
)

pytestmark = pytest.mark.slow

CLASS = ("alice", "bob", "carol")
OTHER_MAJOR = next(m for m in ("6", "5") if m != JUPYTERHUB_MAJOR)
# What a server's log must never say: Jupyter's state in HOME locked another
# UID out, or JupyterLab could not serve an extension.
LOG_PROBLEMS = re.compile(
    r"PermissionError|Permission denied|readonly database|NWRAP_ERROR|uid not found"
    r"|404 GET \S*/lab/extensions/"
)
# Extensions the image ships that a locked data directory hides (the Notebook
# button, syntax highlighting): they must be among the federated ones.
EXPECTED_EXTENSIONS = ("@jupyter-notebook/lab-extension", "jupyterlab_pygments")

# Who the kernel runs as, and what the platform enforces, seen from inside.
PROBE = """
import json, os, pwd
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "name": pwd.getpwuid(os.getuid()).pw_name,
    "home": os.environ["HOME"], "umask": oct(os.umask(0o002)),
    "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
    # group 0 may write here by its mode: only a read-only root says no
    "root_writable": os.access("/opt/app-root/src", os.W_OK),
    "tmp_fs": [l.split()[2] for l in open("/proc/mounts") if l.split()[1] == "/tmp"],
    "server_cmdline": open(f"/proc/{os.getppid()}/cmdline").read().split("\\0"),
}))
"""


def history_probe(marker: str) -> str:
    """Code that counts history entries of earlier sessions holding `marker`
    (spelled in two halves, so that this cell never matches itself) and says
    whether the database is writable."""
    head, tail = marker[:4], marker[4:]
    return (
        "import os\n"
        "hm = get_ipython().history_manager\n"
        f"hits = [s for s, _, _ in hm.search('*' + {head!r} + {tail!r} + '*') "
        "if s != hm.session_number]\n"
        "print(len(hits), str(hm.hist_file), os.access(str(hm.hist_file), os.W_OK))\n"
    )


# -- images ----------------------------------------------------------------------------


def tools_for(major: str) -> HubTools:
    try:
        return hub_tools(major)
    except HubError as exc:
        pytest.fail(str(exc), pytrace=False)


def image_major(engine: Engine, image: str) -> str:
    return engine.inspect_image(image).config.labels.get("io.nbs2i.jupyterhub-major", "")


# -- what a student does -----------------------------------------------------------------


def spawn_all(students: list[Student]) -> dict[str, float]:
    """Every student logs in and presses "Start" at the same time; seconds each
    took from the press to a server that answers through the proxy."""
    with ThreadPoolExecutor(max_workers=len(students)) as pool:
        list(pool.map(Student.log_in, students))
        return dict(
            zip(
                (s.name for s in students),
                pool.map(Student.spawn, students),
                strict=True,
            )
        )


def markdown(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": text}


def edit_lecture(student: Student, marker: str) -> None:
    notebook = student.read_notebook(LECTURES[0])
    notebook["cells"].append(markdown(f"My notes: {marker}"))
    student.save_notebook(LECTURES[0], notebook)


def lecture_has(student: Student, marker: str) -> bool:
    cells = student.read_notebook(LECTURES[0])["cells"]
    return any(marker in "".join(c["source"]) for c in cells)


def probe(student: Student) -> dict[str, Any]:
    run = student.run_code(PROBE)
    assert run.status == "ok", run.error
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def assert_restricted(found: dict[str, Any], uid: int) -> None:
    assert (found["uid"], found["gid"], found["name"]) == (uid, 0, "jovyan"), found
    assert found["umask"] == "0o2", found
    assert found["cap_eff"] == "0000000000000000" and found["no_new_privs"] == "1", found
    assert not found["root_writable"] and found["tmp_fs"] == ["tmpfs"], found


def assert_assets(student: Student) -> None:
    # JupyterLab runs as the hub's single-user app (its hub menu knows the user).
    assert student.lab_config().get("hubUser") == student.name
    statuses = student.extension_assets()
    names = " ".join(statuses)
    for expected in EXPECTED_EXTENSIONS:
        assert f"/lab/extensions/{expected}/" in names, (expected, statuses)
    assert all(status == 200 for status in statuses.values()), statuses


def assert_clean_log(log: str, who: str) -> None:
    problems = [line for line in log.splitlines() if LOG_PROBLEMS.search(line)]
    assert not problems, f"{who}'s server log:\n" + "\n".join(problems[:20])


def assert_nothing_left(engine: Engine, hub: Hub) -> None:
    assert not engine.containers(labels=[f"{HUB_LABEL}={hub.prefix}"])
    assert not any(v.name.startswith(hub.prefix) for v in engine.volumes())
    assert hub.network.name not in docker_api.networks()
    assert not hub.workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(hub.pid, 0)  # the hub, its proxy: the whole process group is gone


def work_once(student: Student, hub: Hub) -> dict[str, Any]:
    """What one student does in a session: the lectures are there, an edit is
    saved, a kernel runs, every JupyterLab asset loads."""
    names = student.names()
    assert set(LECTURES) <= set(names), names
    edit_lecture(student, f"note of {student.name}")
    assert lecture_has(student, f"note of {student.name}")
    found = probe(student)
    assert_restricted(found, hub.uids[student.name])
    assert_assets(student)
    return found


# -- tests -------------------------------------------------------------------------------


def test_a_class_and_a_student_back_under_another_uid(engine: Engine, lecture_image: str) -> None:
    tools = tools_for(image_major(engine, lecture_image) or JUPYTERHUB_MAJOR)
    settings = HubSettings(image=lecture_image, students=CLASS)
    marker = f"hist-{uuid.uuid4().hex[:12]}"
    with running_hub(engine, tools, settings) as hub:
        students = [Student(hub, name) for name in CLASS]
        ready = spawn_all(students)
        assert all(seconds < 120 for seconds in ready.values()), ready
        for student in students:
            found = work_once(student, hub)
            assert found["home"] == "/home/jovyan", found
        alice = students[0]
        assert alice.run_code(f"x = {marker!r}").status == "ok"
        first_log = alice.server_log()
        alice.stop()

        old_uid = hub.uids["alice"]
        hub.set_uid("alice", random_uid())
        assert hub.uids["alice"] != old_uid
        alice.spawn()
        assert lecture_has(alice, "note of alice"), "the edit of the first UID is gone"
        found = probe(alice)
        assert_restricted(found, hub.uids["alice"])
        history = alice.run_code(history_probe(marker))
        assert history.status == "ok", history.error
        hits, hist_file, writable = history.stdout.split()
        assert int(hits) >= 1 and writable == "True", history.stdout
        assert hist_file.startswith("/home/jovyan/"), hist_file
        assert_assets(alice)
        edit_lecture(alice, "second note")
        assert lecture_has(alice, "second note")
        second_log = alice.server_log()
        mismatches = hub.version_warnings()
    assert_clean_log(first_log, f"alice (uid {old_uid})")
    assert_clean_log(second_log, f"alice (uid {hub.uids['alice']})")
    assert not mismatches, mismatches
    assert_nothing_left(engine, hub)


VARIANTS = {
    "spawner-args": HubSettings(
        image="", students=("dana",), args=("--ServerApp.shutdown_no_activity_timeout=3600",)
    ),
    "cmd-jupyterhub-singleuser": HubSettings(
        image="", students=("dana",), cmd=("jupyterhub-singleuser",)
    ),
    "notebook-dir": HubSettings(image="", students=("dana",), notebook_dir="/home/jovyan/data"),
    "default-url": HubSettings(image="", students=("dana",), default_url="/tree"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_spawner_settings_are_honoured(engine: Engine, lecture_image: str, variant: str) -> None:
    settings = dataclasses.replace(VARIANTS[variant], image=lecture_image)
    tools = tools_for(image_major(engine, lecture_image) or JUPYTERHUB_MAJOR)
    with running_hub(engine, tools, settings) as hub:
        dana = Student(hub, "dana")
        dana.log_in()
        dana.spawn()
        if variant == "notebook-dir":
            assert dana.names() == ["weather.csv"], "the root is not Spawner.notebook_dir"
            found = probe(dana)
            assert_restricted(found, hub.uids["dana"])
            assert_assets(dana)
        else:
            found = work_once(dana, hub)
        if variant == "default-url":
            landing = dana.http.get(dana.url("/"), timeout=30)
            assert landing.status_code == 200, landing.status_code
            assert landing.url.endswith("/user/dana/tree"), landing.url
        if variant == "spawner-args":
            assert settings.args[0] in found["server_cmdline"], found
        if variant == "cmd-jupyterhub-singleuser":
            # The interpreter, its -I (the server's Python runs isolated), the script.
            assert any(
                arg.endswith("/opt/jupyter/bin/jupyterhub-singleuser")
                for arg in found["server_cmdline"][1:3]
            ), found
            home = dana.run_code(
                "import os, stat\n"
                "for d in ('.local/share/jupyter', '.ipython/profile_default'):\n"
                "    print(d, oct(stat.S_IMODE(os.stat(os.path.expanduser('~/' + d)).st_mode)))\n"
            )
            assert "0o700" not in home.stdout and "0o775" in home.stdout, home.stdout
        log = dana.server_log()
        dana.stop()
        mismatches = hub.version_warnings()
    assert_clean_log(log, f"dana ({variant})")
    assert not mismatches, mismatches
    assert_nothing_left(engine, hub)


def test_the_other_jupyterhub_major(engine: Engine, other_hub_lectures: str) -> None:
    assert image_major(engine, other_hub_lectures) == OTHER_MAJOR
    tools = tools_for(OTHER_MAJOR)
    assert tools.version.startswith(f"{OTHER_MAJOR}.")
    with running_hub(
        engine, tools, HubSettings(image=other_hub_lectures, students=CLASS[:2])
    ) as hub:
        students = [Student(hub, name) for name in CLASS[:2]]
        spawn_all(students)
        for student in students:
            work_once(student, hub)
        version = students[0].run_code(
            "import subprocess\n"
            "print(subprocess.run(['/opt/jupyter/bin/jupyterhub-singleuser', '--version'],"
            " capture_output=True, text=True).stdout.strip())"
        )
        assert version.stdout.strip().startswith(f"{OTHER_MAJOR}."), version
        logs = {s.name: s.server_log() for s in students}
        for student in students:
            student.stop()
        mismatches = hub.version_warnings()
    for name, log in logs.items():
        assert_clean_log(log, name)
    assert not mismatches, mismatches
    assert_nothing_left(engine, hub)


def test_a_hub_of_the_other_major_is_noticed(engine: Engine, other_hub_lectures: str) -> None:
    """The control for the version checks above: the hub's warning is what
    they look for, and a mismatched image does produce it."""
    tools = tools_for(JUPYTERHUB_MAJOR)
    with running_hub(
        engine, tools, HubSettings(image=other_hub_lectures, students=("erin",))
    ) as hub:
        erin = Student(hub, "erin")
        erin.log_in()
        erin.spawn()
        mismatches = hub.version_warnings()
        erin.stop()
    assert mismatches, "no version warning from a hub of another major"
    assert_nothing_left(engine, hub)
