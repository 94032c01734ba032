"""The hardened builder image (issue 3), against the real built image.

Every container here is started the way a restricted platform would start
it (a UID other than the image's, GID 0), publishes 8888 on 127.0.0.1 only,
carries TEST_LABELS and is removed by `track`. The server is asked over real
HTTP from this process; kernels and terminals over their real websockets.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket

from nbs2i.builder import CA_BUNDLE_MARKER, CA_BUNDLE_NAME
from nbs2i.engine import Engine
from tests.conftest import TEST_LABELS, Tracker

PORT = 8888
TOKEN = "nbs2i-test-token-" + uuid.uuid4().hex[:8]
READY_SECONDS = 60.0
UIDS = ("1001", "54321", "1000680000")
# Talk to 127.0.0.1 directly, whatever *_proxy variables the environment has.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- helpers ---------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    cid: str
    base: str  # http://127.0.0.1:PORT
    token: str

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}" if self.token else self.base + path


def http(url: str, method: str = "GET", body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with HTTP.open(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def create(
    engine: Engine,
    track: Tracker,
    image: str,
    *,
    user: str = "54321:0",
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    entrypoint: list[str] | None = None,
    publish: bool = True,
    **host: Any,
) -> str:
    """Create (not start) a labelled container; 8888 on 127.0.0.1 only."""
    host_config: dict[str, Any] = dict(host)
    if publish:
        host_config["port_bindings"] = {PORT: ("127.0.0.1",)}
    cid = engine.create_container(
        image,
        command=command,
        entrypoint=entrypoint,
        user=user,
        environment=env or {},
        labels=TEST_LABELS,
        ports=[PORT] if publish else None,
        host_config=host_config,
    )
    return track.container(cid)


def host_port(engine: Engine, cid: str) -> int:
    ports = engine.inspect_container(cid)["NetworkSettings"]["Ports"]
    return int(ports[f"{PORT}/tcp"][0]["HostPort"])


def wait_ready(engine: Engine, cid: str, path: str, timeout: float = READY_SECONDS) -> float:
    """Poll path until HTTP 200; seconds it took. Fails with the log if not."""
    start = time.monotonic()
    base = f"http://127.0.0.1:{host_port(engine, cid)}"
    status = None
    for _ in range(int(timeout / 0.1)):
        if time.monotonic() - start > timeout:
            break
        state = engine.inspect_container(cid)["State"]
        if not state["Running"]:
            break
        try:
            status, _ = http(base + path, timeout=2)
        except (OSError, urllib.error.URLError):
            status = None
        if status == 200:
            return time.monotonic() - start
        time.sleep(0.1)
    logs = engine.logs(cid, tail=30)
    text = logs.decode(errors="replace") if isinstance(logs, bytes) else ""
    pytest.fail(f"{path} did not answer 200 (last status {status}); log:\n{text}")


def serve(
    engine: Engine,
    track: Tracker,
    image: str,
    *,
    user: str = "54321:0",
    env: dict[str, str] | None = None,
    token: str = TOKEN,
    **host: Any,
) -> Server:
    environment = dict(env or {})
    if token:
        environment.setdefault("JUPYTER_TOKEN", token)
    cid = create(engine, track, image, user=user, env=environment, **host)
    engine.start(cid)
    base = f"http://127.0.0.1:{host_port(engine, cid)}"
    server = Server(cid, base, token)
    if token:
        wait_ready(engine, cid, f"/api/status?token={token}")
    return server


def sh(engine: Engine, cid: str, script: str, user: str = "") -> str:
    result = engine.exec(cid, ["sh", "-c", script], user=user)
    assert result.exit_code == 0, f"{script!r} failed ({result.exit_code}): {result.output}"
    return result.output


def ws_url(server: Server, path: str) -> str:
    return server.base.replace("http://", "ws://") + path + f"?token={server.token}"


def run_in_kernel(server: Server, code: str, timeout: float = 30.0) -> str:
    """Start a kernel through the REST API, run code through its websocket,
    return what it printed on stdout."""
    status, kernel = http(server.url("/api/kernels"), "POST", {"name": "python3"})
    assert status == 201, status
    conn = websocket.create_connection(
        ws_url(server, f"/api/kernels/{kernel['id']}/channels"), timeout=timeout
    )
    try:
        msg_id = uuid.uuid4().hex
        conn.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "buffers": [],
                }
            )
        )
        out: list[str] = []
        # The reply (shell channel) may overtake the output (iopub channel): the
        # output is complete once iopub says the kernel is idle again.
        replied = idle = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(conn.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif kind == "error":
                pytest.fail("kernel error: " + "\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            if replied and idle:
                return "".join(out)
        pytest.fail(f"no execute_reply within {timeout}s")
    finally:
        conn.close()


def run_in_terminal(server: Server, command: str, pattern: str, timeout: float = 20.0) -> str:
    """Open a terminal through the REST API, type a command on its websocket,
    return the first match of `pattern` in what the terminal prints."""
    status, term = http(server.url("/api/terminals"), "POST", {})
    assert status == 200, status
    conn = websocket.create_connection(
        ws_url(server, f"/terminals/websocket/{term['name']}"), timeout=timeout
    )
    try:
        conn.send(json.dumps(["stdin", command + "\r"]))
        seen = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(conn.recv())
            if msg[0] == "stdout":
                seen += msg[1]
                match = re.search(pattern, seen)
                if match:
                    return match.group(0)
        pytest.fail(f"the terminal did not print {pattern!r} within {timeout}s: {seen!r}")
    finally:
        conn.close()


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


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of bytes chunks (for streamed tars)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


# -- static checks: metadata and the image's files -------------------------


def test_image_metadata(engine: Engine, builder_image: str) -> None:
    config = engine.inspect_image(builder_image)["Config"]
    assert config["User"] == "1001"
    assert config["Entrypoint"] == ["tini", "-g", "--"]
    assert config["Cmd"] == ["/usr/libexec/s2i/run"]
    assert list(config["ExposedPorts"]) == ["8888/tcp"]
    health = config["Healthcheck"]["Test"]
    assert health[0] == "CMD" and "/usr/libexec/s2i/healthcheck" in health
    labels = config["Labels"]
    assert labels["io.openshift.s2i.scripts-url"] == "image:///usr/libexec/s2i"
    assert labels["io.openshift.s2i.destination"] == "/tmp"
    assert labels["io.openshift.expose-services"] == "8888:http"
    assert labels["io.openshift.tags"] == "builder,jupyter,python"
    assert labels["io.k8s.description"] and labels["io.k8s.display-name"]
    for key in ("title", "version", "source", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"], key
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HOME"] == "/home/jovyan"
    assert env["PATH"].startswith("/opt/app-root/venv/bin:")
    assert env["LD_PRELOAD"] == "libnss_wrapper.so"
    assert not any(re.search(r"PASSWORD|TOKEN|SECRET", key) for key in env)


def test_no_chmod_or_chown_only_layer(engine: Engine, builder_image: str) -> None:
    only_perms = re.compile(r"^(set -eu|chmod|chown|chgrp|true|:)\b")
    for entry in engine.history(builder_image):
        created = entry.get("CreatedBy") or ""
        if "#(nop)" in created or not created.startswith("/bin/sh -c"):
            continue
        steps = [s.strip() for s in re.split(r";|&&", created[len("/bin/sh -c") :]) if s.strip()]
        assert not all(only_perms.match(s) for s in steps), f"permission-only layer: {created}"


def test_files_are_hardened(engine: Engine, track: Tracker, builder_image: str) -> None:
    cid = create(engine, track, builder_image, user="0", command=["sleep", "60"], publish=False)
    engine.start(cid)
    assert sh(engine, cid, "find / -xdev -perm /6000 -print") == ""  # no setuid/setgid
    assert sh(engine, cid, "stat -c '%a %u %g' /etc/passwd /etc/group").split("\n")[:2] == [
        "644 0 0",
        "644 0 0",
    ]
    # The arbitrary UID cannot write them either (it is not root, GID 0 has no w).
    assert engine.exec(cid, ["test", "-w", "/etc/passwd"], user="54321:0").exit_code == 1
    assert engine.exec(cid, ["test", "-w", "/etc/group"], user="54321:0").exit_code == 1
    # No compilers, no sudo, no apt lists, no pip caches, no wheels lying around.
    found = sh(
        engine,
        cid,
        "for c in gcc cc c++ g++ clang make sudo; do command -v $c || true; done;"
        "find /var/lib/apt/lists /var/cache/apt -mindepth 1;"
        "find / -xdev \\( -path '*/.cache/pip' -o -name '*.whl' -o -name "
        f"'{CA_BUNDLE_NAME}' \\) -print",
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
    that the build stage used (a marker nbs2i appends to it) nor its name."""
    saved = io.BufferedReader(ChunkReader(engine.export_image(builder_image)))
    layers = 0
    with tarfile.open(fileobj=saved, mode="r|") as outer:
        for member in outer:
            if not member.name.endswith("layer.tar"):
                continue
            layers += 1
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                for entry in inner:
                    assert not entry.name.endswith(CA_BUNDLE_NAME), entry.name
                    if entry.isfile() and entry.size:
                        data = inner.extractfile(entry).read()  # type: ignore[union-attr]
                        assert CA_BUNDLE_MARKER not in data, f"the CA bundle is in {entry.name}"
    assert layers >= 3


# -- runtime: any UID, read-only, names everywhere -------------------------


@pytest.mark.parametrize("uid", UIDS)
def test_serves_as_any_uid_with_gid_0(
    engine: Engine, track: Tracker, builder_image: str, uid: str
) -> None:
    server = serve(engine, track, builder_image, user=f"{uid}:0")
    status, body = http(server.url("/api/status"))
    assert status == 200 and "started" in body
    probe = json.loads(sh(engine, server.cid, f'python3 -c "{PROBE}"'))
    names_ok(probe, int(uid))
    assert probe["home_writable"]


def test_read_only_restricted_with_volume(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """read-only root, tmpfs /tmp, no capabilities, no-new-privileges, a
    volume on /home/jovyan: names in the server, a kernel, a terminal and an
    exec shell; umask 0002; files written through the API group-writable."""
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:8]}", TEST_LABELS))
    server = serve(
        engine,
        track,
        builder_image,
        user="1000680000:0",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        binds={volume: {"bind": "/home/jovyan", "mode": "rw"}},
    )
    uid = 1000680000
    # The server process itself.
    pid = sh(engine, server.cid, "grep -l 'bin/jupyter-la[b]' /proc/[0-9]*/cmdline | cut -d/ -f3")
    server_env = sh(engine, server.cid, f"grep -E '^(Uid|Gid|Umask)' /proc/{pid.split()[0]}/status")
    assert f"\t{uid}\t" in server_env and "Umask:\t0002" in server_env
    # ... and the name it had when the run script exec'd it (same process).
    assert f"as jovyan (uid {uid}, gid 0)".encode() in engine.logs(server.cid)  # type: ignore[operator]
    # A kernel.
    probe = json.loads(run_in_kernel(server, PROBE))
    names_ok(probe, uid)
    assert probe["umask"] == "0o2" and probe["home_writable"]
    # A terminal (bash through terminado).
    line = run_in_terminal(
        server,
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
    status, _ = http(
        server.url("/api/contents/made-by-api.txt"),
        "PUT",
        {"type": "file", "format": "text", "content": "hello"},
    )
    assert status in (200, 201)
    mode = sh(engine, server.cid, "stat -c '%a %g' /home/jovyan/made-by-api.txt").split()
    assert mode == ["664", "0"]


def test_read_only_without_volume_falls_back_to_tmp(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    server = serve(
        engine,
        track,
        builder_image,
        user="54321:0",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    probe = json.loads(run_in_kernel(server, PROBE))
    names_ok(probe, 54321)
    assert probe["home_writable"]
    out = run_in_kernel(server, "import os; print(os.environ['HOME'])")
    assert out.strip().startswith("/tmp/")


def test_exec_shell_has_a_name_for_image_uid_and_other_uid(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """UID 1001 is in the image's /etc/passwd; another UID exec'd into the
    same container gets its own line (interactive shells run nss-user)."""
    server = serve(engine, track, builder_image, user="1001:0")
    assert sh(engine, server.cid, "whoami").strip() == "jovyan"
    assert sh(engine, server.cid, "getent passwd jovyan | cut -d: -f3").strip() == "1001"
    # exactly one line for 1001 in the copy
    assert sh(engine, server.cid, "grep -c ':1001:' /tmp/.nbs2i/passwd").strip() == "1"
    other = engine.exec(server.cid, ["sh", "-i", "-c", "whoami"], user="54321:0")
    assert other.output.strip().splitlines()[-1] == "jovyan"
    # ... and the server's UID keeps its name.
    assert sh(engine, server.cid, "whoami").strip() == "jovyan"
    assert sh(engine, server.cid, "id -un", user="54321:0").strip() == "jovyan"


# -- PID 1, signals, orphans -----------------------------------------------


def test_tini_reaps_orphans(engine: Engine, track: Tracker, builder_image: str) -> None:
    server = serve(engine, track, builder_image)
    assert sh(engine, server.cid, "tr '\\0' ' ' < /proc/1/cmdline").startswith("tini -g --")
    for _ in range(3):
        sh(engine, server.cid, "(sleep 1 &)")
    time.sleep(2.5)
    zombies = sh(
        engine,
        server.cid,
        "for s in /proc/[0-9]*/stat; do cat $s 2>/dev/null; echo; done | awk '$3 == \"Z\"' ",
    )
    assert zombies.strip() == "", zombies


def test_sigterm_stops_server_and_kernels_fast(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    server = serve(engine, track, builder_image)
    run_in_kernel(server, "print(1)")
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
    wait_ready(engine, server.cid, "/api")
    logs = b""
    match = None
    for _ in range(50):
        logs = engine.logs(server.cid)  # type: ignore[assignment]
        match = re.search(rb"token=([0-9a-f]{32,})", logs)
        if match:
            break
        time.sleep(0.1)
    assert match, logs[-2000:]
    token = match.group(1).decode()
    assert http(f"{server.base}/api/status")[0] == 403
    assert http(f"{server.base}/api/status?token=wrong")[0] == 403
    assert http(f"{server.base}/api/status?token={token}")[0] == 200


def test_jupyter_token(engine: Engine, track: Tracker, builder_image: str) -> None:
    server = serve(engine, track, builder_image, token="chosen-token-123")
    assert http(f"{server.base}/api/status?token=chosen-token-123")[0] == 200
    assert http(f"{server.base}/api/status")[0] == 403
    assert b"chosen-token-123" not in engine.logs(server.cid)  # type: ignore[operator]


def test_empty_token_does_not_turn_auth_off(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    cid = create(engine, track, builder_image, env={"JUPYTER_TOKEN": ""})
    engine.start(cid)
    wait_ready(engine, cid, "/api")
    assert http(f"http://127.0.0.1:{host_port(engine, cid)}/api/status")[0] == 403


def test_password_is_hashed_and_hidden(engine: Engine, track: Tracker, builder_image: str) -> None:
    password = "s3cret-" + uuid.uuid4().hex[:6]
    cid = create(engine, track, builder_image, env={"JUPYTER_PASSWORD": password})
    engine.start(cid)
    wait_ready(engine, cid, "/api")
    base = f"http://127.0.0.1:{host_port(engine, cid)}"
    assert http(f"{base}/api/status")[0] == 403  # no token, no password: refused
    # Log in with the password the way a browser does: xsrf cookie, then POST.
    jar = urllib.request.HTTPCookieProcessor()
    browser = urllib.request.build_opener(urllib.request.ProxyHandler({}), jar)
    browser.open(f"{base}/login", timeout=5).read()
    xsrf = next(c.value for c in jar.cookiejar if c.name == "_xsrf")
    form = f"password={password}&_xsrf={xsrf}".encode()
    browser.open(urllib.request.Request(f"{base}/login", data=form), timeout=5).read()
    with browser.open(f"{base}/api/status", timeout=5) as response:
        assert response.status == 200
    # Kernels started by that server do not see it; neither does anything else.
    status, kernel = _browser_json(browser, f"{base}/api/kernels", xsrf)
    assert status == 201
    pids = sh(engine, cid, "grep -l 'ipykernel_launche[r]' /proc/[0-9]*/cmdline | cut -d/ -f3")
    assert pids.split(), "no kernel process"
    # (PID 1, tini, keeps the container's environment: see the report.)
    for pid in pids.split():
        environ = sh(engine, cid, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        assert "JUPYTER_PASSWORD" not in environ and password not in environ
        assert "NBS2I_PASSWORD_FILE" not in environ
    # The server's environment, its command line, /tmp: no password, no hash file.
    server_pid = sh(engine, cid, "grep -l 'bin/jupyter-la[b]' /proc/[0-9]*/cmdline | cut -d/ -f3")
    server_env = sh(engine, cid, f"tr '\\0' '\\n' < /proc/{server_pid.strip()}/environ")
    # (/proc/PID/environ shows the environment the server was exec'd with; the
    # config file drops NBS2I_PASSWORD_FILE from it before any kernel starts.)
    assert password not in server_env and "JUPYTER_PASSWORD" not in server_env
    assert "password" not in sh(engine, cid, "ls /tmp/.nbs2i")  # the hash file is gone
    assert password.encode() not in engine.logs(cid)  # type: ignore[operator]
    assert kernel["id"]


def _browser_json(opener: Any, url: str, xsrf: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("X-XSRFToken", xsrf)
    request.add_header("Content-Type", "application/json")
    with opener.open(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_run_refuses_privileged_port_and_arguments(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    cid = create(engine, track, builder_image, env={"JUPYTER_PORT": "80"}, publish=False)
    engine.start(cid)
    assert engine.wait(cid, timeout=30) == 2
    assert b"no privileged ports" in engine.logs(cid)  # type: ignore[operator]
    cid = create(
        engine,
        track,
        builder_image,
        command=["/usr/libexec/s2i/run", "--ServerApp.token="],
        publish=False,
    )
    engine.start(cid)
    assert engine.wait(cid, timeout=30) == 2


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
    cid = create(engine, track, builder_image, user="1000680000:0", env=env)
    engine.start(cid)
    # A stand-in for the hub's API inside the container (loopback only).
    sh(engine, cid, f'python3 -c "{FAKE_HUB}" >/dev/null 2>&1 &')
    wait_ready(engine, cid, "/user/student/api")
    cmdlines = sh(engine, cid, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
    assert re.search(r"jupyterhub-singleuser", cmdlines), cmdlines
    assert "jupyter-lab" not in cmdlines and "jupyter lab" not in cmdlines
    assert engine.exec(cid, ["python3", "/usr/libexec/s2i/healthcheck"]).exit_code == 0


def test_healthcheck_follows_base_url(engine: Engine, track: Tracker, builder_image: str) -> None:
    """The HEALTHCHECK asks the API at the server's base URL; the engine marks
    the container healthy; a server that is gone is reported unhealthy."""
    cid = create(engine, track, builder_image, env={"JUPYTER_BASE_URL": "/course/"})
    engine.start(cid)
    wait_ready(engine, cid, "/course/api")
    assert engine.exec(cid, ["python3", "/usr/libexec/s2i/healthcheck"]).exit_code == 0
    wrong = engine.exec(
        cid, ["env", "JUPYTER_BASE_URL=/", "python3", "/usr/libexec/s2i/healthcheck"]
    )
    assert wrong.exit_code == 1
    status = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        status = engine.inspect_container(cid)["State"].get("Health", {}).get("Status", "")
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy"


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
    import base64

    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _tar(files: dict[str, bytes], prefix: str, uid: int = 1001, modes: dict | None = None) -> bytes:
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
    engine: Engine, track: Tracker, image: str, files: dict[str, bytes], **kw: Any
) -> tuple[str, int, str]:
    """S2I by hand: a container from the builder running assemble as the
    image user, sources tarred into /tmp/src; (container, exit code, log)."""
    command = kw.get("command", ["/usr/libexec/s2i/assemble"])
    cid = create(engine, track, image, user="", command=command, publish=False)
    engine.put_archive(cid, "/tmp", _tar(files, "src", modes=kw.get("modes")))
    if "extra_tar" in kw:
        engine.put_archive(cid, "/tmp", kw["extra_tar"])
    engine.start(cid)
    code = engine.wait(cid, timeout=300)
    log = engine.logs(cid)
    return cid, code, log.decode(errors="replace") if isinstance(log, bytes) else ""


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
    tag = track.image(f"nbs2i-test/s2i-by-hand:{uuid.uuid4().hex[:8]}")
    repo, name = tag.split(":")
    engine.commit(cid, repo, name, changes=['CMD ["/usr/libexec/s2i/run"]'])
    # The layer holds the 2 MiB once (an S2I build that copies holds it twice).
    added = engine.inspect_image(tag)["Size"] - engine.inspect_image(builder_image)["Size"]
    assert len(payload) <= added < 1.5 * len(payload) + 512 * 1024, added
    # Serve it as a random UID: seeded HOME, the installed package, modes.
    server = serve(engine, track, tag, user="1000680000:0")
    status, listing = http(server.url("/api/contents/"))
    assert status == 200
    assert {"hello.ipynb", "data"} <= {item["name"] for item in listing["content"]}
    assert run_in_kernel(server, "import nbs2i_probe; print(nbs2i_probe.VALUE)").strip() == "42"
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
        command=["/tmp/scripts/assemble"],
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
    tag = track.image(f"nbs2i-test/artifacts:{uuid.uuid4().hex[:8]}")
    repo, name = tag.split(":")
    engine.commit(cid, repo, name, changes=['CMD ["/usr/libexec/s2i/run"]'])
    # stdout only, stderr kept apart by the shell: what `s2i --incremental` reads.
    saver = create(engine, track, tag, user="", command=["sleep", "120"], publish=False)
    engine.start(saver)
    sh(engine, saver, "/usr/libexec/s2i/save-artifacts > /tmp/saved.tar 2> /tmp/saved.err")
    assert sh(engine, saver, "cat /tmp/saved.err") == ""
    wrapped = b"".join(engine.get_archive(saver, "/tmp/saved.tar"))
    with tarfile.open(fileobj=io.BytesIO(wrapped)) as outer:
        stream = outer.extractfile("saved.tar").read()  # type: ignore[union-attr]
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
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            member.name = "artifacts/" + member.name
            member.uid, member.gid = 1001, 0
            dst.addfile(member, data)
    cid, code, log = assemble(engine, track, builder_image, files, extra_tar=artifacts.getvalue())
    assert code == 0, log
    assert "Reusing dependencies" in log


def test_home_is_seeded_without_overwriting(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """A student's edit on the volume survives the next start (as another
    UID); a notebook the image has and the volume lacks is copied back."""
    cid, code, log = assemble(
        engine, track, builder_image, {"a.ipynb": NOTEBOOK, "b.ipynb": NOTEBOOK}
    )
    assert code == 0, log
    tag = track.image(f"nbs2i-test/seeded:{uuid.uuid4().hex[:8]}")
    repo, name = tag.split(":")
    engine.commit(cid, repo, name, changes=['CMD ["/usr/libexec/s2i/run"]'])
    volume = track.volume(engine.create_volume(f"nbs2i-test-{uuid.uuid4().hex[:8]}", TEST_LABELS))
    binds = {volume: {"bind": "/home/jovyan", "mode": "rw"}}
    first = serve(engine, track, tag, user="54321:0", binds=binds)
    edited = NOTEBOOK.replace(b'"cells": []', b'"cells": [], "x": 1')
    status, _ = http(
        first.url("/api/contents/a.ipynb"),
        "PUT",
        {"type": "file", "format": "text", "content": edited.decode()},
    )
    assert status == 200
    assert http(first.url("/api/contents/b.ipynb"), "DELETE")[0] == 204
    engine.stop(first.cid, timeout=10)
    second = serve(engine, track, tag, user="1000680000:0", binds=binds)
    assert sh(engine, second.cid, "cat /home/jovyan/a.ipynb").encode() == edited
    assert sh(engine, second.cid, "test -f /home/jovyan/b.ipynb && echo back").strip() == "back"
    # The second UID can still write what the first one created.
    status, _ = http(
        second.url("/api/contents/a.ipynb"),
        "PUT",
        {"type": "file", "format": "text", "content": NOTEBOOK.decode()},
    )
    assert status == 200


def test_usage_explains_nbs2i_s2i_and_run(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    cid = create(engine, track, builder_image, command=["/usr/libexec/s2i/usage"], publish=False)
    engine.start(cid)
    assert engine.wait(cid, timeout=30) == 0
    text = engine.logs(cid).decode()  # type: ignore[union-attr]
    for words in ("nbs2i build", "s2i build", "docker run", "--read-only", "JUPYTER_PASSWORD"):
        assert words in text, words


def test_cli_builder_build_streams_progress_and_tags(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    """`nbs2i builder build` through the engine seam; with a warm cache (the
    fixture's build) it is quick and must give the very same image."""
    nbs2i = str(Path(sys.executable).with_name("nbs2i"))
    tags = [track.image(f"nbs2i-test/cli-builder:{uuid.uuid4().hex[:8]}") for _ in range(2)]
    done = subprocess.run(
        [nbs2i, "builder", "build", "--tag", tags[0], "--tag", tags[1]],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "==> Step 1/" in done.stderr and "==> Built " in done.stderr
    image_id = done.stdout.strip().splitlines()[-1]
    assert engine.inspect_image(tags[0])["Id"] == engine.inspect_image(tags[1])["Id"] == image_id
    # Bad input: one line naming the problem and the fix, nothing built.
    missing = f"nbs2i-test/no-such-base:{uuid.uuid4().hex[:8]}"
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


def _login(base: str, password: str) -> int:
    """Log in through the login form the way a browser does; the status of
    /api/status afterwards (with the session cookie only)."""
    jar = urllib.request.HTTPCookieProcessor()
    browser = urllib.request.build_opener(urllib.request.ProxyHandler({}), jar)
    browser.open(f"{base}/login", timeout=5).read()
    xsrf = next(c.value for c in jar.cookiejar if c.name == "_xsrf")
    form = f"password={password}&_xsrf={xsrf}".encode()
    try:
        browser.open(urllib.request.Request(f"{base}/login", data=form), timeout=5).read()
        with browser.open(f"{base}/api/status", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_prehashed_password_never_enters_the_container(
    engine: Engine, track: Tracker, builder_image: str
) -> None:
    maker = create(
        engine,
        track,
        builder_image,
        command=["python3", "-c", "from jupyter_server.auth import passwd; print(passwd('pw-1'))"],
        publish=False,
    )
    engine.start(maker)
    assert engine.wait(maker, timeout=60) == 0
    hashed = engine.logs(maker, stderr=False).decode().strip()  # type: ignore[union-attr]
    assert hashed.startswith("argon2:")
    cid = create(engine, track, builder_image, env={"JUPYTER_PASSWORD_HASH": hashed})
    engine.start(cid)
    wait_ready(engine, cid, "/api")
    base = f"http://127.0.0.1:{host_port(engine, cid)}"
    assert http(f"{base}/api/status")[0] == 403
    assert _login(base, "wrong") in (401, 403)
    assert _login(base, "pw-1") == 200
    # A value that is not a hash is refused, not taken as a plain password.
    bad = create(engine, track, builder_image, env={"JUPYTER_PASSWORD_HASH": "pw-1"}, publish=False)
    engine.start(bad)
    assert engine.wait(bad, timeout=30) == 2
