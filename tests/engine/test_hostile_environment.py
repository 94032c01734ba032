"""Environment that would break the image, switch off its own mechanisms or
reach the server is refused, or kept from the server.

An empty PATH or one without /usr/bin (nothing starts), the loader's
variables (LD_PRELOAD carries nss_wrapper, which names any UID), nss_wrapper's
own, a planted login, and the names that steer where the server reads its
configuration and data: refused with one line naming the variable, whether
they come from the repository's .s2i/environment (served over git://), an -E
file or -e. Invalid names are refused too. What comes from the command line is
refused before the source is fetched: the source here would hang.

What a kernel may use stays possible: a course's lib/ on PYTHONPATH (with a
sitecustomize.py that would let anyone in, were it run by the server) reaches
its kernels and terminals, and the server stays locked. An image whose ENV
carries the refused names anyway (as upstream s2i writes them, unchecked)
still starts a locked server. No apt run as root sees the repository's
environment (APT_CONFIG names a file whose hooks run as root).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import websocket

from nbs2i import run
from nbs2i.engine import Docker
from tests.support.gitserver import GitDaemon, HangingServer
from tests.support.hostile import (
    APT_HOOK_ENVIRONMENT,
    APT_HOOK_RAN,
    notebook_tree,
    one_error_line,
    publish,
    write,
)
from tests.support.images import build_dockerfile
from tests.support.inside import run_in_image
from tests.support.jupyter import Api
from tests.support.sandbox import Sandbox
from tests.support.session import LABEL_PAIRS, tag
from tests.support.tracker import Tracker

FAIL_FAST = 30

REFUSED = {
    "empty-path": ("PATH", ""),
    "path-without-usr-bin": ("PATH", "/opt/tools:/usr/local/bin"),
    "ld-preload": ("LD_PRELOAD", "/tmp/evil.so"),
    "ld-library-path": ("LD_LIBRARY_PATH", "/tmp/lib"),
    "ld-audit": ("LD_AUDIT", "/tmp/audit.so"),
    "nss-wrapper-passwd": ("NSS_WRAPPER_PASSWD", "/tmp/passwd"),
    "nss-wrapper-group": ("NSS_WRAPPER_GROUP", "/tmp/group"),
    # A login the course's author knows, and where the server reads its
    # configuration and the JavaScript it serves.
    "planted-password": ("JUPYTER_PASSWORD_HASH", "argon2:$argon2id$v=19$m=10240,t=10,p=8$x"),
    "planted-token": ("JUPYTER_TOKEN", "course-author-knows-it"),
    "hub": ("JUPYTERHUB_API_URL", "http://hub.example.org/hub/api"),
    "config-path": ("JUPYTER_CONFIG_PATH", "/opt/app-root/src/conf"),
    "lab-dir": ("JUPYTERLAB_DIR", "/opt/app-root/src/lab"),
    "home": ("HOME", "/opt/app-root/src"),
}
BAD_NAMES = ["A B=x", "1A=x", "A-B=x", "=x", "A", "A.B=x", "é=x"]


@pytest.mark.parametrize(("name", "value"), list(REFUSED.values()), ids=list(REFUSED))
def test_the_repository_environment_file_cannot_disable_the_image(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    tmp_path: Path,
    name: str,
    value: str,
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    write(tree, ".s2i/environment", f"# course settings\nCOURSE=intro\n{name}={value}\n")
    repo = f"env-{name.lower()}-{len(value)}.git"
    publish(tree, daemon.base, repo)
    image = box.image(tag("hostile-env"))
    result = box.nbs2i(*box.build_args(daemon.url(repo), image, tiny_builder), timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, name)
    assert not engine.image_exists(image)


@pytest.mark.parametrize(("name", "value"), list(REFUSED.values()), ids=list(REFUSED))
def test_an_environment_file_cannot_disable_the_image(
    box: Sandbox, tiny_builder: str, tmp_path: Path, name: str, value: str
) -> None:
    src = notebook_tree(tmp_path / "src")
    env_file = write(tmp_path, "build.env", f"{name}={value}\n")
    args = box.build_args(str(src), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, "-E", str(env_file), timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, name)


@pytest.mark.parametrize(("name", "value"), list(REFUSED.values()), ids=list(REFUSED))
def test_an_env_option_that_disables_the_image_fails_before_the_fetch(
    box: Sandbox, hanging: HangingServer, tiny_builder: str, name: str, value: str
) -> None:
    args = box.build_args(hanging.url(), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, "-e", f"{name}={value}", timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, name)
    assert hanging.connections == 0


@pytest.mark.parametrize("pair", BAD_NAMES)
def test_an_invalid_env_name_fails_before_the_fetch(
    box: Sandbox, hanging: HangingServer, tiny_builder: str, pair: str
) -> None:
    args = box.build_args(hanging.url(), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, "-e", pair, timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, repr(pair))
    assert hanging.connections == 0


@pytest.mark.parametrize("line", ["A B=x", "export A=x", "-A=x", "A"])
def test_an_invalid_line_in_the_repository_environment_is_refused_naming_it(
    box: Sandbox, tiny_builder: str, tmp_path: Path, line: str
) -> None:
    src = notebook_tree(tmp_path / "src")
    write(src, ".s2i/environment", f"COURSE=intro\n{line}\n")
    args = box.build_args(str(src), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, ".s2i/environment:2")


def test_an_extended_path_and_odd_values_still_build_exactly(
    box: Sandbox, tiny_builder: str, engine: Docker, tmp_path: Path
) -> None:
    # The refusals above are not a blanket: PATH may be extended, values may
    # hold '=', spaces and a newline, and nothing more than the names given
    # reaches the image.
    src = notebook_tree(tmp_path / "src")
    path = "/opt/tools:/usr/local/bin:/usr/bin:/bin"
    write(src, ".s2i/environment", f"PATH={path}\nGREETING=a b=c\n")
    image = box.image(tag("env-ok"))
    args = box.build_args(str(src), image, tiny_builder)
    result = box.nbs2i(*args, "-e", "NOTE=x\nLD_PRELOAD=/tmp/evil.so", timeout=120)
    assert result.code == 0, result.stderr
    env = engine.inspect_image(image).config.env
    assert env["PATH"] == path
    assert env["GREETING"] == "a b=c"
    assert env["NOTE"] == "x\nLD_PRELOAD=/tmp/evil.so"
    assert not [k for k in env if k.startswith(("LD_", "NSS_WRAPPER_"))], env


def test_the_root_step_of_the_engine_path_never_sees_the_repository_environment(
    box: Sandbox, tiny_builder: str, engine: Docker, tmp_path: Path
) -> None:
    # apt.txt names a package the builder has, so the root step runs offline.
    src = notebook_tree(tmp_path / "src")
    write(src, "apt.txt", "bash\n")
    write(src, ".s2i/environment", APT_HOOK_ENVIRONMENT)
    image = box.image(tag("hostile-apt"))
    args = box.build_args(str(src), image, tiny_builder, "--network", "none")
    result = box.nbs2i(*args, timeout=300)
    assert result.code == 0, result.stderr
    assert "Installing Debian packages bash" in result.stderr
    assert not APT_HOOK_RAN.search(result.stderr + result.stdout), result.stderr
    code, mode = run_in_image(engine, image, ["stat", "-c", "%a", "/etc/passwd"])
    assert (code, mode.strip()) == (0, "644")


# A course's sitecustomize.py: whichever Python has lib/ on its path runs it.
# In a server it lets anyone in; a kernel has no server to patch.
SITECUSTOMIZE = """\
try:
    from jupyter_server.auth import identity as _identity
except ImportError:
    _identity = None
if _identity is not None:
    async def _anyone(self, handler):
        return _identity.User(username="course-author")
    _identity.IdentityProvider.get_user = _anyone
"""
# What many tutorials tell readers to write.
CONFIG_WITHOUT_LOGIN = (
    'c.IdentityProvider.token = ""\n'
    'c.ServerApp.token = ""\n'
    "c.ServerApp.allow_unauthenticated_access = True\n"
)
HELPERS = "ANSWER = 42\n"
IN_KERNEL = (
    "import os, sys, helpers; "
    "print(helpers.ANSWER, 'sitecustomize' in sys.modules, os.environ.get('COURSE'))"
)


def course_with_lib(root: Path) -> Path:
    notebook_tree(root)
    write(root, "lib/sitecustomize.py", SITECUSTOMIZE)
    write(root, "lib/helpers.py", HELPERS)
    write(root, "conf/jupyter_server_config.py", CONFIG_WITHOUT_LOGIN)
    return root


def assert_locked(port: int) -> None:
    """Nothing answers without credentials: the API, and a terminal's websocket."""
    anonymous = Api(port)
    for path in ("/api/contents", "/api/terminals", "/api/kernels"):
        status, _ = anonymous.call("GET", path, auth=False)
        assert status in (401, 403), (path, status)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://127.0.0.1:{port}/terminals/websocket/1", timeout=10)
    assert refused.value.status_code in (401, 403)


def start(engine: Docker, track: Tracker, image: str) -> run.Server:
    server = run.start(engine, run.RunRequest(image=image, port=0, labels=LABEL_PAIRS))
    track.container(server.container_id)
    return server


def test_a_course_library_on_pythonpath_reaches_its_kernels_never_the_server(
    box: Sandbox, track: Tracker, engine: Docker, builder_image: str, tmp_path: Path
) -> None:
    src = course_with_lib(tmp_path / "src")
    write(
        src,
        ".s2i/environment",
        "COURSE=intro\nPYTHONPATH=/opt/app-root/src/lib\n"
        "PYTHONSTARTUP=/opt/app-root/src/lib/sitecustomize.py\n",
    )
    image = box.image(tag("hostile-pythonpath"))
    built = box.nbs2i(*box.build_args(str(src), image, builder_image), timeout=300)
    assert built.code == 0, built.stderr
    server = start(engine, track, image)
    assert_locked(server.port)
    api = Api(server.port, server.token)
    assert api.run_in_kernel(IN_KERNEL).split() == ["42", "True", "intro"]
    assert api.run_in_terminal("echo PP=$PYTHONPATH", "PP=/opt/app-root/src/lib")


def test_an_image_whose_env_steers_the_server_still_starts_it_locked(
    track: Tracker, engine: Docker, builder_image: str, tmp_path: Path
) -> None:
    # What upstream s2i makes of a repository whose .s2i/environment sets these:
    # they go into ENV unchecked, before the builder's assemble runs.
    steering = {
        "JUPYTER_CONFIG_PATH": "/opt/app-root/src/conf",
        "JUPYTER_DATA_DIR": "/opt/app-root/src/data",
        "JUPYTER_PATH": "/opt/app-root/src/data",
        "JUPYTER_SERVER_ALLOW_UNAUTHENTICATED_ACCESS": "true",
        "JUPYTERLAB_SETTINGS_DIR": "/opt/app-root/src/conf",
        "PYTHONPATH": "/opt/app-root/src/lib",
    }
    course = course_with_lib(tmp_path / "course")
    files = {
        f"src/{path.relative_to(course)}": path.read_bytes()
        for path in course.rglob("*")
        if path.is_file()
    }
    env = " \\\n    ".join(f'{name}="{value}"' for name, value in steering.items())
    dockerfile = (
        f"FROM {builder_image}\nENV {env}\n"
        "USER 0\nCOPY src /tmp/src\nRUN chown -R 1001:0 /tmp/src\n"
        "USER 1001\nRUN /usr/libexec/s2i/assemble\n"
    )
    image = track.image(tag("hostile-upstream-env"))
    build_dockerfile(engine, image, dockerfile, files)
    server = start(engine, track, image)
    assert_locked(server.port)
    log = engine.logs(server.container_id)
    warning = next(line for line in log.splitlines() if "warning: ignoring" in line)
    assert all(name in warning for name in steering if name.startswith("JUPYTER")), warning
    api = Api(server.port, server.token)
    assert api.run_in_kernel(IN_KERNEL).split() == ["42", "True", "None"]
