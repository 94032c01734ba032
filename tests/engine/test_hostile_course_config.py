"""A course's Jupyter configuration cannot switch authentication off.

Many tutorials tell readers to put `c.ServerApp.token = ''` in a config file.
A course that ships one (in .jupyter/, the user-site and platformdirs config
dirs, next to the notebooks) is built with the real builder and started the
way `nbs2i run` and a real JupyterHub start it; so is a volume on which an
older image left such a file in HOME, and a container whose environment
points Jupyter's search path at one. Every config file here, when Python
executes it, leaves a marker under /tmp: none may appear, the API and
terminals must refuse a request without credentials, and the file must not
reach HOME.
"""

from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest
import websocket

from nbs2i import restricted, run
from nbs2i.engine import Engine
from tests.support.hub import HubError, HubSettings, Student, hub_tools, running_hub
from tests.support.images import build_notebooks
from tests.support.jupyter import Api, new_notebook
from tests.support.lab import http_session
from tests.support.session import LABEL_PAIRS, LABELS, tag
from tests.support.tracker import Tracker

MARKER = "/tmp/nbs2i-hostile-config-read"
TOKEN = uuid.uuid4().hex


def hostile_py(where: str) -> str:
    """A config file that would open the server to anyone, and says it ran."""
    return (
        f"open({MARKER + '-' + where.replace('/', '_')!r}, 'w').close()\n"
        "c.ServerApp.token = ''\n"
        "c.IdentityProvider.token = ''\n"
        "c.ServerApp.password = ''\n"
        "c.ServerApp.disable_check_xsrf = True\n"
        "c.ServerApp.allow_unauthenticated_access = True\n"
        "c.ServerApp.tornado_settings = {'headers': {'X-Hostile': 'read'}}\n"
    )


HOSTILE_JSON = json.dumps({"ServerApp": {"token": "", "disable_check_xsrf": True}})
# Everywhere Jupyter could find configuration in a HOME (and the notebook
# folder itself, which jupyter_core does not search: proven here too).
CONFIG_FILES = {
    ".jupyter/jupyter_server_config.py": hostile_py(".jupyter"),
    ".jupyter/jupyter_server_config.json": HOSTILE_JSON,
    ".jupyter/jupyter_lab_config.py": hostile_py(".jupyter/lab"),
    ".jupyter/jupyter_server_config.d/open.json": HOSTILE_JSON,
    ".local/etc/jupyter/jupyter_server_config.py": hostile_py(".local/etc"),
    ".config/jupyter/jupyter_server_config.py": hostile_py(".config"),
    "jupyter_server_config.py": hostile_py("top"),
    "jupyter_config.py": hostile_py("top-jupyter_config"),
}
NEVER_SEEDED = (".jupyter/", ".local/etc/jupyter/", ".config/jupyter/")


@pytest.fixture(scope="module")
def hostile_image(
    engine: Engine, session_tracker: Tracker, builder_image: str, tmp_path_factory: Any
) -> str:
    source: Path = tmp_path_factory.mktemp("hostile-config")
    for rel, text in {**CONFIG_FILES, "lecture.ipynb": json.dumps(new_notebook("x"))}.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text(text, encoding="utf-8")
    made = build_notebooks(
        engine, source, tag(f"hostile-config-{uuid.uuid4().hex[:6]}"), builder_image
    )
    for image in made:
        session_tracker.image(image)
    return made[0]


def markers(engine: Engine, container: str) -> str:
    return engine.exec(container, ["sh", "-c", f"ls {MARKER}* 2>/dev/null || true"]).output.strip()


def assert_locked(engine: Engine, container: str, port: int, token: str = TOKEN) -> None:
    """Nothing without credentials; no hostile file ran."""
    anonymous = Api(port)
    assert anonymous.call("GET", "/api/contents", auth=False)[0] == 403
    assert anonymous.call("POST", "/api/terminals", {}, auth=False)[0] == 403
    api = Api(port, token)
    status, terminal = api.call("POST", "/api/terminals", {})
    assert status == 200, status
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(
            f"ws://{restricted.LOOPBACK}:{port}/terminals/websocket/{terminal['name']}", timeout=10
        )
    answer = http_session().get(
        f"http://{restricted.LOOPBACK}:{port}/api/contents",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert answer.status_code == 200 and "X-Hostile" not in answer.headers
    assert markers(engine, container) == ""


def start(engine: Engine, track: Tracker, image: str, volume: str, **env: str) -> run.Server:
    request = run.RunRequest(
        image=image,
        port=0,
        volume=volume,
        token=TOKEN,
        env=tuple(env.items()),
        labels=LABEL_PAIRS,
    )
    server = run.start(engine, request)
    track.container(server.container_id)
    return server


def plant(engine: Engine, container: str, home: str) -> None:
    """What an older image's seeding (or a student) left on the volume."""
    script = "".join(
        f"mkdir -p {shlex.quote(str(Path(home, rel).parent))} && "
        f"printf %s {shlex.quote(text)} > {shlex.quote(str(Path(home, rel)))} && "
        for rel, text in CONFIG_FILES.items()
    )
    found = engine.exec(container, ["sh", "-c", script + "echo planted"])
    assert found.output.strip().endswith("planted"), found.output


def test_a_course_config_never_reaches_the_server(
    engine: Engine, track: Tracker, hostile_image: str
) -> None:
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:10]}", LABELS))
    server = start(engine, track, hostile_image, volume)
    assert_locked(engine, server.container_id, server.port)
    never = [rel for rel in CONFIG_FILES if rel.startswith(NEVER_SEEDED)]
    paths = " ".join(shlex.quote(f"{restricted.HOME}/{rel}") for rel in never)
    found = engine.exec(server.container_id, ["sh", "-c", f"ls {paths} 2>/dev/null || true"])
    assert found.output.strip() == "", found.output
    log = engine.logs(server.container_id)
    assert "nbs2i: not copied from the course: .config/jupyter, .jupyter, .local/etc/jupyter" in log
    assert "Jupyter's configuration comes from the image" in log


def test_a_config_already_on_the_volume_or_named_by_the_environment_is_not_read(
    engine: Engine, track: Tracker, hostile_image: str
) -> None:
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:10]}", LABELS))
    first = start(engine, track, hostile_image, volume)
    plant(engine, first.container_id, restricted.HOME)
    engine.stop(first.container_id, timeout=restricted.STOP_GRACE)

    steering = {
        "JUPYTER_CONFIG_DIR": f"{restricted.HOME}/.jupyter",
        "JUPYTER_CONFIG_PATH": f"{restricted.HOME}/.local/etc/jupyter",
        "JUPYTER_PLATFORM_DIRS": "1",
        "XDG_CONFIG_DIRS": restricted.HOME + "/.config",
    }
    for env in ({}, steering):
        server = start(engine, track, hostile_image, volume, **env)
        assert_locked(engine, server.container_id, server.port)
        seen = Api(server.port, TOKEN).run_in_kernel(
            "import os; print(os.environ.get('JUPYTER_CONFIG_DIR'),"
            " os.environ.get('JUPYTER_CONFIG_PATH'), os.environ.get('JUPYTER_PLATFORM_DIRS'))"
        )
        assert seen.split() == ["/etc/nbs2i/jupyter", "None", "None"], seen
        log = engine.logs(server.container_id)
        said = next(
            (ln for ln in log.splitlines() if ln.startswith("nbs2i: warning: ignoring ")), ""
        )
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_CONFIG_PATH", "JUPYTER_PLATFORM_DIRS"):
            assert (f" {name}" in said) == bool(env), (name, log)
        engine.stop(server.container_id, timeout=restricted.STOP_GRACE)


@pytest.mark.slow
def test_jupyterhub_singleuser_reads_no_course_or_home_config(
    engine: Engine, hostile_image: str
) -> None:
    major = engine.inspect_image(hostile_image).config.labels.get("io.nbs2i.jupyterhub-major", "6")
    try:
        tools = hub_tools(major)
    except HubError as exc:
        pytest.fail(str(exc), pytrace=False)
    with running_hub(engine, tools, HubSettings(image=hostile_image, students=("erin",))) as hub:
        erin = Student(hub, "erin")
        erin.log_in()
        erin.spawn()
        container = hub.container("erin")
        assert markers(engine, container) == ""
        plant(engine, container, restricted.HOME)
        erin.stop()
        erin.spawn()
        assert markers(engine, hub.container("erin")) == ""
        anonymous = http_session().get(erin.url("/api/contents"), timeout=30)
        assert anonymous.status_code == 403, anonymous.status_code
        answer = erin.api("GET", "/contents")
        assert answer.status_code == 200 and "X-Hostile" not in answer.headers
        assert "lecture.ipynb" in erin.names()
        erin.stop()
