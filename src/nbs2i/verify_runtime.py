"""The runtime checks: start an image the way a restricted platform would.

One container, as a random UID with GID 0 (or --uid), read-only root, a tmpfs
on /tmp, every capability dropped, no-new-privileges, its port published on
127.0.0.1 only. HOME gets what a platform mounts there when the root is
read-only: an empty volume writable by group 0 (tmpfs-backed, root:0 mode
0775, like z2jh's home volume or an emptyDir; labelled, removed afterwards).
So the image's own HOME mode does not decide these checks (the static
`home-group-writable` check judges that); what is judged is whether the server
works from such a HOME. Probes then look at
the server from outside (HTTP on loopback) and from inside (`docker exec` as
the same UID:0, never root). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nbs2i.checks import CheckResult, Status, result
from nbs2i.engine import Engine, ExecResult
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError
from nbs2i.progress import Event, Reporter, silent
from nbs2i.verify_static import INITS, ImageConfig

LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT = 3.0  # one request
POLL = 0.2  # between readiness probes
SIGTERM_BOUND = 10.0  # platforms send KILL 30 s after TERM; we ask for 10
ORPHAN_SLEEP = 1  # seconds the orphan lives
ORPHAN_BOUND = 6.0  # give PID 1 this long (from the seed) to reap it
HOME_SIZE = "512m"  # the HOME stand-in is memory: the seed notebooks must fit
SHELLS = frozenset({"sh", "bash", "dash", "ash"})
_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_-]{8,})")


@dataclass(frozen=True)
class RuntimeOptions:
    uid: int
    port: int
    start_timeout: float = 60.0


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


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    location: str = ""


class Sandbox:
    """Everything the runtime checks create, so all of it can be removed."""

    def __init__(self, engine: Engine, labels: Mapping[str, str]) -> None:
        self.engine = engine
        self.labels = dict(labels)
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def cleanup(self) -> None:
        for cid in reversed(self.containers):
            self.engine.remove_container(cid)
        for name in reversed(self.volumes):
            self.engine.remove_volume(name)


def http_get(
    port: int,
    path: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> HttpAnswer:
    """One request to 127.0.0.1 (never a proxy, never another host); no redirects."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        response.read()
        return HttpAnswer(response.status, response.getheader("Location") or "")
    finally:
        conn.close()


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
    by_pid = {p.pid: p for p in procs}
    current = 1
    for _ in range(8):
        proc = by_pid.get(current)
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


class Probe:
    """One running container under test, and the ways to look at it."""

    def __init__(self, engine: Engine, cid: str, uid: int) -> None:
        self.engine = engine
        self.cid = cid
        self.user = f"{uid}:0"
        self.uid = uid
        self.host_port = 0

    def exec(self, cmd: list[str], environment: Mapping[str, str] | None = None) -> ExecResult:
        out = self.engine.exec(self.cid, cmd, user=self.user, environment=dict(environment or {}))
        if exec_missing(out):
            raise CannotLookInside(f"the image has no `{cmd[0]}`: {out.output.strip()[:120]}")
        return out

    def sh(
        self, script: str, *args: str, environment: Mapping[str, str] | None = None
    ) -> ExecResult:
        return self.exec(["sh", "-c", script, "sh", *args], environment)

    def running(self) -> tuple[bool, str]:
        state = self.engine.inspect_container(self.cid).get("State") or {}
        if state.get("Running"):
            return True, ""
        return False, f"container exited with code {state.get('ExitCode')}: {self.last_log_line()}"

    def last_log_line(self) -> str:
        raw = self.engine.logs(self.cid, tail=20)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:200] if lines else "(no output)"

    def logs(self) -> str:
        raw = self.engine.logs(self.cid, tail=500)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""

    def procs(self) -> list[Proc]:
        out = self.sh("cat /proc/[0-9]*/stat 2>/dev/null; exit 0")
        return parse_proc_stat(out.output)

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


# -- the probes, in the order they run ---------------------------------------


def probe_starts(probe: Probe, port: int, timeout: float) -> CheckResult:
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer"
    attempts = 0
    while time.monotonic() < deadline and attempts < int(timeout / POLL) + 10:
        attempts += 1
        alive, why = probe.running()
        if not alive:
            return result("starts", Status.FAIL, why, time.monotonic() - started)
        try:
            answer = http_get(probe.host_port, "/")
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            took = time.monotonic() - started
            if 200 <= answer.status < 400:
                return result(
                    "starts",
                    Status.PASS,
                    f"GET / on port {port} answered {answer.status} after {took:.1f} s",
                    took,
                )
            return result(
                "starts",
                Status.FAIL,
                f"GET / on port {port} answered {answer.status} (probes need 2xx/3xx)",
                took,
            )
        time.sleep(POLL)
    return result(
        "starts",
        Status.FAIL,
        f"no HTTP answer on port {port} within {timeout:.0f} s ({last}); "
        f"last output: {probe.last_log_line()} (does it listen on 0.0.0.0?)",
        time.monotonic() - started,
    )


def _is_login_redirect(answer: HttpAnswer) -> bool:
    return 300 <= answer.status < 400 and "login" in answer.location.lower()


def probe_api_auth(probe: Probe) -> CheckResult:
    seen = []
    refused = False
    for path in ("/api/contents", "/api/status"):
        answer = http_get(probe.host_port, path)
        seen.append(f"GET {path} → {answer.status}")
        if 200 <= answer.status < 300:
            return result(
                "api-auth",
                Status.FAIL,
                f"GET {path} without credentials answered {answer.status}: anyone who "
                "reaches the port runs code",
            )
        if answer.status in (401, 403) or _is_login_redirect(answer):
            refused = True
    if refused:
        return result("api-auth", Status.PASS, "without credentials: " + ", ".join(seen))
    return result("api-auth", Status.SKIP, "no Jupyter API found: " + ", ".join(seen))


def probe_user_named(probe: Probe, env: Mapping[str, str]) -> CheckResult:
    # The server resolves its name through its own environment (nss_wrapper's
    # LD_PRELOAD and NSS_WRAPPER_PASSWD set at start), so ask with the same.
    nss = {k: v for k, v in env.items() if k.startswith("NSS_WRAPPER_") or k == "LD_PRELOAD"}
    out = probe.exec(["id", "-un"], nss)
    name = out.output.strip().splitlines()[-1].strip() if out.output.strip() else ""
    how = " with the server's nss_wrapper settings" if nss else ""
    if out.exit_code == 0 and name and not name.isdigit():
        return result("user-named", Status.PASS, f"UID {probe.uid} is {name!r} (id -un{how})")
    return result(
        "user-named",
        Status.FAIL,
        f"UID {probe.uid} has no name (id -un{how}: {name or 'no output'}); "
        "tools that look up the user fail",
    )


def probe_home_writable(probe: Probe, env: Mapping[str, str], config: ImageConfig) -> CheckResult:
    image_home = config.home
    home = env.get("HOME") or image_home
    out = probe.sh('f="$1/.nbs2i-verify-$$" && : > "$f" && rm -f "$f"', home)
    if out.exit_code != 0:
        return result(
            "home-writable",
            Status.FAIL,
            f"HOME {home} is not writable by UID {probe.uid} GID 0: {out.output.strip()[:160]}",
        )
    if home != image_home:
        return result(
            "home-writable",
            Status.WARN,
            f"the server moved HOME to {home} (writable) because {image_home} was not; "
            "work saved there is lost at restart",
        )
    how = " (the empty group-0 volume mounted there)" if _home_volume(config) else ""
    return result("home-writable", Status.PASS, f"HOME {home}{how} is writable")


_STAT = 'stat -c "%a %u %g %n" "$f"'


def _find_created(probe: Probe, name: str, dirs: list[str]) -> str:
    out = probe.sh(
        f'n="$1"; shift; for d in "$@"; do for f in "$d/$n" "$d"/*/"$n"; do '
        f'[ -e "$f" ] && {_STAT} && exit 0; done; done; exit 1',
        name,
        *dirs,
    )
    return out.output.strip() if out.exit_code == 0 else ""


def _judge_created(line: str, how: str) -> CheckResult:
    fields = line.split(" ", 3)
    if len(fields) != 4 or not re.fullmatch(r"[0-7]{1,4}", fields[0]):
        return result("file-group-writable", Status.FAIL, f"unexpected `stat` output: {line!r}")
    mode_text, uid, gid, path = fields
    mode = int(mode_text, 8)
    shown = f"{path} {mode:04o} {uid}:{gid} ({how})"
    if mode & 0o020 and gid == "0":
        return result("file-group-writable", Status.PASS, shown)
    return result(
        "file-group-writable",
        Status.FAIL,
        f"{shown}: needs group 0 with group write (umask 002) so the next random UID can edit it",
    )


def probe_file_group_writable(
    probe: Probe, pid: int, env: Mapping[str, str], config: ImageConfig
) -> CheckResult:
    """A file created as the server creates files. Through the Jupyter contents
    API when we can (the server's own umask and file code decide the mode),
    else by exec with the server's umask read from /proc/PID/status."""
    name = f"nbs2i-verify-{secrets.token_hex(6)}.txt"
    token = token_from_logs(probe.logs())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    body = json.dumps({"type": "file", "format": "text", "content": "nbs2i verify\n"}).encode()
    try:
        answer = http_get(probe.host_port, f"/api/contents/{name}", headers, "PUT", body)
    except (OSError, http.client.HTTPException):
        answer = HttpAnswer(0)
    home = env.get("HOME") or config.home
    dirs = list(dict.fromkeys([home, config.home, config.workspace, f"/proc/{pid}/cwd"]))
    if answer.status == 201:
        line = _find_created(probe, name, dirs)
        with contextlib.suppress(OSError, http.client.HTTPException):
            http_get(probe.host_port, f"/api/contents/{name}", headers, "DELETE")
        if line:
            return _judge_created(line, "created through the Jupyter contents API")
    status = probe.exec(["cat", f"/proc/{pid}/status"]).output
    umask = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")), "")
    if not re.fullmatch(r"[0-7]{3,4}", umask):
        umask = "0022"  # the engine's default when the kernel does not say
    out = probe.sh(f'umask "$2" && f="$1/{name}" && : > "$f" && {_STAT} && rm -f "$f"', home, umask)
    if out.exit_code != 0:
        return result(
            "file-group-writable",
            Status.FAIL,
            f"could not create a file in HOME {home}: {out.output.strip()[:160]}",
        )
    why = "no Jupyter contents API" if answer.status != 403 else "contents API refused the token"
    return _judge_created(out.output.strip(), f"by exec with the server's umask {umask}; {why}")


def probe_reaps_orphans(probe: Probe) -> CheckResult:
    """Seed 001's test: orphan a short `sleep`; PID 1 must collect it.

    The subshell prints the sleep's PID and exits at once, so the kernel hands
    the sleep to PID 1. Reaped means its /proc entry is gone; a zombie keeps
    one (state Z) for as long as its parent does not wait for it.
    """
    started = time.monotonic()
    # The orphan must not hold the exec's output open, or the exec waits for it.
    out = probe.sh(f"(sleep {ORPHAN_SLEEP} </dev/null >/dev/null 2>&1 & echo $!); exit 0")
    printed = out.output.strip().splitlines()
    if not printed or not printed[-1].strip().isdigit():
        return result("reaps-orphans", Status.SKIP, f"could not start an orphan: {out.output!r}")
    pid = int(printed[-1].strip())
    pid1 = "PID 1"
    seen: Proc | None = None
    polls = 0
    while time.monotonic() - started < ORPHAN_BOUND and polls < 200:
        polls += 1
        procs = probe.procs()
        pid1 = next((f"PID 1 ({p.comm})" for p in procs if p.pid == 1), pid1)
        seen = next((p for p in procs if p.pid == pid), None)
        if seen is None:
            took = time.monotonic() - started
            return result(
                "reaps-orphans",
                Status.PASS,
                f"orphaned sleep (pid {pid}) reaped by {pid1} within {took:.1f} s",
                took,
            )
        if seen.state == "Z" and time.monotonic() - started > ORPHAN_SLEEP + 2.5:
            break  # a zombie this long after its exit is not going to be reaped
        time.sleep(0.25)
    took = time.monotonic() - started
    if seen is not None and seen.state == "Z":
        parent = pid1 if seen.ppid == 1 else f"pid {seen.ppid}"
        return result(
            "reaps-orphans",
            Status.FAIL,
            f"<defunct> sleep (pid {pid}) still a child of {parent} after {took:.0f} s: "
            "PID 1 does not reap",
            took,
        )
    return result(
        "reaps-orphans", Status.FAIL, f"the orphan was still running after {took:.0f} s", took
    )


def probe_sigterm(probe: Probe) -> CheckResult:
    started = time.monotonic()
    probe.engine.kill(probe.cid, "TERM")
    # Poll rather than a blocking wait: the engine's wait with a timeout ends
    # in a client read timeout, not an answer.
    polls = 0
    while time.monotonic() - started < SIGTERM_BOUND and polls < 200:
        polls += 1
        state = probe.engine.inspect_container(probe.cid).get("State") or {}
        if not state.get("Running"):
            took = time.monotonic() - started
            code = state.get("ExitCode")
            return result(
                "sigterm", Status.PASS, f"stopped {took:.1f} s after SIGTERM (exit {code})", took
            )
        time.sleep(0.1)
    with contextlib.suppress(Nbs2iError):
        probe.engine.kill(probe.cid, "KILL")
    return result(
        "sigterm",
        Status.FAIL,
        f"still running {SIGTERM_BOUND:.0f} s after SIGTERM; a platform kills it "
        "and unsaved work is lost",
        time.monotonic() - started,
    )


# -- the runner ---------------------------------------------------------------

RUNTIME_IDS = (
    "starts",
    "api-auth",
    "user-named",
    "home-writable",
    "file-group-writable",
    "reaps-orphans",
    "sigterm",
)


def skipped(reason: str, ids: tuple[str, ...] = RUNTIME_IDS) -> list[CheckResult]:
    return [result(check_id, Status.SKIP, reason) for check_id in ids]


def _home_volume(config: ImageConfig) -> bool:
    home = config.home
    return home not in ("", "/") and not (home == "/tmp" or home.startswith("/tmp/"))


def start_container(
    engine: Engine, image: str, config: ImageConfig, options: RuntimeOptions, sandbox: Sandbox
) -> str:
    binds = {}
    if _home_volume(config):
        # A fresh, empty volume, group 0 writable, as a platform mounts on HOME.
        # "nocopy": the engine would otherwise copy the image's HOME (owner,
        # mode, files) into it; a tmpfs mount would get the same copy-up.
        volume = engine.create_volume(
            labels=sandbox.labels,
            driver_opts={
                "type": "tmpfs",
                "device": "tmpfs",
                "o": f"nosuid,nodev,mode=0775,size={HOME_SIZE}",
            },
        )
        sandbox.volumes.append(volume)
        binds[volume] = {"bind": config.home, "mode": "rw,nocopy"}
    cid = engine.create_container(
        image,
        user=f"{options.uid}:0",
        ports=[options.port],
        labels=sandbox.labels,
        host_config={
            "read_only": True,
            "tmpfs": {"/tmp": "rw,nosuid,nodev,mode=1777"},
            "binds": binds,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "port_bindings": {options.port: (LOOPBACK,)},
        },
    )
    sandbox.containers.append(cid)
    engine.start(cid)
    return cid


def _published_port(engine: Engine, cid: str, port: int) -> int:
    ports = (engine.inspect_container(cid).get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{port}/tcp") or []:
        if binding.get("HostIp") in (LOOPBACK, "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    return 0


def _guarded(check_id: str, probe: Probe, fn: Callable[[], CheckResult]) -> CheckResult:
    """Run one probe; an engine refusal becomes this check's evidence."""
    started = time.monotonic()
    try:
        found = fn()
    except EngineUnavailable:
        raise
    except CannotLookInside as exc:
        return result(check_id, Status.SKIP, str(exc))
    except (Nbs2iError, OSError, http.client.HTTPException) as exc:
        alive, why = (True, "")
        with contextlib.suppress(Nbs2iError):
            alive, why = probe.running()
        status = Status.SKIP if not alive else Status.FAIL
        return result(check_id, status, why or f"{type(exc).__name__}: {exc}")
    if not found.seconds:
        found = result(found.id, found.status, found.evidence, time.monotonic() - started)
    return found


def runtime_checks(
    engine: Engine,
    image: str,
    config: ImageConfig,
    options: RuntimeOptions,
    sandbox: Sandbox,
    report: Reporter = silent,
) -> list[CheckResult]:
    report(Event("step", f"starting {image} as UID {options.uid}:0, read-only, no capabilities"))
    try:
        cid = start_container(engine, image, config, options, sandbox)
    except EngineUnavailable:
        raise
    except EngineError as exc:
        found = result("starts", Status.FAIL, f"the engine could not start it: {exc.problem}")
        return [found, *skipped("did not start", RUNTIME_IDS[1:])]
    probe = Probe(engine, cid, options.uid)
    probe.host_port = _published_port(engine, cid, options.port)
    found = [probe_starts(probe, options.port, options.start_timeout)]
    alive, why = probe.running()
    if not alive:
        return found + skipped(f"not running ({why})", RUNTIME_IDS[1:])
    answered = found[0].status is Status.PASS
    report(Event("step", "probing the running server"))
    if answered:
        found.append(_guarded("api-auth", probe, lambda: probe_api_auth(probe)))
    else:
        found += skipped("no HTTP answer", ("api-auth",))
    procs: list[Proc] = []
    env: dict[str, str] = {}
    with contextlib.suppress(CannotLookInside):
        procs = probe.procs()
    pid = server_pid(procs) if procs else 1
    with contextlib.suppress(CannotLookInside):
        env = probe.server_env(pid)
    found.append(_guarded("user-named", probe, lambda: probe_user_named(probe, env)))
    found.append(_guarded("home-writable", probe, lambda: probe_home_writable(probe, env, config)))
    found.append(
        _guarded(
            "file-group-writable",
            probe,
            lambda: probe_file_group_writable(probe, pid, env, config),
        )
    )
    found.append(_guarded("reaps-orphans", probe, lambda: probe_reaps_orphans(probe)))
    found.append(_guarded("sigterm", probe, lambda: probe_sigterm(probe)))
    return found
