"""`nbs2i verify` without an engine: each static rule, the filesystem scan on
hand-made tars, the parsing behind the runtime probes, how two runtime runs
make one verdict, and the output formats, also fed hostile text."""

from __future__ import annotations

import io
import json
import tarfile
import xml.etree.ElementTree as ET

import pytest

from nbs2i import restricted
from nbs2i.engine import ExecResult, ImageConfig
from nbs2i.errors import Nbs2iError
from nbs2i.verify import OptionError, VerifyOptions, check_options
from nbs2i.verify.checks import (
    CATALOGUE,
    SPECS,
    CheckResult,
    Part,
    Status,
    VerifyReport,
    combine,
    one_line,
    result,
)
from nbs2i.verify.imagefs import FileFacts, normalise, scan_tar
from nbs2i.verify.probes import (
    Proc,
    exec_missing,
    parse_proc_stat,
    server_pid,
    token_from_logs,
    write_error,
)
from nbs2i.verify.report import FORMATS, as_json, as_junit, as_table, render
from nbs2i.verify.runtime import can_mount_home
from nbs2i.verify.static import (
    check_caches,
    check_env_secrets,
    check_env_server,
    check_home,
    check_init,
    check_passwd,
    check_ports,
    check_s2i,
    check_setid,
    check_user_not_root,
    check_user_numeric,
    check_world_writable,
    files_wanted,
    image_home,
    pid1_argv,
    workspace,
)
from tests.support.cli import nbs2i

S2I = {
    "io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i",
    "io.openshift.s2i.destination": "/tmp",
}
GOOD = ImageConfig(
    user="1001",
    entrypoint=("tini", "-g", "--"),
    cmd=("/usr/libexec/s2i/run",),
    env={"HOME": "/home/jovyan", "NOTEBOOK_DIR": "/opt/app-root/src", "PATH": "/usr/bin"},
    exposed_ports=("8888/tcp",),
    labels=S2I,
)
# The ids dashboards key on: a check may be added, never renamed or removed.
PUBLISHED_IDS = (
    "user-numeric",
    "user-not-root",
    "init-pid1",
    "ports-unprivileged",
    "env-no-secrets",
    "env-server",
    "s2i-builder",
    "no-setuid",
    "passwd-not-writable",
    "no-world-writable",
    "home-group-writable",
    "no-package-caches",
    "starts",
    "api-auth",
    "home-writable",
    "user-named",
    "file-group-writable",
    "reaps-orphans",
    "sigterm",
)


def make_tar(members: list[tuple[str, str, int, int, int, bytes | str]]) -> bytes:
    """(name, kind, mode, uid, gid, content-or-link-target) -> tar bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind, mode, uid, gid, content in members:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid = mode, uid, gid
            data = None
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
            else:
                raw = content if isinstance(content, bytes) else content.encode()
                info.size, data = len(raw), io.BytesIO(raw)
            archive.addfile(info, data)
    return buffer.getvalue()


def chunks(data: bytes, size: int = 7) -> list[bytes]:
    # Small, odd-sized chunks: the scan must not care how the engine cuts the stream.
    return [data[i : i + size] for i in range(0, len(data), size)]


PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "jovyan:x:1001:0::/home/jovyan:/bin/bash\n"
    "boss:x:0:0::/:/bin/sh\n"
)
IMAGE_TAR = make_tar(
    [
        ("", "dir", 0o755, 0, 0, b""),
        ("/etc", "dir", 0o755, 0, 0, b""),
        ("/etc/passwd", "file", 0o644, 0, 0, PASSWD),
        ("/etc/group", "file", 0o644, 0, 0, "root:x:0:\n"),
        ("/home", "symlink", 0o777, 0, 0, "var/home"),
        ("/var", "dir", 0o755, 0, 0, b""),
        ("/var/home", "dir", 0o755, 0, 0, b""),
        ("/var/home/jovyan", "dir", 0o2775, 1001, 0, b""),
        ("/var/mail", "dir", 0o2775, 0, 8, b""),  # a set-gid directory is harmless
        ("/opt/app-root/src", "dir", 0o775, 1001, 0, b""),
        ("/usr/libexec/s2i", "dir", 0o755, 0, 0, b""),
        ("/usr/libexec/s2i/assemble", "file", 0o755, 0, 0, "#!/bin/sh\n"),
        ("/usr/libexec/s2i/run", "file", 0o755, 0, 0, "#!/bin/sh\n"),
        ("/usr/bin/tini", "file", 0o755, 0, 0, b"\x7fELF"),
        # What every Debian image has, and what is fine.
        ("/tmp", "dir", 0o1777, 0, 0, b""),
        ("/var/tmp", "dir", 0o1777, 0, 0, b""),
        ("/run/lock", "dir", 0o1777, 0, 0, b""),
        ("/usr/bin/python3", "symlink", 0o777, 0, 0, "python3.11"),
        ("/dev/null", "other", 0o666, 0, 0, b""),
    ]
)


@pytest.fixture
def good_files() -> FileFacts:
    return scan_tar(chunks(IMAGE_TAR), want=files_wanted(GOOD), read=("/etc/passwd",))


def test_published_ids_are_never_renamed_and_ids_are_kebab_case() -> None:
    ids = [spec.id for spec in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert set(PUBLISHED_IDS) <= set(ids), set(PUBLISHED_IDS) - set(ids)
    assert all(i == i.lower() and " " not in i and "_" not in i for i in ids)


def test_result_is_one_line_and_advisory_failures_only_warn() -> None:
    r = result("no-package-caches", Status.FAIL, "apt lists\n  (3 files)")
    assert r.status is Status.WARN and r.evidence == "apt lists (3 files)" and not r.required
    assert result("no-setuid", Status.FAIL, "x").status is Status.FAIL


def test_one_line_escapes_what_an_image_may_print() -> None:
    hostile = "red \x1b[31mtext\x1b[0m\x00 bell\x07\nnext\tline \ud800 \u200b end"
    line = one_line(hostile)
    assert line == ("red \\x1b[31mtext\\x1b[0m\\x00 bell\\x07 next line \\ud800 \\u200b end")
    assert line.isprintable()
    assert one_line("ünïcödé — fine") == "ünïcödé — fine"


def test_config_helpers() -> None:
    config = ImageConfig(cmd=("/bin/sh", "-c", "run"), env={"HOME": "/home/x"})
    assert image_home(config) == workspace(config) == "/home/x"
    assert pid1_argv(config) == ("/bin/sh", "-c", "run")
    assert pid1_argv(GOOD) == ("tini", "-g", "--", "/usr/libexec/s2i/run")
    assert image_home(ImageConfig()) == "/"
    assert workspace(GOOD) == "/opt/app-root/src"
    assert "/usr/libexec/s2i/run" in files_wanted(GOOD)


@pytest.mark.parametrize(
    ("user", "numeric", "not_root"),
    [
        ("1001", Status.PASS, Status.PASS),
        ("1001:0", Status.PASS, Status.PASS),
        ("0", Status.PASS, Status.FAIL),
        ("0:0", Status.PASS, Status.FAIL),
        ("", Status.FAIL, Status.FAIL),
        ("root", Status.FAIL, Status.FAIL),
        ("jovyan", Status.FAIL, Status.PASS),
        ("boss", Status.FAIL, Status.FAIL),  # a name with UID 0 in /etc/passwd
    ],
)
def test_user_rules(user: str, numeric: Status, not_root: Status, good_files: FileFacts) -> None:
    config = ImageConfig(user=user)
    assert check_user_numeric(config).status is numeric
    found = check_user_not_root(config, good_files)
    assert found.status is not_root, found.evidence


def test_named_user_evidence_gives_its_uid(good_files: FileFacts) -> None:
    found = check_user_not_root(ImageConfig(user="jovyan"), good_files)
    assert "UID 1001 in /etc/passwd" in found.evidence


SH_C = ("/bin/sh", "-c", "/usr/libexec/s2i/run")


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "env", "status"),
    [
        (("tini", "-g", "--"), ("/usr/libexec/s2i/run",), {}, Status.PASS),
        (("/usr/bin/dumb-init", "--"), ("jupyter", "lab"), {}, Status.PASS),
        ((), ("docker-init", "--", "app"), {}, Status.PASS),
        # What upstream `s2i --as-dockerfile` makes: a shell-form CMD under the
        # builder's tini -g. The group signal reaches the server: a warning.
        (("tini", "-g", "--"), SH_C, {}, Status.WARN),
        (("tini", "-sg", "--"), SH_C, {}, Status.WARN),
        (("tini", "--"), SH_C, {"TINI_KILL_PROCESS_GROUP": "1"}, Status.WARN),
        (("dumb-init",), SH_C, {}, Status.WARN),
        # Under an init that signals only its child, the runtime sigterm check
        # decides (a shell that execs the server passes it): still a warning.
        (("tini", "--"), SH_C, {}, Status.WARN),
        (("dumb-init", "--single-child"), SH_C, {}, Status.WARN),
        # A shell as PID 1, no init: a failure.
        ((), SH_C, {}, Status.FAIL),
        (("/bin/sh", "-c", "tini -g -- run"), (), {}, Status.FAIL),
        ((), ("jupyter", "lab"), {}, Status.FAIL),  # exec form, but no init
        ((), (), {}, Status.FAIL),
    ],
)
def test_init_rule(
    entrypoint: tuple[str, ...], cmd: tuple[str, ...], env: dict[str, str], status: Status
) -> None:
    found = check_init(ImageConfig(entrypoint=entrypoint, cmd=cmd, env=env))
    assert found.status is status, found.evidence


def test_init_warning_never_contradicts_the_runtime_checks() -> None:
    group = check_init(ImageConfig(entrypoint=("tini", "-g", "--"), cmd=SH_C)).evidence
    assert "SIGTERM reaches the server too" in group and "reaps-orphans and sigterm" in group
    child = check_init(ImageConfig(entrypoint=("tini", "--"), cmd=SH_C)).evidence
    assert "only if it is exec'd" in child
    for evidence in (group, child):
        assert "neither reaps" not in evidence and "does not reap" not in evidence
    shell = check_init(ImageConfig(cmd=SH_C)).evidence
    # Measured: a shell as PID 1 does reap (it waits for any child), so the
    # failure is about SIGTERM only.
    assert "SIGTERM" in shell and "reap" not in shell


def test_ports_rule() -> None:
    assert check_ports(ImageConfig(exposed_ports=("80/tcp", "8888/tcp"))).status is Status.FAIL
    assert check_ports(ImageConfig(exposed_ports=("8888/tcp",))).status is Status.PASS
    assert check_ports(ImageConfig()).status is Status.PASS


def test_secret_env_names_are_shown_values_never() -> None:
    config = ImageConfig(
        env={"JUPYTER_TOKEN": "hunter2", "AWS_SECRET_ACCESS_KEY": "xyz", "API_KEY": "", "PATH": "/"}
    )
    found = check_env_secrets(config)
    assert found.status is Status.FAIL
    assert "AWS_SECRET_ACCESS_KEY, JUPYTER_TOKEN" in found.evidence
    assert "hunter2" not in found.evidence and "xyz" not in found.evidence
    assert check_env_secrets(ImageConfig(env={"API_KEY": ""})).status is Status.PASS


SERVER_CASES = {
    # What a hand-written or docker-stacks image may carry: each steers the server.
    "config-path": ({"JUPYTER_CONFIG_PATH": "/etc/other"}, "JUPYTER_CONFIG_PATH"),
    "config-dir": ({"JUPYTER_CONFIG_DIR": "/home/jovyan/.jupyter"}, "JUPYTER_CONFIG_DIR"),
    "password-hash": ({"JUPYTER_PASSWORD_HASH": "argon2:xyz"}, "JUPYTER_PASSWORD_HASH"),
    "hub-url": ({"JUPYTERHUB_API_URL": "http://hub/"}, "JUPYTERHUB_API_URL"),
    "gateway": ({"JUPYTER_GATEWAY_URL": "https://gw/"}, "JUPYTER_GATEWAY_URL"),
    "pythonpath-home": ({"PYTHONPATH": "/usr/lib/x:/home/jovyan/lib"}, "/home/jovyan/lib in HOME"),
    "pythonpath-workspace": ({"PYTHONPATH": "/opt/app-root/src/lib"}, "in HOME or the workspace"),
    "pythonpath-relative": ({"PYTHONPATH": "lib"}, "lib relative"),
    "pythonpath-tmp": ({"PYTHONPATH": "/tmp/lib"}, "/tmp/lib writable by anyone"),
    "startup": ({"PYTHONSTARTUP": "/home/jovyan/s.py"}, "PYTHONSTARTUP"),
    "data-dir": ({"JUPYTER_DATA_DIR": "/opt/app-root/src/.data"}, "JUPYTER_DATA_DIR"),
    "lab-dir": ({"JUPYTERLAB_DIR": "/tmp/lab"}, "JUPYTERLAB_DIR"),
    "runtime": ({"JUPYTER_RUNTIME_DIR": "/home/jovyan/rt"}, "JUPYTER_RUNTIME_DIR"),
}


@pytest.mark.parametrize(("env", "shown"), list(SERVER_CASES.values()), ids=list(SERVER_CASES))
def test_env_that_steers_the_server_fails(
    good_files: FileFacts, env: dict[str, str], shown: str
) -> None:
    config = ImageConfig(env={**GOOD.env, **env}, labels=S2I)
    found = check_env_server(config, good_files)
    assert found.status is Status.FAIL, found.evidence
    assert shown in found.evidence
    assert "argon2:xyz" not in found.evidence and "http://hub/" not in found.evidence


def test_env_that_leaves_the_server_alone_passes(good_files: FileFacts) -> None:
    harmless = {
        "JUPYTER_PORT": "8888",
        "JUPYTER_PATH": "/usr/local/share/jupyter",  # the image's own directory
        "JUPYTER_CONFIG_DIR": "/etc/nbs2i/jupyter",  # the image's own, empty, read-only
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": "/usr/lib/course",
        "COURSE": "intro",
        "LD_PRELOAD": "libnss_wrapper.so",
    }
    found = check_env_server(ImageConfig(env={**GOOD.env, **harmless}), good_files)
    assert found.status is Status.PASS, found.evidence


def test_an_isolated_server_leaves_python_names_to_the_kernels(good_files: FileFacts) -> None:
    # An image built on the nbs2i builder: its server's Python runs with -I.
    isolated = {**S2I, "io.nbs2i.server-python": "isolated"}
    env = {**GOOD.env, "PYTHONPATH": "/opt/app-root/src/lib", "PYTHONSTARTUP": "/tmp/s.py"}
    found = check_env_server(ImageConfig(env=env, labels=isolated), good_files)
    assert found.status is Status.PASS, found.evidence
    assert "PYTHONPATH, PYTHONSTARTUP: kernels only" in found.evidence
    # What the label does not cover still fails.
    env["JUPYTER_CONFIG_PATH"] = "/opt/app-root/src/conf"
    assert check_env_server(ImageConfig(env=env, labels=isolated), good_files).status is Status.FAIL


def test_s2i_rule(good_files: FileFacts) -> None:
    assert check_s2i(GOOD, good_files).status is Status.PASS
    assert check_s2i(ImageConfig(), good_files).status is Status.SKIP
    no_dest = ImageConfig(labels={"io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i"})
    assert check_s2i(no_dest, good_files).status is Status.FAIL
    elsewhere = ImageConfig(labels={**S2I, "io.openshift.s2i.scripts-url": "image:///opt/s2i"})
    found = check_s2i(elsewhere, good_files)
    assert found.status is Status.FAIL and "assemble, run missing" in found.evidence
    remote = ImageConfig(labels={**S2I, "io.openshift.s2i.scripts-url": "https://x/s2i"})
    assert check_s2i(remote, good_files).status is Status.WARN
    built = ImageConfig(labels={"io.openshift.s2i.build.image": "b"})
    assert check_s2i(built, good_files).status is Status.FAIL


def test_scan_reads_modes_links_and_text(good_files: FileFacts) -> None:
    assert good_files.texts["/etc/passwd"] == PASSWD
    assert good_files.lookup("/etc/passwd") is not None
    home = good_files.lookup("/home/jovyan")  # through the /home -> var/home symlink
    assert home is not None and home.path == "/var/home/jovyan" and home.mode == 0o2775
    assert good_files.setid_files == ()
    assert good_files.world_writable == ()
    assert good_files.caches == ()
    assert good_files.scanned == 19
    assert normalise("") == "/" and normalise("./etc/") == "/etc" and normalise("/a/../b") == "/b"


def test_good_files_pass_every_file_check(good_files: FileFacts) -> None:
    for check in (check_setid, check_passwd, check_world_writable, check_caches):
        assert check(good_files).status is Status.PASS
    found = check_home(GOOD, good_files)
    assert found.status is Status.PASS
    assert (
        found.evidence == "HOME /home/jovyan 1001:0 2775; workspace /opt/app-root/src 1001:0 0775"
    )


def test_bad_files_fail_their_checks() -> None:
    tar = make_tar(
        [
            ("/etc/passwd", "file", 0o664, 0, 0, PASSWD),
            ("/etc/group", "file", 0o646, 0, 0, "root:x:0:\n"),
            ("/usr/bin/su", "file", 0o4755, 0, 0, b"x"),
            ("/usr/bin/chage", "file", 0o2755, 0, 42, b"x"),
            ("/home/jovyan", "dir", 0o755, 1001, 100, b""),
            ("/var/lib/apt/lists/lock", "file", 0o640, 0, 0, b""),
            ("/var/lib/apt/lists/deb.debian.org_Packages", "file", 0o644, 0, 0, b"x" * 4096),
            ("/root/.cache/pip/http/ab", "file", 0o644, 0, 0, b"y" * 2048),
        ]
    )
    files = scan_tar(chunks(tar, 5), want=files_wanted(GOOD))
    setid = check_setid(files)
    assert setid.status is Status.FAIL
    assert "2 set-id files: /usr/bin/su (4755), /usr/bin/chage (2755)" in setid.evidence
    passwd = check_passwd(files)
    assert passwd.status is Status.FAIL
    assert "/etc/passwd is 0664" in passwd.evidence and "/etc/group is 0646" in passwd.evidence
    # /etc/group 0646 is world-writable too: both checks see it.
    assert "/etc/group (0646)" in check_world_writable(files).evidence
    home = check_home(GOOD, files)
    assert home.status is Status.FAIL
    assert "HOME /home/jovyan 1001:100 0755" in home.evidence
    assert "workspace /opt/app-root/src does not exist" in home.evidence
    caches = check_caches(files)
    assert caches.status is Status.WARN  # advisory: a warning, not a failure
    assert "apt lists /var/lib/apt/lists (1 files, 4 KiB)" in caches.evidence
    assert "pip cache /root/.cache/pip (1 files, 2 KiB)" in caches.evidence


def test_world_writable_outside_tmp_like_places_fails() -> None:
    tar = make_tar(
        [
            # What `s2i build --inject` leaves behind: an emptied 0666 file.
            ("/etc/pip.conf", "file", 0o666, 0, 0, b""),
            ("/opt/app-root/shared", "dir", 0o777, 1001, 0, b""),  # no sticky bit
            ("/opt/app-root/drop", "dir", 0o1777, 1001, 0, b""),  # sticky: /tmp-like
            ("/tmp/whatever", "file", 0o666, 0, 0, b""),
            ("/var/tmp/x", "dir", 0o777, 0, 0, b""),
            ("/dev/null", "other", 0o666, 0, 0, b""),
            ("/usr/lib/libx.so", "symlink", 0o777, 0, 0, "libx.so.1"),
            ("/etc/group-writable-only", "file", 0o664, 0, 0, b""),
        ]
    )
    found = check_world_writable(scan_tar(chunks(tar)))
    assert found.status is Status.FAIL and found.required
    assert found.evidence.startswith(
        "2 world-writable: /etc/pip.conf (0666), /opt/app-root/shared (0777)"
    ), found.evidence


def test_many_offenders_are_counted_not_all_listed() -> None:
    tar = make_tar([(f"/srv/f{i}", "file", 0o4777, 0, 0, b"") for i in range(8)])
    files = scan_tar([tar])
    assert check_setid(files).evidence.endswith("/srv/f4 (4777) and 3 more")
    assert "8 world-writable:" in check_world_writable(files).evidence


def test_no_home_in_env_is_a_failure(good_files: FileFacts) -> None:
    found = check_home(ImageConfig(), good_files)
    assert found.status is Status.FAIL and "HOME=/" in found.evidence


def test_symlink_loops_end() -> None:
    tar = make_tar([("/a", "symlink", 0o777, 0, 0, "/b"), ("/b", "symlink", 0o777, 0, 0, "/a")])
    assert scan_tar([tar]).lookup("/a/x") is None


def test_proc_stat_parsing_and_server_pid() -> None:
    text = (
        "1 (tini) S 0 1 1 0 -1\n"
        "7 (sh) S 1 7 1 0 -1\n"
        "9 (jupyter-lab) S 7 7 1 0 -1\n"
        "12 (odd) name)) Z 1 12 1\n"
        "garbage\n"
        "30 (sh) R 0 30 30\n"
    )
    procs = parse_proc_stat(text)
    assert procs[3] == Proc(12, "odd) name)", "Z", 1)
    assert len(procs) == 5
    assert server_pid(procs) == 9  # through the init and the wrapper shell
    assert server_pid([Proc(1, "jupyter-lab", "S", 0)]) == 1
    assert server_pid([Proc(1, "tini", "S", 0)]) == 1


def test_token_from_logs() -> None:
    logs = (
        "http://127.0.0.1:8888/lab?token=...\n"
        "    http://127.0.0.1:8888/lab?token=8ae8931e485f82a4c31c40f3b2504cb6afab8fe515903a43\n"
    )
    assert token_from_logs(logs) == "8ae8931e485f82a4c31c40f3b2504cb6afab8fe515903a43"
    assert token_from_logs("http://127.0.0.1:8888/lab?token=...") is None
    assert token_from_logs("") is None


def test_write_error_finds_why_a_server_died_under_home() -> None:
    # What repo2docker's image prints under a plain restricted run (measured).
    logs = (
        "[I 2026-01-01 ServerApp] starting\n"
        "Traceback (most recent call last):\n"
        "OSError: [Errno 30] Read-only file system: '/home/jovyan/.local'\n"
    )
    assert write_error(logs, "/home/jovyan") == (
        "OSError: [Errno 30] Read-only file system: '/home/jovyan/.local'"
    )
    assert (
        write_error("PermissionError: [Errno 13] Permission denied: '/srv/x'", "/home/jovyan") == ""
    )
    assert write_error("all fine", "/home/jovyan") == ""


def test_exec_missing_tells_a_missing_tool_from_a_failing_one() -> None:
    # What Docker 20.10 answers when the exec'd program is absent (measured).
    absent = 'OCI runtime exec failed: exec failed: exec: "id": executable file not found in $PATH'
    assert exec_missing(ExecResult(126, absent))
    assert exec_missing(ExecResult(126, "exec: /x: stat /x: no such file or directory: unknown"))
    assert not exec_missing(ExecResult(1, "id: cannot find name for user ID 5"))
    assert not exec_missing(ExecResult(127, "sh: 1: frob: not found"))


def test_a_volume_goes_only_where_a_platform_would_mount_one() -> None:
    assert can_mount_home("/home/jovyan") and can_mount_home("/opt/app-root/src")
    assert not can_mount_home("/") and not can_mount_home("/tmp/jovyan")


# -- two runtime runs, one verdict ------------------------------------------------

BARE, VOLUME = "no volume", "volume on HOME"


@pytest.mark.parametrize(
    ("bare", "volume", "status"),
    [
        (Status.PASS, Status.PASS, Status.PASS),
        (Status.FAIL, Status.PASS, Status.FAIL),  # breaks in a bare pod: fails
        (Status.PASS, Status.FAIL, Status.FAIL),  # breaks with a volume: fails
        (Status.SKIP, Status.PASS, Status.PASS),  # seen once, fine that time
        (Status.SKIP, Status.FAIL, Status.FAIL),
        (Status.WARN, Status.PASS, Status.WARN),
        (Status.SKIP, Status.SKIP, Status.SKIP),
    ],
)
def test_the_worst_run_decides(bare: Status, volume: Status, status: Status) -> None:
    found = combine("home-writable", [Part(BARE, bare, "a"), Part(VOLUME, volume, "b", 0.5)])
    assert found.status is status
    assert found.evidence == "no volume: a | volume on HOME: b"
    assert [p.status for p in found.parts] == [bare, volume] and found.seconds == 0.5


def test_identical_runs_are_told_once() -> None:
    parts = [
        Part(BARE, Status.PASS, "UID 5 is 'jovyan'"),
        Part(VOLUME, Status.PASS, "UID 5 is 'jovyan'"),
    ]
    assert (
        combine("user-named", parts).evidence == "no volume and volume on HOME: UID 5 is 'jovyan'"
    )


# -- formats -------------------------------------------------------------------------

HOSTILE = "exited: \x1b[31mboom\x1b[0m \x00\x01\x02 <&> ]]> \ufffe"


def sample_report() -> VerifyReport:
    def r(check_id: str, status: Status, evidence: str) -> CheckResult:
        return result(check_id, status, evidence, 0.25)

    starts = combine(
        "starts", [Part(BARE, Status.FAIL, HOSTILE, 0.5), Part(VOLUME, Status.PASS, "200", 0.5)]
    )
    checks = (
        r("user-numeric", Status.PASS, "USER 1001"),
        r("no-setuid", Status.FAIL, "1 set-id files: /usr/bin/su (4755) & <friends>"),
        r("no-package-caches", Status.FAIL, "apt lists"),
        starts,
        r("sigterm", Status.SKIP, "--no-runtime"),
    )
    return VerifyReport("img:1", "sha256:abc", 1000680000, checks, 3.5, (BARE, VOLUME))


def test_formats_are_defined_once() -> None:
    assert FORMATS == ("table", "json", "junit")
    for fmt in FORMATS:
        assert render(sample_report(), fmt)


def test_table_format() -> None:
    text = as_table(sample_report())
    lines = text.splitlines()
    assert lines[0].split() == ["RESULT", "CHECK", "EVIDENCE"]
    assert [line.split()[:2] for line in lines[1:6]] == [
        ["PASS", "user-numeric"],
        ["FAIL", "no-setuid"],
        ["WARN", "no-package-caches"],
        ["FAIL", "starts"],
        ["skip", "sigterm"],
    ]
    assert "\x1b" not in text and "\x00" not in text
    assert "runtime checks ran twice: no volume; volume on HOME" in text
    assert lines[-1] == (
        "img:1: NOT READY for a restricted platform "
        "(1 passed, 2 failed, 1 warned, 1 skipped as UID 1000680000:0, 3.5 s)"
    )


def test_json_format() -> None:
    text = as_json(sample_report())
    data = json.loads(text)
    assert data["ok"] is False and data["uid"] == 1000680000
    assert data["summary"] == {"pass": 1, "fail": 2, "warn": 1, "skip": 1}
    assert data["setups"] == [BARE, VOLUME]
    assert data["checks"][1] == {
        "id": "no-setuid",
        "title": SPECS["no-setuid"].title,
        "category": "files",
        "required": True,
        "result": "fail",
        "evidence": "1 set-id files: /usr/bin/su (4755) & <friends>",
        "seconds": 0.25,
    }
    runs = data["checks"][3]["runs"]
    assert [(r["setup"], r["result"]) for r in runs] == [(BARE, "fail"), (VOLUME, "pass")]
    assert runs[0]["evidence"] == one_line(HOSTILE)
    assert "\\u001b" not in text  # escaped as visible text, not as a JSON control escape


def test_junit_format_is_valid_xml_whatever_the_image_printed() -> None:
    text = as_junit(sample_report())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites')
    root = ET.fromstring(text.split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "2", "1")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases][:2] == [
        "nbs2i.verify.metadata",
        "nbs2i.verify.files",
    ]
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message", "").endswith("& <friends>")
    assert cases[2].find("failure") is None  # a warning passes
    assert "warn: apt lists" in (cases[2].findtext("system-out") or "")
    starts = cases[3]
    starts_failure = starts.find("failure")
    assert starts_failure is not None
    assert "\\x1b[31mboom" in starts_failure.get("message", "")
    out = (starts.findtext("system-out") or "").splitlines()
    assert out[0].startswith("no volume: fail: exited:") and out[1] == "volume on HOME: pass: 200"
    assert cases[4].find("skipped") is not None
    assert float(suite.get("time", "0")) == 3.5


# -- options and the command line ---------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (VerifyOptions(uid=0), "refusing to run as UID 0"),
        (VerifyOptions(uid=99999999999), "UID 99999999999 is out of range"),
        (VerifyOptions(port=70000), "--port 70000 is not a TCP port"),
        (VerifyOptions(port=-1), "--port -1 is not a TCP port"),
        (VerifyOptions(start_timeout=0), "--timeout must be positive"),
    ],
)
def test_bad_options_are_refused_as_exit_2(options: VerifyOptions, message: str) -> None:
    with pytest.raises(OptionError, match=message) as exc:
        check_options(options)
    assert isinstance(exc.value, Nbs2iError) and exc.value.exit_code == 2
    check_options(VerifyOptions(uid=restricted.UID_MIN, port=8888))


UNREACHABLE = {"DOCKER_HOST": "tcp://127.0.0.1:1"}


def test_cli_engine_down_is_exit_2_one_line() -> None:
    result = nbs2i("verify", "any:image", env=UNREACHABLE, timeout=120)
    assert result.code == 2
    assert result.error_line.startswith("nbs2i: error: no Docker engine answers")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uid", "99999999999"], "UID 99999999999 is out of range"),
        (["--uid", "0"], "refusing to run as UID 0"),
        (["--port", "0"], "--port 0 is not a TCP port"),
        (["--timeout", "-1"], "--timeout must be positive"),
    ],
)
def test_cli_bad_values_fail_before_the_engine_is_asked(args: list[str], message: str) -> None:
    result = nbs2i("verify", "img", *args, env=UNREACHABLE, timeout=120)
    assert result.code == 2
    assert message in result.error_line and "engine" not in result.stderr


def test_cli_usage_errors() -> None:
    bad_uid = nbs2i("verify", "img", "--uid", "abc", env=UNREACHABLE)
    assert bad_uid.code == 2 and "is not 'random' or a number" in bad_uid.stderr
    bad_format = nbs2i("verify", "img", "--format", "xml", env=UNREACHABLE)
    assert bad_format.code == 2 and "'xml' is not one of 'table', 'json', 'junit'" in (
        bad_format.stderr
    )
    assert "Traceback" not in bad_uid.stderr + bad_format.stderr
