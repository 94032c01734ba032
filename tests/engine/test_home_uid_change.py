"""HOME under a restricted platform, without a hub: one volume used by one
random UID after another, commands the platform replaces, shells opened with
`docker exec` beside the server.

Every container runs as nbs2i.restricted starts it: a random UID with GID 0,
read-only root with a tmpfs /tmp, no capabilities, no-new-privileges, the
port on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import uuid
import zipfile
from pathlib import Path

import pytest

from nbs2i import restricted
from nbs2i.engine import Engine, Mount
from tests.support.builds import LECTURES
from tests.support.lab import Lab
from tests.support.session import LABELS
from tests.support.tracker import Tracker

pytestmark = pytest.mark.slow

TOKEN = uuid.uuid4().hex
READY_SECONDS = 90.0
EXIT_SECONDS = 60.0
# What no log of a server on a shared HOME may say.
LOG_PROBLEMS = re.compile(
    r"PermissionError|Permission denied|readonly database|NWRAP_ERROR|uid not found"
    r"|404 GET \S*/lab/extensions/|temporary cache directory|is not a writable directory"
    r"|Could not set permissions"
)
EXPECTED_EXTENSIONS = ("@jupyter-notebook/lab-extension", "jupyterlab_pygments")
WHEEL_PACKAGE = "nbs2i_tiny"


# -- helpers ---------------------------------------------------------------------------


def start_server(
    engine: Engine, track: Tracker, image: str, uid: int, volume: str = ""
) -> tuple[str, Lab]:
    """The image's own command, as the platform starts it; the container and
    its server, answering."""
    spec = restricted.container_spec(
        image,
        uid=uid,
        home=Mount(volume, restricted.HOME) if volume else None,
        env={"JUPYTER_TOKEN": TOKEN},
        labels=LABELS,
    )
    cid = track.container(engine.create_container(spec))
    engine.start(cid)
    port = restricted.published_port(engine.inspect_container(cid), restricted.SERVER_PORT)
    assert port, "no published port"
    ready = restricted.wait_ready(engine, cid, port, timeout=READY_SECONDS)
    assert ready.ready, f"not ready ({ready}):\n{engine.logs(cid, tail=40)}"
    return cid, Lab(f"http://{restricted.LOOPBACK}:{port}", token=TOKEN)


def stop_server(engine: Engine, cid: str) -> str:
    """SIGTERM as a platform sends it; the server's whole log."""
    engine.stop(cid, timeout=restricted.STOP_GRACE)
    log = engine.logs(cid)
    engine.remove_container(cid)
    return log


def run_command(
    engine: Engine, track: Tracker, image: str, command: tuple[str, ...], volume: str = ""
) -> str:
    """A replaced command under the platform's flags; its output once it exited 0."""
    spec = restricted.container_spec(
        image,
        uid=restricted.random_uid(),
        home=Mount(volume, restricted.HOME) if volume else None,
        labels=LABELS,
    )
    cid = track.container(engine.create_container(dataclasses.replace(spec, command=command)))
    engine.start(cid)
    code = engine.wait(cid, timeout=EXIT_SECONDS)
    output = engine.logs(cid)
    assert code == 0, f"{command} exited {code}:\n{output}"
    return output


def new_volume(engine: Engine, track: Tracker) -> str:
    return track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:10]}", LABELS))


def other_uid(*taken: int) -> int:
    for _ in range(100):
        uid = restricted.random_uid()
        if uid not in taken:
            return uid
    raise AssertionError("no free UID")


def tiny_wheel(directory: Path, version: str) -> Path:
    """A pure-Python wheel with a console script, written by hand: pip needs
    no network and no build backend to install it."""
    dist = f"{WHEEL_PACKAGE}-{version}.dist-info"
    files = {
        f"{WHEEL_PACKAGE}/__init__.py": (
            f"VERSION = {version!r}\n\n\ndef main():\n    print('tiny', VERSION)\n"
        ),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: nbs2i-tiny\nVersion: {version}\n",
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: nbs2i-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist}/entry_points.txt": f"[console_scripts]\nnbs2i-tiny = {WHEEL_PACKAGE}:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    path = directory / f"{WHEEL_PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def pip_user_install(lab: Lab, wheel: Path) -> str:
    """Upload the wheel to HOME and `pip install --user` it from a kernel;
    the version a fresh interpreter then imports."""
    lab.upload(wheel.name, wheel.read_bytes())
    run = lab.run_code(
        "import os, subprocess, sys\n"
        f"w = os.path.expanduser('~/{wheel.name}')\n"
        "r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--user', '--no-index',"
        " '--no-deps', w], capture_output=True, text=True)\n"
        "print('pip', r.returncode, r.stderr[-1500:])\n"
        f"v = subprocess.run([sys.executable, '-c', 'import {WHEEL_PACKAGE}; "
        f"print({WHEEL_PACKAGE}.VERSION)'], capture_output=True, text=True)\n"
        "print('version', v.stdout.strip(), v.stderr[-500:])\n"
    )
    assert run.status == "ok", run.error
    assert "pip 0 " in run.stdout, run.stdout
    return run.stdout.split("version", 1)[1].split()[0]


def assert_assets(lab: Lab) -> None:
    statuses = lab.extension_assets()
    for expected in EXPECTED_EXTENSIONS:
        assert any(f"/lab/extensions/{expected}/" in url for url in statuses), statuses
    assert all(status == 200 for status in statuses.values()), statuses


def assert_clean_log(log: str, who: str) -> None:
    problems = [line for line in log.splitlines() if LOG_PROBLEMS.search(line)]
    assert not problems, f"{who}'s server log:\n" + "\n".join(problems[:20])


def markdown(text: str) -> dict[str, object]:
    return {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": text}


def append_note(lab: Lab, text: str) -> None:
    notebook = lab.read_notebook(LECTURES[0])
    notebook["cells"].append(markdown(text))
    lab.save_notebook(LECTURES[0], notebook)


def history_of_earlier_sessions(lab: Lab, marker: str) -> tuple[int, bool]:
    """How many entries of earlier kernels hold `marker` (spelled in halves so
    this cell never matches itself), and whether the database is writable."""
    run = lab.run_code(
        "import os\n"
        "hm = get_ipython().history_manager\n"
        f"hits = [s for s, _, _ in hm.search('*' + {marker[:4]!r} + {marker[4:]!r} + '*')"
        " if s != hm.session_number]\n"
        "print(len(hits), os.access(str(hm.hist_file), os.W_OK), hm.hist_file)\n"
    )
    assert run.status == "ok", run.error
    hits, writable, _ = run.stdout.split()
    return int(hits), writable == "True"


# IPython makes these 0700 whatever the umask and puts nothing there that a
# kernel reads (connection files live in the runtime dir under /tmp); it only
# chmods them when their mode differs, so another UID's 0700 copy is left alone.
IPYTHON_PRIVATE = re.compile(r"/\.ipython/profile_default/(pid|security)\b")


def group_locked(engine: Engine, cid: str) -> list[str]:
    """What in HOME group 0 could not write (the next UID would be locked out)."""
    result = engine.exec(
        cid, ["find", restricted.HOME, "!", "-perm", "-g=w", "-printf", "%m %u %p\\n"]
    )
    lines = (line for line in result.output.splitlines() if line.strip())
    return [line for line in lines if not IPYTHON_PRIVATE.search(line)]


# -- tests -------------------------------------------------------------------------------


def test_next_uid_on_the_same_volume_uses_everything_the_first_left(
    engine: Engine, track: Tracker, lecture_image: str, tmp_path: Path
) -> None:
    volume = new_volume(engine, track)
    marker = f"hist-{uuid.uuid4().hex[:12]}"
    uid_a = restricted.random_uid()
    cid, lab = start_server(engine, track, lecture_image, uid_a, volume)
    assert_assets(lab)
    assert pip_user_install(lab, tiny_wheel(tmp_path, "1.0")) == "1.0"
    assert lab.run_code(f"x = {marker!r}").status == "ok"
    append_note(lab, "first uid")
    locked = group_locked(engine, cid)
    log_a = stop_server(engine, cid)

    uid_b = other_uid(uid_a)
    cid, lab = start_server(engine, track, lecture_image, uid_b, volume)
    assert_assets(lab)
    hits, writable = history_of_earlier_sessions(lab, marker)
    assert hits >= 1 and writable, (hits, writable)
    # The next UID upgrades what the first installed: pip removes its files.
    assert pip_user_install(lab, tiny_wheel(tmp_path, "2.0")) == "2.0"
    tool = lab.run_code(
        "import subprocess; print(subprocess.run(['nbs2i-tiny'], capture_output=True,"
        " text=True).stdout)"
    )
    assert "tiny 2.0" in tool.stdout, tool
    append_note(lab, "second uid")
    text = json.dumps(lab.read_notebook(LECTURES[0]))
    assert "first uid" in text and "second uid" in text
    locked += group_locked(engine, cid)
    log_b = stop_server(engine, cid)

    assert_clean_log(log_a, f"uid {uid_a}")
    assert_clean_log(log_b, f"uid {uid_b}")
    assert not locked, "not group-writable in HOME:\n" + "\n".join(locked)


def test_matplotlib_cache_and_figures_survive_a_uid_change(
    engine: Engine, track: Tracker, lecture_image: str
) -> None:
    probe = run_command(
        engine, track, lecture_image, ("python3", "-c", "import matplotlib; print('mpl ok')")
    )
    if "mpl ok" not in probe:
        pytest.skip(f"matplotlib is not in {lecture_image}'s kernel environment")
    volume = new_volume(engine, track)
    plot = (
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt, os\n"
        "plt.plot([1, 2, 3]); plt.title('t')\n"
        "plt.savefig(os.path.expanduser('~/plot.png'))\n"
        "print(matplotlib.get_cachedir())\n"
    )
    logs = []
    for uid in (restricted.random_uid(), restricted.random_uid()):
        cid, lab = start_server(engine, track, lecture_image, uid, volume)
        run = lab.run_code(plot, timeout=120)
        assert run.status == "ok", run.error
        assert run.stdout.strip().endswith("/home/jovyan/.cache/matplotlib"), run.stdout
        assert "temporary cache directory" not in run.stdout, run.stdout
        assert "plot.png" in lab.names()
        logs.append((uid, stop_server(engine, cid)))
    for uid, log in logs:
        assert_clean_log(log, f"uid {uid}")


SHELL_PROBE = (
    'printf "name=%s\\nhome=%s\\numask=%s\\nfiles=%s\\n"'
    ' "$(id -un)" "$HOME" "$(umask)" "$(ls "$HOME" | tr "\\n" " ")"'
)
PYTHON_PROBE = (
    "import os, pwd; h = os.environ['HOME']; "
    "print(f'name={pwd.getpwuid(os.getuid()).pw_name}'); print(f'home={h}'); "
    "print(f'umask={os.umask(0):04o}'); print('files=' + ' '.join(sorted(os.listdir(h))))"
)
COMMANDS = {
    "bash -lc": ("bash", "-lc", SHELL_PROBE),
    "python -c": ("python3", "-c", PYTHON_PROBE),
}


def fields(output: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("name", "home", "umask", "files"):
            found[key] = value.strip()
    return found


@pytest.mark.parametrize("with_volume", [True, False], ids=["volume", "bare"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_replaced_command_gets_the_platform_setup(
    engine: Engine, track: Tracker, lecture_image: str, command: str, with_volume: bool
) -> None:
    volume = new_volume(engine, track) if with_volume else ""
    output = run_command(engine, track, lecture_image, COMMANDS[command], volume)
    found = fields(output)
    home = restricted.HOME if with_volume else "/tmp/jovyan"
    assert found.get("name") == "jovyan", output
    assert found.get("home") == home, output
    assert found.get("umask") == "0002", output
    assert set(LECTURES) <= set(found.get("files", "").split()), output
    assert not LOG_PROBLEMS.search(output), output


def server_home(engine: Engine, cid: str) -> str:
    """HOME in the environment of the server, tini's child (read without a shell)."""
    children = engine.exec(cid, ["cat", "/proc/1/task/1/children"]).output.split()
    assert children, "tini has no child"
    environ = engine.exec(cid, ["cat", f"/proc/{children[0]}/environ"]).output
    return next(v[5:] for v in environ.split("\0") if v.startswith("HOME="))


@pytest.mark.parametrize(
    ("shell", "user"),
    [(("bash", "-c"), ""), (("bash", "-i", "-c"), ""), (("bash", "-c"), "other")],
    ids=["bash -c", "bash -i", "bash -c as another uid"],
)
def test_exec_beside_the_server_sees_its_home_name_and_umask(
    engine: Engine, track: Tracker, lecture_image: str, shell: tuple[str, ...], user: str
) -> None:
    uid = restricted.random_uid()
    cid, _ = start_server(engine, track, lecture_image, uid)  # no volume: HOME falls back
    exec_user = f"{other_uid(uid)}:0" if user else ""
    result = engine.exec(cid, [*shell, SHELL_PROBE], user=exec_user)
    assert result.exit_code == 0, result.output
    found = fields(result.output)
    assert server_home(engine, cid) == "/tmp/jovyan"
    assert found.get("home") == "/tmp/jovyan", result.output
    assert found.get("name") == "jovyan", result.output
    assert found.get("umask") == "0002", result.output
    assert set(LECTURES) <= set(found.get("files", "").split()), result.output
