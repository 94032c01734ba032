"""`nbs2i run` / `nbs2i stop` against the real engine.

What needs the lecture notebooks runs on sample-notebooks built for real
(the `sample_build` fixture); the rest on the builder image, which is a
notebook server too.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from typing import Any

import pytest

from nbs2i import labels, restricted, run
from nbs2i.engine import Engine, ExecResult
from nbs2i.errors import NotFound
from tests.support.builds import LECTURES
from tests.support.cli import Running, nbs2i
from tests.support.jupyter import Api
from tests.support.session import LABEL_PAIRS, label_args
from tests.support.tracker import Tracker

URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/lab(?:\?token=([0-9a-f]+))?$")


def run_args(image: str, *args: str) -> list[str]:
    """`nbs2i run IMAGE` on any free port, with the test labels."""
    return ["run", image, "--port", "0", *args, *label_args()]


def unique(name: str) -> str:
    return f"nbs2i-test-{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.matrix
def test_defaults_are_openshift_restricted_v2(
    engine: Engine, sample_build: Any, track: Tracker
) -> None:
    server = run.start(engine, run.RunRequest(image=sample_build.tag, port=0, labels=LABEL_PAIRS))
    track.container(server.container_id)
    info = engine.inspect_container(server.container_id)
    uid, gid = (int(x) for x in info.user.split(":"))
    assert restricted.UID_MIN <= uid <= restricted.UID_MAX and gid == 0 and uid == server.uid
    assert info.labels[labels.ROLE] == labels.ROLE_RUN
    assert info.ports == {restricted.SERVER_PORT: server.port}

    # Inside: the random UID has a name, no capability, no way up, the root is
    # read-only with a tmpfs on /tmp.
    def sh(cmd: str) -> ExecResult:
        return engine.exec(server.container_id, ["sh", "-c", cmd])

    assert sh("id -u; id -g; whoami").output.split() == [str(uid), "0", "jovyan"]
    status = sh("grep -E '^(CapEff|NoNewPrivs)' /proc/1/status").output
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
    mounts = sh("cat /proc/mounts").output.splitlines()
    assert any(m.split()[1] == "/" and "ro" in m.split()[3].split(",") for m in mounts), mounts
    assert any(m.split()[1:3] == ["/tmp", "tmpfs"] for m in mounts), mounts
    assert sh("touch /etc/x /opt/app-root/src/x").exit_code != 0

    # Without a volume, the server shows the image's notebooks.
    api = Api(server.port, server.token)
    assert set(LECTURES) <= set(api.names()), api.names()
    # Authentication is on: no token, no contents.
    assert Api(server.port).call("GET", "/api/contents", auth=False)[0] == 403
    # And the URL we give out is the one that works.
    assert server.url == f"http://127.0.0.1:{server.port}/lab?token={server.token}"
    assert restricted.http_status(server.port, f"/lab?token={server.token}") == 200

    began = time.monotonic()
    stopped = run.stop(engine, server.name)
    assert time.monotonic() - began < 5
    assert stopped.name == server.name and stopped.workspace is None
    with pytest.raises(NotFound):
        engine.inspect_container(server.container_id)


def test_two_starts_get_two_uids(engine: Engine, builder_image: str, track: Tracker) -> None:
    uids = []
    for _ in range(2):
        server = run.start(engine, run.RunRequest(image=builder_image, port=0, labels=LABEL_PAIRS))
        track.container(server.container_id)
        uids.append(server.uid)
        run.stop(engine, server.name)
    assert uids[0] != uids[1]


@pytest.mark.matrix
def test_cli_detach_prints_url_and_stop_removes(
    engine: Engine, sample_build: Any, track: Tracker
) -> None:
    name = track.container(unique("detach"))
    result = nbs2i(*run_args(sample_build.tag, "--detach", "--name", name), timeout=180)
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"stop it with: nbs2i stop {name}"
    match = URL.match(lines[0])
    assert match and match.group(2), lines
    port, token = int(match.group(1)), match.group(2)
    assert set(LECTURES) <= set(Api(port, token).names())
    uid = engine.inspect_container(name).user.split(":")[0]
    assert f"as UID {uid}, GID 0" in result.stderr

    stop = nbs2i("stop", name, timeout=60)
    assert stop.code == 0, stop.stderr
    assert stop.stdout.strip() == f"stopped and removed {name}"
    with pytest.raises(NotFound):
        engine.inspect_container(name)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_foreground_streams_the_log_and_a_signal_removes_it(
    engine: Engine, builder_image: str, track: Tracker, signum: int
) -> None:
    """Ctrl-C, a process manager's SIGTERM and a closed terminal's SIGHUP all
    stop and remove the server, and nbs2i says so."""
    name = track.container(unique("fg"))
    running = Running(*run_args(builder_image, "--name", name))
    try:
        match = URL.match(running.wait_for(URL, 120, stream="stdout"))
        assert match
        assert Api(int(match.group(1)), match.group(2)).call("GET", "/api/status")[0] == 200
        # The server's own log reaches the terminal.
        running.wait_for(re.compile(r"Jupyter Server .* is running|Serving notebooks"), 30)
        running.signal(signum)
    finally:
        done = running.finish(timeout=60)
    assert done.code == 0, done.stderr[-2000:]
    assert f"==> stopped and removed {name}" in done.stderr.splitlines()
    with pytest.raises(NotFound):
        engine.inspect_container(name)


def test_password_instead_of_token(engine: Engine, builder_image: str, track: Tracker) -> None:
    name = track.container(unique("pw"))
    password = "correct horse battery staple"
    result = nbs2i(
        *run_args(builder_image, "--detach", "--password", "--name", name),
        env={"NBS2I_PASSWORD": password},
        timeout=180,
    )
    assert result.code == 0, result.stderr
    assert "a password is set" in result.stderr
    match = URL.match(result.stdout.splitlines()[0])
    assert match and match.group(2) is None, result.stdout
    port = int(match.group(1))
    assert Api(port).call("GET", "/api/contents", auth=False)[0] == 403

    # Log in through the form, as a browser would: the password works...
    assert Api(port).login(password) is True
    assert Api(port).login("wrong password") is False
    # ...and the plain password is nowhere in the container: not in its config,
    # not in any process's environment (PID 1's included, which a kernel could read).
    assert not any(password in value for value in engine.inspect_container(name).env.values())
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


@pytest.mark.matrix
def test_stop_keeps_the_workspace_volume(
    engine: Engine, builder_image: str, track: Tracker
) -> None:
    volume = track.volume(unique("ws"))
    request = run.RunRequest(image=builder_image, port=0, volume=volume, labels=LABEL_PAIRS)
    server = run.start(engine, request)
    track.container(server.container_id)
    assert server.workspace == run.Workspace("volume", volume, created=True)
    result = nbs2i("stop", server.name)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == (
        f"stopped and removed {server.name}; workspace volume {volume} kept"
    )
    assert engine.inspect_volume(volume).name == volume
