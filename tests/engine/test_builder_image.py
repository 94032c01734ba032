"""The hardened builder image, against the real built image.

Servers here are started through `restricted.container_spec` (a UID other
than the image's, GID 0, every capability dropped, no-new-privileges, 8888
on 127.0.0.1 only; read-only with a tmpfs on /tmp where a test says so),
carry the session's labels and are removed by `track`. The server is asked
over real HTTP from this process; kernels and terminals over their real
websockets (tests/support/jupyter.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbs2i import restricted
from nbs2i.builder import CA_BUNDLE_MARKER, CA_BUNDLE_NAME
from nbs2i.engine import ContainerSpec, Engine, Mount
from tests.support.jupyter import Api
from tests.support.layers import find_in_layers
from tests.support.poll import until
from tests.support.session import LABELS, tag
from tests.support.tracker import Tracker

TOKEN = "nbs2i-test-token-" + uuid.uuid4().hex[:8]
READY_SECONDS = 60.0
UIDS = (1001, 54321, 1000680000)
OTHER_UID = 54321
RUN_SCRIPT = "/usr/libexec/s2i/run"


# -- starting containers -------------------------------------------------------


@dataclass(frozen=True)
class Server:
    cid: str
    port: int  # the published port on 127.0.0.1
    api: Api


def spec(
    image: str,
    *,
    uid: int = OTHER_UID,
    env: dict[str, str] | None = None,
    command: tuple[str, ...] | None = None,
    read_only: bool = False,
    home: Mount | None = None,
) -> ContainerSpec:
    """The restricted platform's container; the root stays writable unless asked."""
    made = restricted.container_spec(
        image, uid=uid, env=env, labels=LABELS, home=home, read_only=read_only
    )
    return dataclasses.replace(made, command=command)


def plain(image: str, command: tuple[str, ...], user: str = "") -> ContainerSpec:
    """A container as the image's user (or `user`), no port: S2I steps, tools."""
    return ContainerSpec(image=image, command=command, user=user, labels=LABELS, network="none")


def create(engine: Engine, track: Tracker, container: ContainerSpec) -> str:
    return track.container(engine.create_container(container))


def host_port(engine: Engine, cid: str) -> int:
    port = restricted.published_port(engine.inspect_container(cid), restricted.SERVER_PORT)
    assert port is not None, "8888 was not published"
    return port


def wait_ready(engine: Engine, cid: str, path: str, timeout: float = READY_SECONDS) -> float:
    """Poll path until HTTP 200; seconds it took. Fails with the log if not."""
    seen = restricted.wait_ready(engine, cid, host_port(engine, cid), timeout=timeout, path=path)
    if not seen.ready:
        log = engine.logs(cid, tail=30)
        pytest.fail(f"{path} did not answer 200 ({seen}); log:\n{log}")
    return seen.seconds


def serve(
    engine: Engine,
    track: Tracker,
    image: str,
    *,
    token: str = TOKEN,
    env: dict[str, str] | None = None,
    **options: Any,
) -> Server:
    """Start a server (with JUPYTER_TOKEN=token unless token is "") and wait
    until its API takes the token."""
    environment = {"JUPYTER_TOKEN": token, **(env or {})} if token else dict(env or {})
    cid = create(engine, track, spec(image, env=environment, **options))
    engine.start(cid)
    if token:
        wait_ready(engine, cid, f"/api/status?token={token}")
    else:
        wait_ready(engine, cid, "/api")
    port = host_port(engine, cid)
    return Server(cid, port, Api(port, token or None))


def sh(engine: Engine, cid: str, script: str, user: str = "") -> str:
    result = engine.exec(cid, ["sh", "-c", script], user=user)
    assert result.exit_code == 0, f"{script!r} failed ({result.exit_code}): {result.output}"
    return result.output


def run_to_end(engine: Engine, track: Tracker, container: ContainerSpec, timeout: float) -> str:
    """Run a container to its end; its output. Fails unless it exits 0."""
    cid = create(engine, track, container)
    engine.start(cid)
    code = engine.wait(cid, timeout=timeout)
    output = engine.logs(cid)
    assert code == 0, output
    return output


# The probe that kernels, terminals and exec shells all run: every way of
# asking "who am I" at once, plus the umask and whether a password leaked.
PROBE = (
    "import getpass, json, os, pwd, subprocess;"
    "print(json.dumps({'whoami': subprocess.run(['whoami'], capture_output=True, text=True).stdout"
    ".strip(), 'id_un': subprocess.run(['id', '-un'], capture_output=True, text=True).stdout"
    ".strip(), 'getuser': getpass.getuser(), 'pwd': pwd.getpwuid(os.getuid()).pw_name,"
    " 'uid': os.getuid(), 'gid': os.getgid(), 'umask': oct(os.umask(0o002)),"
    " 'home_writable': os.access(os.environ['HOME'], os.W_OK),"
    " 'password_in_env': any('PASSWORD' in k for k in os.environ)}))"
)


def names_ok(probe: dict[str, Any], uid: int) -> None:
    assert probe["uid"] == uid
    assert probe["gid"] == 0
    for key in ("whoami", "id_un", "getuser", "pwd"):
        assert probe[key] == "jovyan", (key, probe)


# -- static checks: metadata and the image's files -------------------------


def test_image_metadata(engine: Engine, builder_image: str) -> None:
    config = engine.inspect_image(builder_image).config
    assert config.user == "1001"
    assert config.entrypoint == ("tini", "-g", "--", "/usr/libexec/s2i/entrypoint")
    assert config.cmd == (RUN_SCRIPT,)
    assert config.exposed_ports == ("8888/tcp",)
    assert config.healthcheck is not None
    health = config.healthcheck["Test"]
    assert health[0] == "CMD" and "/usr/libexec/s2i/healthcheck" in health
    labels = config.labels
    assert labels["io.openshift.s2i.scripts-url"] == "image:///usr/libexec/s2i"
    # Not /tmp: the tmpfs of a restricted pod would hide an uploaded run script.
    assert labels["io.openshift.s2i.destination"] == "/opt/app-root/s2i"
    assert labels["io.openshift.expose-services"] == "8888:http"
    assert labels["io.openshift.tags"] == "builder,jupyter,python"
    assert labels["io.k8s.description"] and labels["io.k8s.display-name"]
    for key in ("title", "version", "source", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"], key
    env = config.env
    assert env["HOME"] == "/home/jovyan"
    assert env["PATH"].startswith("/opt/app-root/venv/bin:")
    assert env["LD_PRELOAD"] == "libnss_wrapper.so"
    assert not any(re.search(r"PASSWORD|TOKEN|SECRET", key) for key in env)


def test_no_chmod_or_chown_only_layer(engine: Engine, builder_image: str) -> None:
    only_perms = re.compile(r"^(set -eu|chmod|chown|chgrp|true|:)\b")
    # A RUN step reads "/bin/sh -c ...", after "|N ARG=value ..." when build
    # arguments are declared before it.
    shell_steps = [
        entry.created_by.split("/bin/sh -c ", 1)[1]
        for entry in engine.history(builder_image)
        if "#(nop)" not in entry.created_by and "/bin/sh -c " in entry.created_by
    ]
    assert shell_steps, "no RUN step in the history"
    for created in shell_steps:
        steps = [s.strip() for s in re.split(r";|&&", created) if s.strip()]
        assert not all(only_perms.match(s) for s in steps), f"permission-only layer: {created}"


def test_files_are_hardened(engine: Engine, track: Tracker, builder_image: str) -> None:
    cid = create(engine, track, plain(builder_image, ("sleep", "60"), user="0"))
    engine.start(cid)
    assert sh(engine, cid, "find / -xdev -perm /6000 -print") == ""  # no setuid/setgid
    assert sh(engine, cid, "stat -c '%a %u %g' /etc/passwd /etc/group").split("\n")[:2] == [
        "644 0 0",
        "644 0 0",
    ]
    # The arbitrary UID cannot write them either (it is not root, GID 0 has no w).
    other = f"{OTHER_UID}:0"
    assert engine.exec(cid, ["test", "-w", "/etc/passwd"], user=other).exit_code == 1
    assert engine.exec(cid, ["test", "-w", "/etc/group"], user=other).exit_code == 1
    # No compilers, no sudo, no apt lists, no pip caches, no wheels lying around,
    # nothing world-writable but the sticky /tmp-like directories.
    found = sh(
        engine,
        cid,
        "for c in gcc cc c++ g++ clang make sudo; do command -v $c || true; done;"
        "find /var/lib/apt/lists /var/cache/apt -mindepth 1;"
        "find / -xdev \\( -path '*/.cache/pip' -o -name '*.whl' -o -name "
        f"'{CA_BUNDLE_NAME}' \\) -print;"
        "find / -xdev -perm -o+w ! -type l ! \\( -type d -perm -1000 \\) -print",
    )
    assert found.strip() == ""
    # /bin/sh and tar, which S2I needs; tini and nss_wrapper, which we need.
    sh(engine, cid, "command -v tar && command -v tini && ls /usr/lib/*/libnss_wrapper.so")
    # What the user writes is group 0 with g=u.
    modes = sh(engine, cid, "stat -c '%n %g %A' /home/jovyan /opt/app-root/src /opt/app-root/venv")
    for line in modes.strip().splitlines():
        _name, gid, mode = line.split()
        assert gid == "0" and mode[1:4] == mode[4:7], line
    bad = sh(engine, cid, "find /opt/app-root/venv ! -type l ! -perm -g=r -print | head -5")
    assert bad == ""


def test_ca_bundle_never_reaches_the_image(engine: Engine, builder_image: str) -> None:
    """Every layer of the exported image, every file: no trace of the bundle
    that the build stage used (a marker nbs2i appends to it)."""
    assert find_in_layers(engine, builder_image, [CA_BUNDLE_MARKER]) == []


# -- runtime: any UID, read-only, names everywhere -------------------------


@pytest.mark.parametrize("uid", UIDS)
def test_serves_as_any_uid_with_gid_0(
    engine: Engine, track: Tracker, builder_image: str, uid: int
) -> None:
    server = serve(engine, track, builder_image, uid=uid)
    status, body = server.api.call("GET", "/api/status")
    assert status == 200 and "started" in body
    probe = json.loads(sh(engine, server.cid, f'python3 -c "{PROBE}"'))
    names_ok(probe, uid)
    assert probe["home_writable"]


def test_read_only_restricted_with_volume(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """read-only root, tmpfs /tmp, no capabilities, no-new-privileges, a
    volume on /home/jovyan: names in the server, a kernel, a terminal and an
    exec shell; umask 0002; files written through the API group-writable."""
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:8]}", LABELS))
    uid = 1000680000
    home = Mount(volume, restricted.HOME)
    server = serve(engine, track, builder_image, uid=uid, read_only=True, home=home)
    # The server process itself.
    pid = sh(engine, server.cid, "grep -l 'bin/jupyter-la[b]' /proc/[0-9]*/cmdline | cut -d/ -f3")
    status = sh(engine, server.cid, f"grep -E '^(Uid|Gid|Umask)' /proc/{pid.split()[0]}/status")
    assert f"\t{uid}\t" in status and "Umask:\t0002" in status
    # ... and the name it had when the run script exec'd it (same process).
    assert f"as jovyan (uid {uid}, gid 0)" in engine.logs(server.cid)
    # A kernel.
    probe = json.loads(server.api.run_in_kernel(PROBE))
    names_ok(probe, uid)
    assert probe["umask"] == "0o2" and probe["home_writable"]
    # A terminal (bash through terminado).
    line = server.api.run_in_terminal(
        'echo "W""HO:$(whoami):$(id -un):$(python3 -c \'import getpass; print(getpass.getuser())\')'
        ':$(umask):E""ND"',
        r"WHO:[^\r\n]*:END",
    )
    assert line == "WHO:jovyan:jovyan:jovyan:0002:END"
    # A docker exec shell (which never ran the run script).
    probe = json.loads(sh(engine, server.cid, f'python3 -c "{PROBE}"'))
    names_ok(probe, uid)
    # The root stays read-only; HOME is the volume.
    assert engine.exec(server.cid, ["touch", "/opt/app-root/x"]).exit_code != 0
    assert sh(engine, server.cid, "echo $HOME").strip() == "/home/jovyan"
    # A file created through the contents API is group-writable.
    assert server.api.save_text("made-by-api.txt", "hello") in (200, 201)
    mode = sh(engine, server.cid, "stat -c '%a %g' /home/jovyan/made-by-api.txt").split()
    assert mode == ["664", "0"]


def test_read_only_without_volume_falls_back_to_tmp(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    server = serve(engine, track, builder_image, read_only=True)
    probe = json.loads(server.api.run_in_kernel(PROBE))
    names_ok(probe, OTHER_UID)
    assert probe["home_writable"]
    out = server.api.run_in_kernel("import os; print(os.environ['HOME'])")
    assert out.strip().startswith("/tmp/")


def test_exec_shell_has_a_name_for_image_uid_and_other_uid(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """UID 1001 is in the image's /etc/passwd; another UID exec'd into the
    same container gets its own line (interactive shells run nss-user)."""
    server = serve(engine, track, builder_image, uid=1001)
    assert sh(engine, server.cid, "whoami").strip() == "jovyan"
    assert sh(engine, server.cid, "getent passwd jovyan | cut -d: -f3").strip() == "1001"
    # exactly one line for 1001 in the copy
    assert sh(engine, server.cid, "grep -c ':1001:' /tmp/.nbs2i/passwd").strip() == "1"
    other = engine.exec(server.cid, ["sh", "-i", "-c", "whoami"], user=f"{OTHER_UID}:0")
    assert other.output.strip().splitlines()[-1] == "jovyan"
    # ... and the server's UID keeps its name.
    assert sh(engine, server.cid, "whoami").strip() == "jovyan"
    assert sh(engine, server.cid, "id -un", user=f"{OTHER_UID}:0").strip() == "jovyan"


# -- PID 1, signals, orphans -----------------------------------------------


def test_tini_reaps_orphans(engine: Engine, track: Tracker, builder_image: str) -> None:
    """Seed 001: orphans are handed to PID 1, and PID 1 reaps them when they end."""
    server = serve(engine, track, builder_image)
    assert sh(engine, server.cid, "tr '\\0' ' ' < /proc/1/cmdline").startswith("tini -g --")
    # The subshell exits at once, so each sleep is orphaned; it must not hold
    # the exec's output open. It sleeps long enough to be looked at on a busy
    # machine, and is then ended.
    start = "(sleep 60 </dev/null >/dev/null 2>&1 & echo $!)"
    pids = [int(sh(engine, server.cid, start).strip()) for _ in range(3)]
    # Each orphan exists, and its parent is now PID 1...
    parents = [
        sh(engine, server.cid, f"cut -d')' -f2 /proc/{pid}/stat | cut -d' ' -f3").strip()
        for pid in pids
    ]
    assert parents == ["1", "1", "1"], parents
    sh(engine, server.cid, "kill " + " ".join(map(str, pids)))

    # ...which collects each one when it ends: no /proc entry left, not even a zombie.
    def reaped() -> bool:
        check = 'for p in "$@"; do test -e /proc/$p && exit 1; done; exit 0'
        return engine.exec(server.cid, ["sh", "-c", check, "sh", *map(str, pids)]).exit_code == 0

    until(reaped, timeout=10, what="the orphans reaped by PID 1")


def test_sigterm_stops_server_and_kernels_fast(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    server = serve(engine, track, builder_image)
    assert server.api.run_in_kernel("print(1)").strip() == "1"
    kernels = sh(engine, server.cid, "grep -l 'ipykernel_launche[r]' /proc/[0-9]*/cmdline | wc -l")
    assert int(kernels) >= 1
    start = time.monotonic()
    engine.kill(server.cid, "TERM")
    code = engine.wait(server.cid, timeout=10)
    elapsed = time.monotonic() - start
    assert elapsed < 5.0, f"SIGTERM took {elapsed:.1f}s"
    assert code in (0, 143), code  # stopped by the signal, not killed


# -- authentication --------------------------------------------------------


def test_generated_token_by_default(engine: Engine, track: Tracker, builder_image: str) -> None:
    server = serve(engine, track, builder_image, token="")
    match = until(
        lambda: re.search(r"token=([0-9a-f]{32,})", engine.logs(server.cid)),
        timeout=10,
        what="a generated token in the log",
    )
    token = match.group(1)
    assert Api(server.port).call("GET", "/api/status")[0] == 403
    assert Api(server.port, "wrong").call("GET", "/api/status")[0] == 403
    assert Api(server.port, token).call("GET", "/api/status")[0] == 200


def test_jupyter_token(engine: Engine, track: Tracker, builder_image: str) -> None:
    server = serve(engine, track, builder_image, token="chosen-token-123")
    assert server.api.call("GET", "/api/status")[0] == 200
    assert Api(server.port).call("GET", "/api/status")[0] == 403
    assert "chosen-token-123" not in engine.logs(server.cid)


def test_empty_token_does_not_turn_auth_off(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    server = serve(engine, track, builder_image, token="", env={"JUPYTER_TOKEN": ""})
    assert Api(server.port).call("GET", "/api/status")[0] == 403


def _environ(engine: Engine, cid: str, pattern: str) -> dict[str, str]:
    """The environment of each process whose command line matches pattern."""
    pids = sh(engine, cid, f"grep -l '{pattern}' /proc/[0-9]*/cmdline | cut -d/ -f3").split()
    assert pids, f"no process matches {pattern}"
    return {pid: sh(engine, cid, f"tr '\\0' '\\n' < /proc/{pid}/environ") for pid in pids}


def test_password_is_hashed_and_hidden(engine: Engine, track: Tracker, builder_image: str) -> None:
    password = "s3cret-" + uuid.uuid4().hex[:6]
    server = serve(engine, track, builder_image, token="", env={"JUPYTER_PASSWORD": password})
    assert Api(server.port).call("GET", "/api/status")[0] == 403  # no token, no password
    # Log in with the password the way a browser does: xsrf cookie, then POST.
    browser = Api(server.port)
    assert browser.login(password) is True
    # Kernels started by that server do not see it; neither does anything else.
    status, kernel = browser.call("POST", "/api/kernels", {})
    assert status == 201 and kernel["id"]
    # (PID 1, tini, keeps the container's environment: see the report.)
    for environ in _environ(engine, server.cid, "ipykernel_launche[r]").values():
        assert "JUPYTER_PASSWORD" not in environ and password not in environ
        assert "NBS2I_PASSWORD_FILE" not in environ
    # The server's environment (as it was exec'd; the config file drops
    # NBS2I_PASSWORD_FILE from it before any kernel starts), /tmp, the log.
    for environ in _environ(engine, server.cid, "bin/jupyter-la[b]").values():
        assert password not in environ and "JUPYTER_PASSWORD" not in environ
    assert "password" not in sh(engine, server.cid, "ls /tmp/.nbs2i")  # the hash file is gone
    assert password not in engine.logs(server.cid)


def test_run_refuses_privileged_port_and_arguments(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    low = create(engine, track, spec(builder_image, env={"JUPYTER_PORT": "80"}))
    engine.start(low)
    assert engine.wait(low, timeout=30) == 2
    assert "no privileged ports" in engine.logs(low)
    args = create(engine, track, spec(builder_image, command=(RUN_SCRIPT, "--ServerApp.token=")))
    engine.start(args)
    assert engine.wait(args, timeout=30) == 2


# -- JupyterHub and the healthcheck ----------------------------------------

FAKE_HUB = (
    "import http.server\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200)\n"
    "        self.send_header('X-JupyterHub-Version', '5.5.4')\n"
    "        self.send_header('Content-Type', 'application/json')\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b'{}')\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.HTTPServer(('127.0.0.1', 18081), H).serve_forever()\n"
)


def test_jupyterhub_singleuser_with_healthcheck(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """With JUPYTERHUB_API_TOKEN the run script starts jupyterhub-singleuser at
    the hub's prefix; the image's HEALTHCHECK asks that prefix's API."""
    env = {
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:18081/hub/api",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/student/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/student/",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_USER": "student",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-student",
    }
    cid = create(engine, track, spec(builder_image, uid=1000680000, env=env))
    engine.start(cid)
    # A stand-in for the hub's API inside the container (loopback only).
    sh(engine, cid, f'python3 -c "{FAKE_HUB}" >/dev/null 2>&1 &')
    wait_ready(engine, cid, "/user/student/api")
    cmdlines = sh(engine, cid, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
    assert re.search(r"jupyterhub-singleuser", cmdlines), cmdlines
    assert "jupyter-lab" not in cmdlines and "jupyter lab" not in cmdlines
    assert engine.exec(cid, ["/usr/libexec/s2i/healthcheck"]).exit_code == 0


def test_healthcheck_follows_base_url(engine: Engine, track: Tracker, builder_image: str) -> None:
    """The HEALTHCHECK asks the API where the server really listens (its
    runtime file), and the engine marks the container healthy; asked at the
    wrong URL (no runtime file, a wrong base URL), it says unhealthy."""
    cid = create(engine, track, spec(builder_image, env={"JUPYTER_BASE_URL": "/course/"}))
    engine.start(cid)
    wait_ready(engine, cid, "/course/api")
    assert engine.exec(cid, ["/usr/libexec/s2i/healthcheck"]).exit_code == 0
    wrong = engine.exec(
        cid,
        ["/usr/libexec/s2i/healthcheck"],
        env={"JUPYTER_RUNTIME_DIR": "/nonexistent", "JUPYTER_BASE_URL": "/"},
    )
    assert wrong.exit_code == 1
    until(
        lambda: engine.inspect_container(cid).health == "healthy",
        timeout=40,
        interval=0.5,
        what="the engine's healthcheck saying healthy",
    )


# -- the S2I contract, by hand ---------------------------------------------


def _wheel(name: str, version: str) -> bytes:
    """A minimal pure-Python wheel, so that pip installs without a network."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: nbs2i-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(
        f"{path},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}\n"
        for path, data in files.items()
    )
    record += f"{dist}.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}.dist-info/RECORD", record)
    return buffer.getvalue()


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _tar(
    files: dict[str, bytes], prefix: str, uid: int = 1001, modes: dict[str, int] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dirs = {prefix}
        for path in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add(prefix + "/" + "/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o775, uid, 0
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(f"{prefix}/{path}")
            info.size, info.uid, info.gid = len(data), uid, 0
            info.mode = (modes or {}).get(path, 0o664)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def assemble(
    engine: Engine,
    track: Tracker,
    image: str,
    files: dict[str, bytes],
    *,
    modes: dict[str, int] | None = None,
    command: tuple[str, ...] = ("/usr/libexec/s2i/assemble",),
    extra_tar: bytes = b"",
) -> tuple[str, int, str]:
    """S2I by hand: a container from the builder running assemble as the
    image user, sources tarred into /tmp/src; (container, exit code, log)."""
    container = dataclasses.replace(plain(image, command), network="")  # pip may need it
    cid = create(engine, track, container)
    engine.put_archive(cid, "/tmp", _tar(files, "src", modes=modes))
    if extra_tar:
        engine.put_archive(cid, "/tmp", extra_tar)
    engine.start(cid)
    code = engine.wait(cid, timeout=300)
    return cid, code, engine.logs(cid)


def commit_run_image(engine: Engine, track: Tracker, cid: str, base: str, name: str) -> str:
    """Commit an assembled container as S2I does: the builder's config, CMD the run script."""
    ref = track.image(tag(f"{name}-{uuid.uuid4().hex[:8]}"))
    config = dataclasses.replace(engine.inspect_image(base).config, cmd=(RUN_SCRIPT,))
    engine.commit(cid, ref, config, "assembled by hand")
    return ref


def test_s2i_build_by_hand_then_serve(engine: Engine, track: Tracker, builder_image: str) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB that does not compress away
    files = {
        "hello.ipynb": NOTEBOOK,
        "data/blob.bin": payload,
        "requirements.txt": b"--no-index\n--find-links wheels\nnbs2i_probe==1.0\n",
        "wheels/nbs2i_probe-1.0-py3-none-any.whl": _wheel("nbs2i_probe", "1.0"),
    }
    cid, code, log = assemble(engine, track, builder_image, files)
    assert code == 0, log
    assert "Moving the notebooks" in log and "Installing requirements.txt" in log
    image = commit_run_image(engine, track, cid, builder_image, "s2i-by-hand")
    # The layer holds the 2 MiB once (an S2I build that copies holds it twice).
    added = engine.inspect_image(image).size - engine.inspect_image(builder_image).size
    assert len(payload) <= added < 1.5 * len(payload) + 512 * 1024, added
    # Serve it as a random UID: seeded HOME, the installed package, modes.
    server = serve(engine, track, image, uid=1000680000)
    assert {"hello.ipynb", "data"} <= set(server.api.names())
    assert server.api.run_in_kernel("import nbs2i_probe; print(nbs2i_probe.VALUE)").strip() == "42"
    checks = sh(
        engine,
        server.cid,
        "test ! -e /tmp/src && echo no-tmp-src;"
        "stat -c '%g %A' /opt/app-root/src/data/blob.bin;"
        "find / -xdev -path '*/.cache/pip' -print 2>/dev/null || true",
    ).split("\n")
    assert checks[0] == "no-tmp-src"
    gid, mode = checks[1].split()
    assert gid == "0" and mode[1:4] == mode[4:7]
    assert checks[2:] == [""] or checks[2:] == []


def test_assemble_override_and_failure(engine: Engine, track: Tracker, builder_image: str) -> None:
    override = (
        b"#!/bin/sh\nset -eu\necho override-ran > /tmp/override.txt\n"
        b"echo OVERRIDE-BEFORE\n/usr/libexec/s2i/assemble\necho OVERRIDE-AFTER\n"
    )
    files = {"a.ipynb": NOTEBOOK, ".s2i/bin/assemble": override}
    modes = {".s2i/bin/assemble": 0o775}
    _cid, code, log = assemble(engine, track, builder_image, files, modes=modes)
    assert code == 0, log
    assert log.count("OVERRIDE-BEFORE") == 1 and "OVERRIDE-AFTER" in log
    assert "Moving the notebooks" in log
    # The s2i CLI runs the override itself from /tmp/scripts; when it calls
    # the default assemble, the override must not run a second time.
    scripts = _tar({"assemble": override}, "scripts", modes={"assemble": 0o775})
    _cid, code, log = assemble(
        engine,
        track,
        builder_image,
        files,
        modes=modes,
        command=("/tmp/scripts/assemble",),
        extra_tar=scripts,
    )
    assert code == 0, log
    assert log.count("OVERRIDE-BEFORE") == 1 and "Moving the notebooks" in log
    # A failing step stops assemble with a non-zero exit.
    files = {"a.ipynb": NOTEBOOK, "requirements.txt": b"--no-index\nno-such-package==9.9\n"}
    _cid, code, log = assemble(engine, track, builder_image, files)
    assert code != 0
    assert "Done" not in log


def test_save_artifacts_feeds_an_incremental_build(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    files = {
        "a.ipynb": NOTEBOOK,
        "requirements.txt": b"--no-index\n--find-links wheels\nnbs2i_probe==1.0\n",
        "wheels/nbs2i_probe-1.0-py3-none-any.whl": _wheel("nbs2i_probe", "1.0"),
    }
    cid, code, log = assemble(engine, track, builder_image, files)
    assert code == 0, log
    image = commit_run_image(engine, track, cid, builder_image, "artifacts")
    # stdout only, stderr kept apart by the shell: what `s2i --incremental` reads.
    saver = create(engine, track, plain(image, ("sleep", "120")))
    engine.start(saver)
    sh(engine, saver, "/usr/libexec/s2i/save-artifacts > /tmp/saved.tar 2> /tmp/saved.err")
    assert sh(engine, saver, "cat /tmp/saved.err") == ""
    wrapped = b"".join(engine.get_archive(saver, "/tmp/saved.tar"))
    with tarfile.open(fileobj=io.BytesIO(wrapped)) as outer:
        member = outer.extractfile("saved.tar")
        assert member is not None
        stream = member.read()
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:  # stdout is ONLY a tar
        names = tar.getnames()
    assert "installed.txt" in names
    assert any(n.endswith("site-packages/nbs2i_probe/__init__.py") for n in names), names
    # The next build gets them at /tmp/artifacts; with no wheels at hand, pip
    # can only succeed by finding the package already installed.
    files = {"a.ipynb": NOTEBOOK, "requirements.txt": b"--no-index\nnbs2i_probe==1.0\n"}
    artifacts = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(stream)) as src,
        tarfile.open(fileobj=artifacts, mode="w") as dst,
    ):
        root = tarfile.TarInfo("artifacts")
        root.type, root.mode, root.uid = tarfile.DIRTYPE, 0o775, 1001
        dst.addfile(root)
        for entry in src.getmembers():
            data = src.extractfile(entry) if entry.isfile() else None
            entry.name = "artifacts/" + entry.name
            entry.uid, entry.gid = 1001, 0
            dst.addfile(entry, data)
    cid, code, log = assemble(engine, track, builder_image, files, extra_tar=artifacts.getvalue())
    assert code == 0, log
    assert "Reusing dependencies" in log


def test_home_is_seeded_without_overwriting(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """A student's edit on the volume survives the next start of the same
    image (as another UID); a notebook the student deleted stays deleted
    (the course did not change it: tests/engine/test_course_updates.py)."""
    files = {"a.ipynb": NOTEBOOK, "b.ipynb": NOTEBOOK}
    cid, code, log = assemble(engine, track, builder_image, files)
    assert code == 0, log
    image = commit_run_image(engine, track, cid, builder_image, "seeded")
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:8]}", LABELS))
    home = Mount(volume, restricted.HOME)
    first = serve(engine, track, image, uid=OTHER_UID, home=home)
    edited = NOTEBOOK.replace(b'"cells": []', b'"cells": [], "x": 1')
    assert first.api.save_text("a.ipynb", edited.decode()) == 200
    assert first.api.call("DELETE", "/api/contents/b.ipynb")[0] == 204
    engine.stop(first.cid, timeout=restricted.STOP_GRACE)
    second = serve(engine, track, image, uid=1000680000, home=home)
    assert sh(engine, second.cid, "cat /home/jovyan/a.ipynb").encode() == edited
    assert sh(engine, second.cid, "ls /home/jovyan").split() == ["a.ipynb", "work"]
    assert "1 deleted by you" in engine.logs(second.cid)
    # The second UID can still write what the first one created.
    assert second.api.save_text("a.ipynb", NOTEBOOK.decode()) == 200


def test_usage_explains_nbs2i_s2i_and_run(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    text = run_to_end(engine, track, plain(builder_image, ("/usr/libexec/s2i/usage",)), 30)
    for words in ("nbs2i build", "s2i build", "docker run", "--read-only", "JUPYTER_PASSWORD"):
        assert words in text, words


def test_cli_builder_build_streams_progress_and_tags(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """`nbs2i builder build` through the engine seam; with a warm cache (the
    fixture's build) it is quick and must give the very same image."""
    nbs2i = str(Path(sys.executable).with_name("nbs2i"))
    tags = [track.image(tag(f"cli-builder-{uuid.uuid4().hex[:8]}")) for _ in range(2)]
    done = subprocess.run(
        [nbs2i, "builder", "build", "--tag", tags[0], "--tag", tags[1]],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "==> Step 1/" in done.stderr and "==> Built " in done.stderr
    image_id = done.stdout.strip().splitlines()[-1]
    assert engine.inspect_image(tags[0]).id == engine.inspect_image(tags[1]).id == image_id
    # Bad input: one line naming the problem and the fix, nothing built.
    missing = tag(f"no-such-base-{uuid.uuid4().hex[:8]}")
    bad = subprocess.run(
        [nbs2i, "builder", "build", "--from", missing, "--tag", f"{missing}-x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert bad.stderr.startswith(f"nbs2i: error: the base image {missing} is not in the engine")
    assert not engine.image_exists(f"{missing}-x")


def test_prehashed_password_never_enters_the_container(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    # The server environment has jupyter_server; the kernel environment (first on PATH) need not.
    make_hash = (
        "/opt/jupyter/bin/python",
        "-c",
        "from jupyter_server.auth import passwd; print(passwd('pw-1'))",
    )
    output = run_to_end(engine, track, plain(builder_image, make_hash), 60)
    found = re.search(r"^argon2:\S+$", output, re.MULTILINE)
    assert found, output
    server = serve(
        engine, track, builder_image, token="", env={"JUPYTER_PASSWORD_HASH": found.group(0)}
    )
    assert Api(server.port).call("GET", "/api/status")[0] == 403
    assert Api(server.port).login("wrong") is False
    assert Api(server.port).login("pw-1") is True
    # A value that is not a hash is refused, not taken as a plain password.
    bad = create(engine, track, spec(builder_image, env={"JUPYTER_PASSWORD_HASH": "pw-1"}))
    engine.start(bad)
    assert engine.wait(bad, timeout=30) == 2


def test_the_labels_nbs2i_writes_layers_by_are_true(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """nbs2i writes the notebook layer itself only because the builder declares
    its assemble script and the directories above the notebooks: both must be
    exactly what the image holds."""
    from nbs2i import builder as nbs2i_builder
    from nbs2i import labels
    from nbs2i.building.plan import notebook_dirs

    config = engine.inspect_image(builder_image).config
    assert config.labels[labels.ASSEMBLE_DIGEST] == nbs2i_builder.shipped_assemble_digest()
    dirs = notebook_dirs(config.labels[labels.NOTEBOOK_DIRS], config.env["NOTEBOOK_DIR"])
    assert dirs is not None
    cid = create(engine, track, plain(builder_image, ("sleep", "60")))
    engine.start(cid)
    paths = " ".join("/" + d.name for d in dirs)
    real = sh(engine, cid, f"stat -c '%u:%g %a' {paths}").split("\n")
    assert real[: len(dirs)] == [f"{d.uid}:{d.gid} {d.mode:o}" for d in dirs]
    # What assemble does is decided by it and by the dependency-file definition it asks.
    files = "assemble depfiles lib/depfiles/*.py"
    digest = sh(engine, cid, f"cd /usr/libexec/s2i && cat {files} | sha256sum").split()[0]
    assert digest == config.labels[labels.ASSEMBLE_DIGEST]
