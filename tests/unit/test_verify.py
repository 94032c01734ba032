"""`nbs2i verify` without an engine: each static rule, the filesystem scan on
hand-made tars, the parsing behind the runtime probes, and the output formats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from typing import cast

import pytest

from nbs2i import report as fmt
from nbs2i.checks import CATALOGUE, SPECS, CheckResult, Status, VerifyReport, result
from nbs2i.engine import Engine, ExecResult
from nbs2i.errors import UsageError
from nbs2i.imagefs import FileFacts, normalise, scan_tar
from nbs2i.verify import VerifyOptions, verify
from nbs2i.verify_runtime import Proc, exec_missing, parse_proc_stat, server_pid, token_from_logs
from nbs2i.verify_static import (
    ImageConfig,
    check_caches,
    check_env_secrets,
    check_home,
    check_init,
    check_passwd,
    check_ports,
    check_s2i,
    check_setid,
    check_user_not_root,
    check_user_numeric,
    serving_port,
)

S2I = {
    "io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i",
    "io.openshift.s2i.destination": "/tmp",
}
GOOD = ImageConfig(
    user="1001",
    entrypoint=("tini", "-g", "--"),
    cmd=("/usr/libexec/s2i/run",),
    env={"HOME": "/home/jovyan", "NOTEBOOK_DIR": "/opt/app-root/src", "PATH": "/usr/bin"},
    ports=("8888/tcp",),
    labels=S2I,
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
    ]
)


@pytest.fixture
def good_files() -> FileFacts:
    return scan_tar(chunks(IMAGE_TAR), want=GOOD.files_wanted(), read=("/etc/passwd",))


def test_catalogue_ids_are_unique_and_kebab_case() -> None:
    ids = [spec.id for spec in CATALOGUE]
    assert len(ids) == len(set(ids)) == 17
    assert all(i == i.lower() and " " not in i for i in ids)
    assert {spec.category for spec in CATALOGUE} == {"metadata", "files", "runtime"}


def test_result_is_one_line_and_advisory_failures_only_warn() -> None:
    r = result("no-package-caches", Status.FAIL, "apt lists\n  (3 files)")
    assert r.status is Status.WARN and r.evidence == "apt lists (3 files)" and not r.required
    assert result("no-setuid", Status.FAIL, "x").status is Status.FAIL


def test_from_inspect_reads_the_config() -> None:
    config = ImageConfig.from_inspect(
        {
            "Config": {
                "User": "1001:0",
                "Entrypoint": None,
                "Cmd": ["/bin/sh", "-c", "run"],
                "Env": ["HOME=/home/x", "A=b=c"],
                "ExposedPorts": {"8888/tcp": {}, "80/tcp": {}},
                "Labels": None,
            }
        }
    )
    assert config.user == "1001:0" and config.entrypoint == ()
    assert config.env == {"HOME": "/home/x", "A": "b=c"}
    assert config.ports == ("80/tcp", "8888/tcp") and config.labels == {}
    assert config.home == config.workspace == "/home/x"
    assert config.pid1_argv == ("/bin/sh", "-c", "run")
    assert ImageConfig().home == "/"


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
    assert (
        "UID 1001 in /etc/passwd"
        in check_user_not_root(ImageConfig(user="jovyan"), good_files).evidence
    )


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "status"),
    [
        (("tini", "-g", "--"), ("/usr/libexec/s2i/run",), Status.PASS),
        (("/usr/bin/dumb-init", "--"), ("jupyter", "lab"), Status.PASS),
        ((), ("docker-init", "--", "app"), Status.PASS),
        ((), ("/bin/sh", "-c", "/usr/libexec/s2i/run"), Status.FAIL),  # shell form
        (("tini", "--"), ("/bin/sh", "-c", "run"), Status.FAIL),  # shell-form CMD under tini
        ((), ("jupyter", "lab"), Status.FAIL),  # exec form, but no init
        ((), (), Status.FAIL),
    ],
)
def test_init_rule(entrypoint: tuple[str, ...], cmd: tuple[str, ...], status: Status) -> None:
    assert check_init(ImageConfig(entrypoint=entrypoint, cmd=cmd)).status is status


def test_ports_rule() -> None:
    assert check_ports(ImageConfig(ports=("80/tcp", "8888/tcp"))).status is Status.FAIL
    assert check_ports(ImageConfig(ports=("8888/tcp",))).status is Status.PASS
    assert check_ports(ImageConfig()).status is Status.PASS
    assert serving_port(ImageConfig(ports=("9000/tcp", "9100/tcp"))) == 9000
    assert serving_port(ImageConfig(ports=("8888/tcp", "80/tcp"))) == 8888
    assert serving_port(ImageConfig()) == 8888


def test_secret_env_names_are_shown_values_never() -> None:
    config = ImageConfig(
        env={"JUPYTER_TOKEN": "hunter2", "AWS_SECRET_ACCESS_KEY": "xyz", "API_KEY": "", "PATH": "/"}
    )
    found = check_env_secrets(config)
    assert found.status is Status.FAIL
    assert "AWS_SECRET_ACCESS_KEY, JUPYTER_TOKEN" in found.evidence
    assert "hunter2" not in found.evidence and "xyz" not in found.evidence
    assert check_env_secrets(ImageConfig(env={"API_KEY": ""})).status is Status.PASS


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
    assert good_files.caches == ()
    assert good_files.scanned == 14
    assert normalise("") == "/" and normalise("./etc/") == "/etc" and normalise("/a/../b") == "/b"


def test_good_files_pass_every_file_check(good_files: FileFacts) -> None:
    for check in (check_setid, check_passwd, check_caches):
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
    files = scan_tar(chunks(tar, 5), want=GOOD.files_wanted())
    setid = check_setid(files)
    assert setid.status is Status.FAIL
    assert "2 set-id files: /usr/bin/su (4755), /usr/bin/chage (2755)" in setid.evidence
    passwd = check_passwd(files)
    assert passwd.status is Status.FAIL
    assert "/etc/passwd is 0664" in passwd.evidence and "/etc/group is 0646" in passwd.evidence
    home = check_home(GOOD, files)
    assert home.status is Status.FAIL
    assert "HOME /home/jovyan 1001:100 0755" in home.evidence
    assert "workspace /opt/app-root/src does not exist" in home.evidence
    caches = check_caches(files)
    assert caches.status is Status.WARN  # advisory: a warning, not a failure
    assert "apt lists /var/lib/apt/lists (1 files, 4 KiB)" in caches.evidence
    assert "pip cache /root/.cache/pip (1 files, 2 KiB)" in caches.evidence


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


def test_exec_missing_tells_a_missing_tool_from_a_failing_one() -> None:
    # What Docker 20.10 answers when the exec'd program is absent (measured).
    absent = 'OCI runtime exec failed: exec failed: exec: "id": executable file not found in $PATH'
    assert exec_missing(ExecResult(126, absent))
    assert exec_missing(ExecResult(126, "exec: /x: stat /x: no such file or directory: unknown"))
    assert not exec_missing(ExecResult(1, "id: cannot find name for user ID 5"))
    assert not exec_missing(ExecResult(127, "sh: 1: frob: not found"))


def sample_report() -> VerifyReport:
    def r(check_id: str, status: Status, evidence: str) -> CheckResult:
        return result(check_id, status, evidence, 0.25)

    checks = (
        r("user-numeric", Status.PASS, "USER 1001"),
        r("no-setuid", Status.FAIL, "1 set-id files: /usr/bin/su (4755) & <friends>"),
        r("no-package-caches", Status.FAIL, "apt lists"),
        r("starts", Status.SKIP, "--no-runtime"),
    )
    return VerifyReport("img:1", "sha256:abc", 1000680000, checks, 3.5)


def test_table_format() -> None:
    text = fmt.as_table(sample_report())
    lines = text.splitlines()
    assert lines[0].split() == ["RESULT", "CHECK", "EVIDENCE"]
    assert lines[1].split()[:2] == ["PASS", "user-numeric"]
    assert lines[2].split()[:2] == ["FAIL", "no-setuid"]
    assert lines[3].split()[:2] == ["WARN", "no-package-caches"]
    assert lines[-1] == (
        "img:1: NOT READY for a restricted platform "
        "(1 passed, 1 failed, 1 warned, 1 skipped as UID 1000680000:0, 3.5 s)"
    )


def test_json_format() -> None:
    data = json.loads(fmt.as_json(sample_report()))
    assert data["ok"] is False and data["uid"] == 1000680000
    assert data["summary"] == {"pass": 1, "fail": 1, "warn": 1, "skip": 1}
    assert data["checks"][1] == {
        "id": "no-setuid",
        "title": SPECS["no-setuid"].title,
        "category": "files",
        "required": True,
        "result": "fail",
        "evidence": "1 set-id files: /usr/bin/su (4755) & <friends>",
        "seconds": 0.25,
    }


def test_junit_format_is_valid_xml() -> None:
    text = fmt.as_junit(sample_report())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites')
    root = ET.fromstring(text.split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases][:2] == [
        "nbs2i.verify.metadata",
        "nbs2i.verify.files",
    ]
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message", "").endswith("& <friends>")
    assert cases[2].find("failure") is None  # a warning passes
    assert "warn: apt lists" in (cases[2].findtext("system-out") or "")
    assert cases[3].find("skipped") is not None
    assert float(suite.get("time", "0")) == 3.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (VerifyOptions(uid=0), "--uid 0 is not a non-root UID"),
        (VerifyOptions(port=70000), "--port 70000 is not a TCP port"),
        (VerifyOptions(start_timeout=0), "--timeout must be positive"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: VerifyOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        verify(cast(Engine, None), "img", options)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbs2i", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_engine_down_is_exit_2_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBS2I_DEBUG"}
    env["DOCKER_HOST"] = "tcp://127.0.0.1:1"
    result = run_cli("any:image", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbs2i: error: no Docker engine answers")
    assert result.stdout == ""


def test_cli_usage_errors() -> None:
    bad_uid = run_cli("img", "--uid", "abc")
    assert bad_uid.returncode == 2 and "is not 'random' or a number" in bad_uid.stderr
    bad_format = run_cli("img", "--format", "xml")
    assert bad_format.returncode == 2 and "xml" in bad_format.stderr
    assert "Traceback" not in bad_uid.stderr + bad_format.stderr
