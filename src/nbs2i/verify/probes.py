"""Probes of one running container: each looks at the server from outside
(HTTP on loopback, through `restricted`) or from inside (`docker exec` as the
container's own UID:0, never root) and says what it saw, as a `Part`.

Every wait is bounded. A probe that needs a tool the image lacks (a
distroless image has no sh) raises CannotLookInside, which the runner turns
into a skip.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from nbs2i import restricted
from nbs2i.engine import Docker, ExecResult
from nbs2i.errors import Nbs2iError
from nbs2i.verify.checks import Part, Status
from nbs2i.verify.static import INITS, SHELLS

ORPHAN_SLEEP = 1  # seconds the orphan lives
ORPHAN_BOUND = 6.0  # give PID 1 this long (from the seed) to reap it
ZOMBIE_PATIENCE = 2.5  # a zombie this long after the orphan's end will stay one
POLL_LIMIT = 200
LOG_TAIL = 20
SHOWN_CHARS = 200
_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_-]{8,})")
# What a server prints when it cannot write where it wants to.
_WRITE_ERRORS = ("Read-only file system", "Permission denied", "PermissionError")
_STAT = 'stat -c "%a %u %g %n" "$f"'
# Prints the PID of the process that listens on TCP port $1 (the server,
# whatever wrappers stand between it and PID 1): the socket's inode from
# /proc/net/tcp*, then the process holding that socket.
_LISTENER = r"""
want=$(printf ':%04X' "$1")
inode=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ local _ st rest; do
  case $local in *"$want") if [ "$st" = 0A ]; then set -- $rest; echo "$6"; fi ;; esac
done | head -n 1)
[ -n "$inode" ] || exit 1
for fd in /proc/[0-9]*/fd/*; do
  if [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ]; then
    pid=${fd#/proc/}; echo "${pid%%/*}"; exit 0
  fi
done
exit 1
"""


class CannotLookInside(Exception):
    """The image lacks the tool a probe execs (a distroless image has no sh)."""


def exec_missing(out: ExecResult) -> bool:
    """True when the engine could not start the exec'd program at all."""
    text = out.output.lower()
    return out.exit_code in (126, 127) and (
        "executable file not found" in text or "no such file or directory" in text
    )


@dataclass(frozen=True)
class Proc:
    pid: int
    comm: str
    state: str
    ppid: int


def parse_proc_stat(text: str) -> list[Proc]:
    """Lines of /proc/PID/stat; the command name may itself hold spaces or ')'."""
    procs = []
    for line in text.splitlines():
        head, sep, tail = line.rpartition(")")
        if not sep or " (" not in head:
            continue
        pid, _, comm = head.partition(" (")
        fields = tail.split()
        if pid.strip().isdigit() and len(fields) >= 2 and fields[1].isdigit():
            procs.append(Proc(int(pid), comm, fields[0], int(fields[1])))
    return procs


def server_pid(procs: list[Proc]) -> int:
    """The server: PID 1, or below it through inits and wrapper shells."""
    current = 1
    for _ in range(8):
        proc = next((p for p in procs if p.pid == current), None)
        if proc is None or proc.comm not in INITS | SHELLS:
            return current
        children = sorted(p.pid for p in procs if p.ppid == current and p.state != "Z")
        if not children:
            return current
        current = children[0]
    return current


def token_from_logs(logs: str) -> str | None:
    found = [t for t in _TOKEN.findall(logs) if t != "..."]
    return found[-1] if found else None


def write_error(logs: str, home: str) -> str:
    """The last log line saying the server could not write under home, or ""."""
    hits = [
        line.strip()
        for line in logs.splitlines()
        if home in line and any(e in line for e in _WRITE_ERRORS)
    ]
    return hits[-1][:SHOWN_CHARS] if hits else ""


class Probe:
    """One running container under test, and the ways to look at it."""

    def __init__(self, engine: Docker, cid: str, uid: int, host_port: int | None) -> None:
        self.engine = engine
        self.cid = cid
        self.uid = uid
        self.user = f"{uid}:{restricted.GID}"
        self.host_port = host_port

    def exec(self, cmd: list[str], env: Mapping[str, str] | None = None) -> ExecResult:
        out = self.engine.exec(self.cid, cmd, user=self.user, env=env)
        if exec_missing(out):
            raise CannotLookInside(f"the image has no `{cmd[0]}`: {out.output.strip()[:120]}")
        return out

    def sh(self, script: str, *args: str, env: Mapping[str, str] | None = None) -> ExecResult:
        return self.exec(["sh", "-c", script, "sh", *args], env)

    def running(self) -> tuple[bool, str]:
        info = self.engine.inspect_container(self.cid)
        if info.running:
            return True, ""
        return False, f"container exited with code {info.exit_code}: {self.last_log_line()}"

    def logs(self) -> str:
        return self.engine.logs(self.cid, tail=500)

    def last_log_line(self) -> str:
        lines = [line.strip() for line in self.engine.logs(self.cid, tail=LOG_TAIL).splitlines()]
        lines = [line for line in lines if line]
        return lines[-1][:SHOWN_CHARS] if lines else "(no output)"

    def procs(self) -> list[Proc]:
        return parse_proc_stat(self.sh("cat /proc/[0-9]*/stat 2>/dev/null; exit 0").output)

    def listener(self, port: int) -> int | None:
        """The PID listening on the container's TCP port, if it can be found."""
        out = self.sh(_LISTENER, str(port))
        text = out.output.strip()
        return int(text) if out.exit_code == 0 and text.isdigit() else None

    def server_env(self, pid: int) -> dict[str, str]:
        out = self.exec(["cat", f"/proc/{pid}/environ"])
        if out.exit_code != 0:
            return {}
        env = {}
        for item in out.output.split("\0"):
            name, sep, value = item.partition("=")
            if sep and name:
                env[name] = value
        return env

    def http(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> restricted.HttpAnswer:
        if self.host_port is None:
            raise OSError("the engine published no port for it")
        return restricted.http_request(
            self.host_port, path, method=method, headers=headers, body=body
        )


# -- the probes, in the order they run ---------------------------------------


def probe_starts(probe: Probe, port: int, timeout: float, setup: str) -> Part:
    """The server answers GET / with 2xx/3xx, as a platform's HTTP probe wants."""
    if probe.host_port is None:
        alive, why = probe.running()
        return Part(setup, Status.FAIL, why if not alive else f"port {port} was not published")
    seen = restricted.wait_ready(
        probe.engine, probe.cid, probe.host_port, timeout=timeout, path="/", accept=lambda _: True
    )
    took = seen.seconds
    if seen.exit_code is not None:
        why = f"container exited with code {seen.exit_code}: {probe.last_log_line()}"
        return Part(setup, Status.FAIL, why, took)
    if seen.ready and seen.status is not None and 200 <= seen.status < 400:
        return Part(
            setup,
            Status.PASS,
            f"GET / on port {port} answered {seen.status} after {took:.1f} s",
            took,
        )
    if seen.ready:
        why = f"GET / on port {port} answered {seen.status} (probes need 2xx/3xx)"
        return Part(setup, Status.FAIL, why, took)
    return Part(
        setup,
        Status.FAIL,
        f"no HTTP answer on port {port} within {timeout:g} s ({seen.error}); "
        f"last output: {probe.last_log_line()} (does it listen on 0.0.0.0?)",
        took,
    )


def _is_login_redirect(answer: restricted.HttpAnswer) -> bool:
    return 300 <= answer.status < 400 and "login" in answer.location.lower()


def probe_api_auth(probe: Probe, setup: str) -> Part:
    seen = []
    refused = False
    for path in ("/api/contents", "/api/status"):
        answer = probe.http("GET", path)
        seen.append(f"GET {path} → {answer.status}")
        if 200 <= answer.status < 300:
            return Part(
                setup,
                Status.FAIL,
                f"GET {path} without credentials answered {answer.status}: anyone who "
                "reaches the port runs code",
            )
        refused = refused or answer.status in (401, 403) or _is_login_redirect(answer)
    status = Status.PASS if refused else Status.SKIP
    what = "without credentials: " if refused else "no Jupyter API found: "
    return Part(setup, status, what + ", ".join(seen))


def probe_user_named(probe: Probe, env: Mapping[str, str], setup: str) -> Part:
    # The server resolves its name through its own environment (nss_wrapper's
    # LD_PRELOAD and NSS_WRAPPER_PASSWD set at start), so ask with the same.
    nss = {k: v for k, v in env.items() if k.startswith("NSS_WRAPPER_") or k == "LD_PRELOAD"}
    out = probe.exec(["id", "-un"], nss)
    name = out.output.strip().splitlines()[-1].strip() if out.output.strip() else ""
    how = " with the server's nss_wrapper settings" if nss else ""
    if out.exit_code == 0 and name and not name.isdigit():
        return Part(setup, Status.PASS, f"UID {probe.uid} is {name!r} (id -un{how})")
    return Part(
        setup,
        Status.FAIL,
        f"UID {probe.uid} has no name (id -un{how}: {name or 'no output'}); "
        "tools that look up the user fail",
    )


def probe_home_writable(
    probe: Probe, server_home: str, image_home: str, volume: bool, setup: str
) -> Part:
    """The server's HOME takes a file. With a volume on the image's HOME the
    server must use it (else work is lost at restart); without one, moving
    HOME to writable scratch space is what a bare pod needs."""
    out = probe.sh('f="$1/.nbs2i-verify-$$" && : > "$f" && rm -f "$f"', server_home)
    if out.exit_code != 0:
        why = out.output.strip()[:160]
        return Part(
            setup,
            Status.FAIL,
            f"HOME {server_home} is not writable by UID {probe.uid} GID 0: {why}",
        )
    if server_home == image_home:
        how = " (the empty group-0 volume)" if volume else ""
        return Part(setup, Status.PASS, f"HOME {server_home}{how} is writable")
    if volume:
        return Part(
            setup,
            Status.WARN,
            f"the server moved HOME to {server_home} instead of using the volume on "
            f"{image_home}: work saved there is lost at restart",
        )
    return Part(
        setup,
        Status.PASS,
        f"HOME {server_home} is writable (moved off {image_home} on the read-only root)",
    )


def _find_created(probe: Probe, name: str, dirs: list[str]) -> str:
    out = probe.sh(
        f'n="$1"; shift; for d in "$@"; do for f in "$d/$n" "$d"/*/"$n"; do '
        f'[ -e "$f" ] && {_STAT} && exit 0; done; done; exit 1',
        name,
        *dirs,
    )
    return out.output.strip() if out.exit_code == 0 else ""


def judge_created(line: str, how: str, setup: str) -> Part:
    """`stat` of a file the server made: group 0 with group write, or not."""
    fields = line.split(" ", 3)
    if len(fields) != 4 or not re.fullmatch(r"[0-7]{1,4}", fields[0]):
        return Part(setup, Status.FAIL, f"unexpected `stat` output: {line!r}")
    mode_text, uid, gid, path = fields
    mode = int(mode_text, 8)
    shown = f"{path} {mode:04o} {uid}:{gid} ({how})"
    if mode & 0o020 and gid == "0":
        return Part(setup, Status.PASS, shown)
    return Part(
        setup,
        Status.FAIL,
        f"{shown}: needs group 0 with group write (umask 002) so the next random UID can edit it",
    )


def _created_through_api(probe: Probe, name: str, dirs: list[str]) -> tuple[str, int]:
    """A file created by the server's own contents API: its `stat` line ("" when
    the API refused or the file was not found), and the API's status."""
    token = token_from_logs(probe.logs())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    body = json.dumps({"type": "file", "format": "text", "content": "nbs2i verify\n"}).encode()
    path = f"/api/contents/{name}"
    try:
        status = probe.http("PUT", path, headers, body).status
    except (OSError, http.client.HTTPException):
        return "", 0
    if status != 201:
        return "", status
    line = _find_created(probe, name, dirs)
    with contextlib.suppress(OSError, http.client.HTTPException):
        probe.http("DELETE", path, headers)  # tidy only: the container goes anyway
    return line, status


def probe_file_group_writable(
    probe: Probe, pid: int, server_home: str, dirs: list[str], setup: str
) -> Part:
    """A file created as the server creates files: through the Jupyter contents
    API when we can (the server's own umask and file code decide the mode),
    else by exec with the server's umask read from /proc/PID/status."""
    name = f"nbs2i-verify-{secrets.token_hex(6)}.txt"
    line, status = _created_through_api(probe, name, dirs)
    if line:
        return judge_created(line, "created through the Jupyter contents API", setup)
    proc_status = probe.exec(["cat", f"/proc/{pid}/status"]).output
    umask = next((ln.split()[1] for ln in proc_status.splitlines() if ln.startswith("Umask:")), "")
    if not re.fullmatch(r"[0-7]{3,4}", umask):
        umask = "0022"  # the engine's default when the kernel does not say
    script = f'umask "$2" && f="$1/{name}" && : > "$f" && {_STAT} && rm -f "$f"'
    out = probe.sh(script, server_home, umask)
    if out.exit_code != 0:
        why = out.output.strip()[:160]
        return Part(setup, Status.FAIL, f"could not create a file in HOME {server_home}: {why}")
    why = "no Jupyter contents API" if status != 403 else "contents API refused the token"
    return judge_created(
        out.output.strip(), f"by exec with the server's umask {umask}; {why}", setup
    )


def _start_orphan(probe: Probe) -> int | None:
    # The subshell prints the sleep's PID and exits at once, so the kernel hands
    # the sleep to PID 1. The sleep must not hold the exec's output open, or
    # the exec would wait for it.
    out = probe.sh(f"(sleep {ORPHAN_SLEEP} </dev/null >/dev/null 2>&1 & echo $!); exit 0")
    printed = out.output.strip().splitlines()
    return int(printed[-1]) if printed and printed[-1].strip().isdigit() else None


def probe_reaps_orphans(probe: Probe, setup: str) -> Part:
    """Seed 001's test: orphan a short `sleep`, see it handed to PID 1, and see
    PID 1 collect it. Reaped means its /proc entry is gone; a zombie keeps one
    (state Z) for as long as its parent does not wait for it."""
    started = time.monotonic()
    pid = _start_orphan(probe)
    if pid is None:
        return Part(setup, Status.SKIP, "could not start an orphan")
    adopted: Proc | None = None
    last: Proc | None = None
    for _ in range(POLL_LIMIT):
        procs = probe.procs()
        last = next((p for p in procs if p.pid == pid), None)
        took = time.monotonic() - started
        if last is None:
            return _reaped(pid, adopted, procs, took, setup)
        adopted = adopted or (last if last.ppid == 1 else None)
        if took > ORPHAN_BOUND or (last.state == "Z" and took > ORPHAN_SLEEP + ZOMBIE_PATIENCE):
            break
        time.sleep(0.25)
    return _not_reaped(pid, last, time.monotonic() - started, setup)


def _reaped(pid: int, adopted: Proc | None, procs: list[Proc], took: float, setup: str) -> Part:
    if adopted is None:
        # Gone before we saw it under PID 1: nothing was shown about PID 1.
        return Part(setup, Status.SKIP, f"the orphan (pid {pid}) was never seen under PID 1")
    pid1 = next((f"PID 1 ({p.comm})" for p in procs if p.pid == 1), "PID 1")
    return Part(
        setup,
        Status.PASS,
        f"orphaned sleep (pid {pid}) adopted and reaped by {pid1} within {took:.1f} s",
        took,
    )


def _not_reaped(pid: int, last: Proc | None, took: float, setup: str) -> Part:
    if last is not None and last.state == "Z":
        parent = "PID 1" if last.ppid == 1 else f"pid {last.ppid}"
        return Part(
            setup,
            Status.FAIL,
            f"<defunct> sleep (pid {pid}) still a child of {parent} after {took:.0f} s: "
            "PID 1 does not reap",
            took,
        )
    return Part(setup, Status.FAIL, f"the orphan was still running after {took:.0f} s", took)


def probe_sigterm(probe: Probe, setup: str) -> Part:
    probe.engine.kill(probe.cid, "TERM")
    took = restricted.wait_stopped(probe.engine, probe.cid, restricted.STOP_GRACE)
    if took is not None:
        code = probe.engine.inspect_container(probe.cid).exit_code
        return Part(setup, Status.PASS, f"stopped {took:.1f} s after SIGTERM (exit {code})", took)
    with contextlib.suppress(Nbs2iError):  # it may have stopped just now
        probe.engine.kill(probe.cid, "KILL")
    return Part(
        setup,
        Status.FAIL,
        f"still running {restricted.STOP_GRACE} s after SIGTERM; a platform kills it "
        "and unsaved work is lost",
        float(restricted.STOP_GRACE),
    )
