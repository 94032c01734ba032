"""nbs2i.run and the restricted platform without an engine: the container a
run asks for, the input checks, the mark `nbs2i stop` trusts, and the CLI's
refusals before any engine call. What a real engine does (a server that
exits, never answers, takes a port) is in tests/engine/test_run*.py."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from nbs2i import interrupts, labels, restricted, run
from nbs2i.engine import ContainerInfo, ImageConfig, Mount, PortBinding, Tmpfs
from nbs2i.errors import RunError, SecurityError, UsageError
from nbs2i.progress import lines
from tests.support.cli import nbs2i


def test_random_uid_is_in_openshift_range_and_varies() -> None:
    uids = {restricted.random_uid() for _ in range(50)}
    assert all(restricted.UID_MIN <= u <= restricted.UID_MAX for u in uids)
    assert len(uids) > 40  # 50 draws from a billion: collisions are rare
    assert restricted.random_uid(lambda n: n - 1) == restricted.UID_MAX
    assert restricted.random_uid(lambda n: 0) == restricted.UID_MIN


@pytest.mark.parametrize(
    ("uid", "error", "message"),
    [
        (0, SecurityError, "refusing to run as UID 0"),
        (-1, SecurityError, "refusing to run as UID -1"),
        (99999999999, UsageError, "UID 99999999999 is out of range"),
    ],
)
def test_bad_uids_are_refused_before_anything_runs(
    uid: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        run.check_request(run.RunRequest(image="x", uid=uid))


def test_parse_uid() -> None:
    assert restricted.parse_uid(restricted.RANDOM_UID) is None
    assert restricted.parse_uid("1234") == 1234
    with pytest.raises(UsageError, match="'abc' is not 'random' or a number"):
        restricted.parse_uid("abc")


REQUEST = run.RunRequest(image="img", port=9999, env=(("A", "1"),), labels=(("t", "1"),))


def test_the_container_is_the_restricted_platforms() -> None:
    spec = run.container_spec(
        REQUEST, uid=1000680000, name="n", container_port=8888, workspace=None, token="tok"
    )
    assert spec.user == "1000680000:0"
    assert spec.read_only and spec.tmpfs == (Tmpfs("/tmp", 0o1777),)
    assert spec.cap_drop == ("ALL",) and spec.security_opt == ("no-new-privileges:true",)
    assert spec.ports == (PortBinding(8888, "127.0.0.1", 9999),)
    assert spec.mounts == ()  # no volume: the image's own fallback is what runs
    assert {k: v for k, v in spec.env.items() if v} == {"A": "1", "JUPYTER_TOKEN": "tok"}
    assert spec.labels["t"] == "1" and spec.labels[labels.ROLE] == labels.ROLE_RUN
    assert spec.labels[labels.RUN_IMAGE] == "img"
    # The same platform, spelled once: run adds only its own choices.
    same = restricted.container_spec(
        "img",
        uid=1000680000,
        container_port=8888,
        host_port=9999,
        env=spec.env,
        labels=spec.labels,
        name="n",
    )
    assert spec == same


def test_any_port_writable_root_and_a_workspace() -> None:
    request = run.RunRequest(image="x", port=0, read_only=False)
    workspace = run.Workspace("volume", "vol1", created=False)
    spec = run.container_spec(
        request, uid=5, name="n", container_port=8888, workspace=workspace, token=None
    )
    assert spec.ports == (PortBinding(8888, "127.0.0.1", 0),)
    assert not spec.read_only and spec.tmpfs == ()
    assert spec.mounts == (Mount("vol1", "/home/jovyan"),)


def test_each_container_gets_its_own_mark() -> None:
    nonces = {run.run_labels(REQUEST, secrets.token_hex(16))[labels.RUN_NONCE] for _ in "ab"}
    assert len(nonces) == 2


@pytest.mark.parametrize(
    ("container", "image", "ours"),
    [
        ({"nbs2i.role": "run", "nbs2i.run.nonce": "a" * 32}, {}, True),
        # An image built with --label nbs2i.role=run: its containers inherit the role.
        ({"nbs2i.role": "run"}, {"nbs2i.role": "run"}, False),
        # ...and an image that also carries a nonce passes it to `docker run` containers.
        (
            {"nbs2i.role": "run", "nbs2i.run.nonce": "b" * 32},
            {"nbs2i.role": "run", "nbs2i.run.nonce": "b" * 32},
            False,
        ),
        # nbs2i run from that image overrides the image's nonce with its own.
        (
            {"nbs2i.role": "run", "nbs2i.run.nonce": "c" * 32},
            {"nbs2i.role": "run", "nbs2i.run.nonce": "b" * 32},
            True,
        ),
        ({"nbs2i.role": "verify", "nbs2i.run.nonce": "a" * 32}, {}, False),
        ({"nbs2i.role": "run", "nbs2i.run.nonce": "short"}, {}, False),
    ],
)
def test_stop_trusts_only_a_mark_no_image_can_carry(
    container: dict[str, str], image: dict[str, str], ours: bool
) -> None:
    assert run.started_by_run(container, image) is ours


def test_password_is_hashed_before_it_reaches_the_container() -> None:
    env = run.server_env(run.RunRequest(image="img", password="pw"), None)
    given = {name for name, value in env.items() if value}
    assert given == {"JUPYTER_PASSWORD_HASH"}  # never the plain password
    algorithm, salt, digest = env["JUPYTER_PASSWORD_HASH"].split(":")
    assert algorithm == "sha512" and len(salt) == 32
    assert digest == hashlib.sha512(b"pw" + salt.encode()).hexdigest()
    assert run.server_env(run.RunRequest(image="img", password="pw"), None) != env  # salted


@pytest.mark.parametrize("password", [None, "pw"])
def test_the_login_run_gives_is_the_only_one(password: str | None) -> None:
    # An image's ENV may carry another login (or a hub's token): each is set
    # empty, which the server and the run script take as not given.
    request = run.RunRequest(image="img", password=password)
    env = run.server_env(request, None if password else "tok")
    logins = ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "JUPYTER_PASSWORD", "JUPYTER_PASSWORD_HASH")
    assert {name for name in (*logins, "JUPYTERHUB_API_TOKEN") if env[name]} == (
        {"JUPYTER_PASSWORD_HASH"} if password else {"JUPYTER_TOKEN"}
    )


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
    server = run.Server("id", "n", "img", 8890, 1000000001, "abc", None, 1.0)
    assert server.url == "http://127.0.0.1:8890/lab?token=abc"
    assert run.Server("id", "n", "img", 8890, 1, None, None, 1.0).url == "http://127.0.0.1:8890/lab"


def test_tokens_are_long_and_fresh() -> None:
    a, b = run.new_token(), run.new_token()
    assert a != b and len(a) == 48


@pytest.mark.parametrize(
    ("spec", "is_dir"),
    [("work", False), ("my.vol_1", False), ("./work", True), ("/srv/x", True), ("~/w", True)],
)
def test_directory_or_volume(spec: str, is_dir: bool) -> None:
    assert run.is_directory_spec(spec) is is_dir


@pytest.mark.parametrize(
    "spec", ["/", "/etc", "/etc/", "/usr/local/x", "/home", "/tmp", "/var/lib/x", "~", "/root/w"]
)
def test_system_directories_are_never_a_workspace(spec: str) -> None:
    with pytest.raises(UsageError, match="is a system directory, not a workspace") as exc:
        run.check_request(run.RunRequest(image="x", volume=spec))
    assert "chgrp" not in exc.value.fix and "chmod" not in exc.value.fix


def test_own_directories_and_volume_names_are_fine(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "work"), "/srv/course/work", "/home/alice/work", "alice_1"):
        run.check_request(run.RunRequest(image="x", volume=spec))
    with pytest.raises(UsageError, match="bad volume name"):
        run.check_request(run.RunRequest(image="x", volume="-x"))


def _st(mode: int, uid: int, gid: int) -> SimpleNamespace:
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
    for bad in (-1, 70000):
        with pytest.raises(UsageError, match=f"bad port {bad}"):
            run.check_request(run.RunRequest(image="x", port=bad))


@pytest.mark.parametrize(
    ("exposed", "port"),
    [
        (("9000/tcp",), 9000),
        ((), 8888),
        (("9000/tcp", "9001/tcp"), 9000),
        (("8888/tcp", "80/tcp"), 8888),
        (("53/udp",), 8888),
    ],
)
def test_server_port(exposed: tuple[str, ...], port: int) -> None:
    assert restricted.server_port(ImageConfig(exposed_ports=exposed)) == port


def test_published_port() -> None:
    info = ContainerInfo("id", "n", "img", {}, True, None, {8888: 32768})
    assert restricted.published_port(info, 8888) == 32768
    assert restricted.published_port(info, 9000) is None


def test_lines_splits_chunks() -> None:
    chunks = [b"a\nb", b"c\r\n", b"\nd\xff"]
    assert list(lines(iter(chunks))) == ["a", "bc", "", "d\ufffd"]


def test_http_status_of_nothing_is_none() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert restricted.http_status(port, "/api") is None


def test_bad_names_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        run.container_name("-bad")
    with pytest.raises(UsageError):
        run.check_names(["good", "bad name"])
    assert run.container_name(None).startswith("nbs2i-run-")
    assert run.container_name("nbs2i-demo") == "nbs2i-demo"


# -- signals ---------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_stop_signal_interrupts_and_handlers_come_back(signum: int) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt), interrupts.interrupting():
        os.kill(os.getpid(), signum)
        for _ in range(100):  # the handler runs between two bytecodes, at once
            pass
    assert signal.getsignal(signum) == before


def test_a_signal_during_clean_up_waits_until_it_is_done() -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts.interrupting():
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("first removal")  # an interrupt here would leave things behind
            os.kill(os.getpid(), signal.SIGHUP)
            steps.append("second removal")
        steps.append("never reached: the held-back signal is raised now")
    assert steps == ["first removal", "second removal"]


# -- the command line, before any engine call ------------------------------------

UNREACHABLE = {"DOCKER_HOST": "tcp://127.0.0.1:1"}  # never reached


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
    result = nbs2i("run", "some/image", *args, env=UNREACHABLE, timeout=60)
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uid", "99999999999"], "UID 99999999999 is out of range"),
        (["--uid", "0"], "refusing to run as UID 0"),
        (["--volume", "/"], "/ is a system directory, not a workspace"),
        (["--volume", "/etc"], "/etc is a system directory, not a workspace"),
        (["--name", "bad name"], "bad container name 'bad name'"),
        (["--env", "HOME=/x"], "--env HOME is set by nbs2i run"),
    ],
)
def test_cli_bad_values_are_one_line_before_any_engine_call(args: list[str], message: str) -> None:
    result = nbs2i("run", "some/image", *args, env=UNREACHABLE, timeout=60)
    assert result.code == 1
    assert message in result.error_line
    assert "engine" not in result.stderr and "chgrp" not in result.stderr


def test_cli_stop_refuses_a_bad_name_before_stopping_any() -> None:
    result = nbs2i("stop", "fine-name", "bad name", env=UNREACHABLE, timeout=60)
    assert result.code == 1
    assert "bad container name 'bad name'" in result.error_line
    assert "engine" not in result.stderr


def test_cli_run_help_names_the_defaults() -> None:
    result = nbs2i("run", "--help", env=UNREACHABLE, timeout=60)
    assert result.code == 0
    uid_range = f"{restricted.UID_MIN}-{restricted.UID_MAX}"
    for text in ("--volume", "--detach", "--uid", uid_range, "127.0.0.1", "[default: 8888"):
        assert text in " ".join(result.stdout.split()), text
