"""nbs2i.run without an engine: the restricted settings, the checks, the wait loop.

The wait loop is driven by a fake engine only to inject what a real one cannot
be made to do on cue (a container that dies between two polls); the real
behaviour is covered in tests/engine/test_run*.py.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nbs2i import run
from nbs2i.errors import RunError, SecurityError, UsageError
from nbs2i.progress import lines


def test_random_uid_is_in_openshift_range_and_varies() -> None:
    uids = {run.choose_uid(None) for _ in range(50)}
    assert all(run.UID_MIN <= u <= run.UID_MAX for u in uids)
    assert len(uids) > 40  # 50 draws from a million: collisions are rare
    assert run.choose_uid(None, lambda n: n - 1) == run.UID_MAX
    assert run.choose_uid(None, lambda n: 0) == run.UID_MIN


@pytest.mark.parametrize("uid", [0, -1])
def test_root_or_negative_uid_is_refused(uid: int) -> None:
    with pytest.raises(SecurityError, match=f"refusing to run as UID {uid}"):
        run.choose_uid(uid)


def test_explicit_uid_is_kept() -> None:
    assert run.choose_uid(1234) == 1234


def test_host_config_is_restricted_v2() -> None:
    req = run.RunRequest(image="x", port=9999)
    cfg = run.host_config(req, None, 8888)
    assert cfg["cap_drop"] == ["ALL"]
    assert cfg["security_opt"] == ["no-new-privileges:true"]
    assert cfg["read_only"] is True
    assert "/tmp" in cfg["tmpfs"] and "nosuid" in cfg["tmpfs"]["/tmp"]
    assert cfg["port_bindings"] == {8888: ("127.0.0.1", 9999)}
    assert "binds" not in cfg  # no tmpfs on HOME: the image's fallback is what runs


def test_host_config_any_port_and_writable_root_and_volume() -> None:
    req = run.RunRequest(image="x", port=0, read_only=False)
    ws = run.Workspace("volume", "vol1", created=False)
    cfg = run.host_config(req, ws, 8888)
    assert cfg["port_bindings"] == {8888: ("127.0.0.1",)}
    assert cfg["read_only"] is False and "tmpfs" not in cfg
    assert cfg["binds"] == {"vol1": {"bind": "/home/jovyan", "mode": "rw"}}


def test_env_and_labels() -> None:
    req = run.RunRequest(image="img", env=(("A", "1"),), labels=(("t", "1"),))
    assert run.server_env(req, "tok") == {"A": "1", "JUPYTER_TOKEN": "tok"}
    pw = run.RunRequest(image="img", password="pw")
    env = run.server_env(pw, None)
    assert list(env) == ["JUPYTER_PASSWORD_HASH"]  # never the plain password
    algorithm, salt, digest = env["JUPYTER_PASSWORD_HASH"].split(":")
    assert algorithm == "sha512" and len(salt) == 32
    assert digest == hashlib.sha512(b"pw" + salt.encode()).hexdigest()
    assert run.server_env(pw, None) != env  # salted afresh each time
    assert run.run_labels(req) == {"t": "1", "nbs2i.role": "run", "nbs2i.image": "img"}


@pytest.mark.parametrize("key", ["JUPYTER_TOKEN", "JUPYTER_PASSWORD", "HOME", "1X", "A-B"])
def test_reserved_or_bad_env_names_are_refused(key: str) -> None:
    with pytest.raises(UsageError):
        run.check_env(((key, "v"),))


def test_auth_checks() -> None:
    run.check_auth(None, None)
    run.check_auth("abc", None)
    run.check_auth(None, "pw")
    with pytest.raises(UsageError, match="both"):
        run.check_auth("abc", "pw")
    with pytest.raises(SecurityError, match="empty token"):
        run.check_auth("  ", None)
    with pytest.raises(UsageError, match="empty"):
        run.check_auth(None, "")


def test_urls() -> None:
    ws = None
    server = run.Server("id", "n", "img", 8890, 1000000001, "abc", ws, 1.0)
    assert server.url == "http://127.0.0.1:8890/lab?token=abc"
    assert run.Server("id", "n", "img", 8890, 1, None, ws, 1.0).url == "http://127.0.0.1:8890/lab"


def test_tokens_are_long_and_fresh() -> None:
    a, b = run.new_token(), run.new_token()
    assert a != b and len(a) == 48


@pytest.mark.parametrize(
    ("spec", "is_dir"),
    [("work", False), ("my.vol_1", False), ("./work", True), ("/srv/x", True), ("~/w", True)],
)
def test_directory_or_volume(spec: str, is_dir: bool) -> None:
    assert run.is_directory_spec(spec) is is_dir


def _st(mode: int, uid: int, gid: int) -> Any:
    return SimpleNamespace(st_mode=stat.S_IFDIR | mode, st_uid=uid, st_gid=gid)


@pytest.mark.parametrize(
    ("mode", "owner", "group", "ok"),
    [
        (0o775, 5, 0, True),  # group 0, g+rwx: the OpenShift way
        (0o755, 5, 0, False),  # group 0 but not group-writable
        (0o770, 5, 100, False),  # another group
        (0o700, 42, 100, True),  # owned by the UID itself
        (0o577, 42, 0, False),  # owner bits apply to the owner, even if others may write
        (0o777, 5, 100, True),  # world-writable
        (0o773, 5, 0, True),
        (0o764, 5, 0, False),  # g+w without g+x: cannot create files
    ],
)
def test_writable_by(mode: int, owner: int, group: int, ok: bool) -> None:
    assert run.writable_by(_st(mode, owner, group), uid=42, gid=0) is ok


def test_check_directory_messages(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(RunError, match="does not exist") as exc:
        run.check_directory(missing, 1000000001)
    assert "mkdir -p" in exc.value.fix
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    os.chmod(locked, 0o755)
    with pytest.raises(RunError, match="not writable by UID 1000000001 with GID 0") as exc:
        run.check_directory(locked, 1000000001)
    assert f"chgrp 0 {locked} && chmod g+rwX {locked}" in exc.value.fix
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        run.check_directory(afile, 1000000001)


def test_check_port_free_says_which_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RunError, match=f"port {port} on 127.0.0.1 is already taken") as exc:
            run.check_port_free(port)
        assert "--port" in exc.value.fix
    run.check_port_free(0)
    with pytest.raises(UsageError):
        run.check_port_free(70000)


def test_exposed_port() -> None:
    assert run.exposed_port({"Config": {"ExposedPorts": {"9000/tcp": {}}}}) == 9000
    assert run.exposed_port({"Config": {"ExposedPorts": None}}) == 8888
    two = {"Config": {"ExposedPorts": {"9000/tcp": {}, "9001/tcp": {}}}}
    assert run.exposed_port(two) == 8888


def test_lines_splits_chunks() -> None:
    chunks = [b"a\nb", b"c\r\n", b"\nd\xff"]
    assert list(lines(iter(chunks))) == ["a", "bc", "", "d\ufffd"]
    assert run.last_lines("\n".join(str(i) for i in range(30)) + "\n", 3) == "27\n28\n29"


class FakeEngine:
    """Just enough engine for the wait loop: a container state script and logs."""

    def __init__(self, states: list[dict[str, Any]], logs: bytes = b"") -> None:
        self.states = states
        self._logs = logs
        self.polls = 0

    def inspect_container(self, _cid: str) -> dict[str, Any]:
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return {"State": state}

    def logs(self, _cid: str, tail: int = 20, **_: Any) -> bytes:
        return self._logs


RUNNING = {"Running": True}


def test_wait_returns_when_api_and_token_answer() -> None:
    seen: list[tuple[str, Any]] = []
    answers = iter([None, 404, 200, 200])

    def probe(url: str, headers: Any = None) -> int | None:
        seen.append((url, headers))
        return next(answers)

    run.wait_until_ready(FakeEngine([RUNNING]), "c", 9000, "tok", 5, probe)  # type: ignore[arg-type]
    assert seen[-1] == ("http://127.0.0.1:9000/api/status", {"Authorization": "token tok"})
    assert [u for u, _ in seen[:3]] == ["http://127.0.0.1:9000/api"] * 3


def test_wait_reports_exit_with_last_20_lines() -> None:
    logs = "\n".join(f"line {i}" for i in range(40)).encode()
    engine = FakeEngine([RUNNING, {"Running": False, "ExitCode": 3}], logs)
    with pytest.raises(RunError, match=r"exited during start-up \(exit code 3\)") as exc:
        run.wait_until_ready(engine, "c", 9000, None, 5, lambda *a: None)  # type: ignore[arg-type]
    assert exc.value.details.splitlines() == [f"line {i}" for i in range(20, 40)]


def test_wait_gives_up_in_time() -> None:
    import time

    began = time.monotonic()
    with pytest.raises(RunError, match=r"did not answer on 127.0.0.1:9000 within 0.5 s"):
        run.wait_until_ready(FakeEngine([RUNNING]), "c", 9000, None, 0.5, lambda *a: None)  # type: ignore[arg-type]
    assert time.monotonic() - began < 3


def test_wait_refused_token_is_its_own_error() -> None:
    answers = iter([200, 403])
    with pytest.raises(RunError, match="refuses the token"):
        run.wait_until_ready(
            FakeEngine([RUNNING]),  # type: ignore[arg-type]
            "c",
            9000,
            "tok",
            5,
            lambda *a: next(answers),
        )


def test_http_status_of_nothing_is_none() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run.http_status(f"http://127.0.0.1:{port}/api") is None


def test_bad_names_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        run.container_name("-bad")
    assert run.container_name(None).startswith("nbs2i-run-")
    assert run.container_name("nbs2i-demo") == "nbs2i-demo"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("NBS2I_DEBUG", "NBS2I_PASSWORD")}
    return subprocess.run(
        [sys.executable, "-m", "nbs2i", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env, "DOCKER_HOST": "tcp://127.0.0.1:1"},  # never reached
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uid", "abc"], "'abc' is not 'random' or a number"),
        (["--env", "NOEQUALS"], "'NOEQUALS' is not K=V"),
        (["--label", "=v"], "'=v' is not K=V"),
        (["--port", "70000"], "70000 is not in the range"),
        (["--timeout", "0"], "--timeout"),
        (["--password"], "without one, set NBS2I_PASSWORD"),
    ],
)
def test_cli_usage_errors_before_any_engine_call(args: list[str], message: str) -> None:
    result = _cli("run", "some/image", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_run_help_names_the_defaults() -> None:
    result = _cli("run", "--help")
    assert result.returncode == 0
    for text in ("--volume", "--detach", "--uid", "1000000000-1000999999", "127.0.0.1"):
        assert text in result.stdout
