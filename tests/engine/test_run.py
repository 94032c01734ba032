"""`nbs2i run` / `nbs2i stop` against the real engine, on sample-notebooks built for real."""

from __future__ import annotations

import http.cookiejar
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from nbs2i import run
from nbs2i.engine import Engine, ExecResult
from nbs2i.errors import NotFound
from tests.conftest import TEST_LABELS, Tracker
from tests.engine.run_support import LABEL_PAIRS, LECTURES, Api

URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab(?:\?token=([0-9a-f]+))?$")


@pytest.fixture
def image(sample_build: Any) -> str:
    return str(sample_build.tag)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NBS2I_DEBUG", "NBS2I_PASSWORD")}
    return {**env, **extra}


def run_cmd(image: str, *args: str) -> list[str]:
    """`nbs2i run IMAGE` on any free port, with the test labels."""
    labels = [f"--label={k}={v}" for k, v in TEST_LABELS.items()]
    return [sys.executable, "-m", "nbs2i", "run", image, "--port", "0", *args, *labels]


def test_defaults_are_openshift_restricted_v2(engine: Engine, image: str, track: Tracker) -> None:
    server = run.start(engine, run.RunRequest(image=image, port=0, labels=LABEL_PAIRS))
    track.container(server.container_id)
    info = engine.inspect_container(server.container_id)
    host = info["HostConfig"]
    uid, gid = (int(x) for x in info["Config"]["User"].split(":"))
    assert run.UID_MIN <= uid <= run.UID_MAX and gid == 0 and uid == server.uid
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    bindings = host["PortBindings"]["8888/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert info["Config"]["Labels"]["nbs2i.role"] == "run"

    # Inside: the random UID has a name, no capability, no way up, root is read-only.
    def sh(cmd: str) -> ExecResult:
        return engine.exec(server.container_id, ["sh", "-c", cmd])

    assert sh("id -u; id -g; whoami").output.split() == [str(uid), "0", "jovyan"]
    status = sh("grep -E '^(CapEff|NoNewPrivs)' /proc/1/status").output
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
    assert sh("touch /etc/x /opt/app-root/src/x").exit_code != 0

    # Without a volume, the server shows the image's notebooks.
    api = Api(server.port, server.token)
    names = api.names()
    assert set(LECTURES) <= set(names), names
    # Authentication is on: no token, no contents.
    assert Api(server.port).call("GET", "/api/contents", auth=False)[0] == 403
    # And the URL we give out is the one that works.
    assert server.url == f"http://127.0.0.1:{server.port}/lab?token={server.token}"
    assert run.http_status(server.url) == 200

    began = time.monotonic()
    stopped = run.stop(engine, server.name)
    assert time.monotonic() - began < 5
    assert stopped.name == server.name and stopped.workspace is None
    with pytest.raises(NotFound):
        engine.inspect_container(server.container_id)


def test_two_starts_get_two_uids(engine: Engine, image: str, track: Tracker) -> None:
    uids = []
    for _ in range(2):
        server = run.start(engine, run.RunRequest(image=image, port=0, labels=LABEL_PAIRS))
        track.container(server.container_id)
        uids.append(server.uid)
        run.stop(engine, server.name)
    assert uids[0] != uids[1]


def test_cli_detach_prints_url_and_stop_removes(engine: Engine, image: str, track: Tracker) -> None:
    name = f"nbs2i-test-detach-{os.getpid()}"
    result = subprocess.run(
        run_cmd(image, "--detach", "--name", name),
        capture_output=True,
        text=True,
        timeout=180,
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr
    track.container(name)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"stop it with: nbs2i stop {name}"
    match = URL.match(lines[0])
    assert match and match.group(2), lines
    port, token = int(match.group(1)), match.group(2)
    assert set(LECTURES) <= set(Api(port, token).names())
    assert f"as UID {engine.inspect_container(name)['Config']['User'].split(':')[0]}, GID 0" in (
        result.stderr
    )

    stop = subprocess.run(
        [sys.executable, "-m", "nbs2i", "stop", name],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == f"stopped and removed {name}"
    with pytest.raises(NotFound):
        engine.inspect_container(name)


def _reader(stream: object, out: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line.rstrip("\n"))


def _next_line(lines: queue.Queue[str], pattern: re.Pattern[str], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if pattern.search(line):
            return line
    raise AssertionError(f"no line matching {pattern.pattern} within {seconds} s")


def test_foreground_streams_the_log_and_ctrl_c_removes_it(
    engine: Engine, image: str, track: Tracker
) -> None:
    name = f"nbs2i-test-fg-{os.getpid()}"
    track.container(name)
    proc = subprocess.Popen(
        run_cmd(image, "--name", name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    threads = [
        threading.Thread(target=_reader, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_reader, args=(proc.stderr, err), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        url = _next_line(out, URL, 120)
        match = URL.match(url)
        assert match
        api = Api(int(match.group(1)), match.group(2))
        assert set(LECTURES) <= set(api.names())
        # The server's own log reaches the terminal (a request we just made).
        _next_line(err, re.compile(r"starting JupyterLab|Jupyter Server .* is running"), 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    for t in threads:
        t.join(timeout=10)
    rest = []
    while not err.empty():
        rest.append(err.get())
    assert f"==> stopped and removed {name}" in rest
    with pytest.raises(NotFound):
        engine.inspect_container(name)


def test_password_instead_of_token(engine: Engine, image: str, track: Tracker) -> None:
    name = f"nbs2i-test-pw-{os.getpid()}"
    password = "correct horse battery staple"
    result = subprocess.run(
        run_cmd(image, "--detach", "--password", "--name", name),
        capture_output=True,
        text=True,
        timeout=180,
        env=cli_env(NBS2I_PASSWORD=password),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    track.container(name)
    assert "a password is set" in result.stderr
    match = URL.match(result.stdout.splitlines()[0])
    assert match and match.group(2) is None, result.stdout
    port = int(match.group(1))
    assert Api(port).call("GET", "/api/contents", auth=False)[0] == 403

    # Log in through the form, as a browser would: the password works...
    assert _login(port, password) is True
    assert _login(port, "wrong password") is False
    # ...and the server process no longer has it in its environment.
    found = engine.exec(
        name,
        [
            "sh",
            "-c",
            "for p in /proc/[0-9]*; do "
            'if grep -q "jupyter[-]lab" "$p/cmdline" 2>/dev/null; then '
            'tr "\\0" "\\n" < "$p/environ" | grep -c "^JUPYTER_PASSWORD=" || true; fi; done',
        ],
    )
    # One server process ("[-]" keeps the pattern from matching this shell itself).
    assert found.output.split() == ["0"], found.output
    # The plain password is nowhere in the container: not in its config, not in
    # any process's environment (PID 1's included, which a kernel could read).
    config_env = engine.inspect_container(name)["Config"]["Env"] or []
    assert not any(password in item for item in config_env)
    leaked = engine.exec(
        name,
        [
            "sh",
            "-c",
            'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -cF "$1" || true',
            "sh",
            password,
        ],
    )
    assert leaked.output.split() == ["0"], leaked.output
    run.stop(engine, name)


def _login(port: int, password: str) -> bool:
    """POST the login form with its _xsrf cookie; True when the server lets us in."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
    )
    base = f"http://127.0.0.1:{port}"
    with opener.open(f"{base}/login", timeout=30) as resp:
        assert resp.status == 200
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"password": password, "_xsrf": xsrf}).encode()
    try:
        with opener.open(f"{base}/login?next=%2Fapi%2Fcontents", data=form, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        assert exc.code == 401  # the login page again, with "Invalid credentials"
        return False
    try:
        with opener.open(f"{base}/api/contents", timeout=30) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
        return False
