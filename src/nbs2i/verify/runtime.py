"""The runtime checks: start the image the way a restricted platform would, twice.

Both runs use `restricted.container_spec`: a random UID (or --uid) with GID
0, a read-only root with a tmpfs on /tmp, every capability dropped,
no-new-privileges, the port on 127.0.0.1 only. They differ in HOME:

- "no volume": a bare pod, which is what most clusters give an image that
  asks for nothing. An image that needs to write under its own HOME breaks
  here (e.g. "Read-only file system: '/home/jovyan/.local'").
- "volume on HOME": an empty volume, root-owned with group 0 write, mounted
  on the image's HOME, as zero-to-jupyterhub and OpenShift mount a student's
  storage (a bounded tmpfs: `restricted.empty_volume`). An image that cannot
  live with an empty HOME breaks here.

Each run gives one `Part` per runtime check; `checks.combine` turns the two
into the check's result, so an image must work both ways to pass. The
containers are remembered in a `cleanup.Leftovers` that the caller removes.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nbs2i import restricted
from nbs2i.cleanup import Leftovers
from nbs2i.engine import Docker, ImageConfig
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError
from nbs2i.progress import Event, Reporter, silent
from nbs2i.restricted import can_mount_home
from nbs2i.verify.checks import RUNTIME_IDS, CheckResult, Part, Status, combine, result
from nbs2i.verify.probes import (
    CannotLookInside,
    Probe,
    probe_api_auth,
    probe_file_group_writable,
    probe_home_writable,
    probe_reaps_orphans,
    probe_sigterm,
    probe_starts,
    probe_user_named,
    server_pid,
    write_error,
)
from nbs2i.verify.static import image_home, workspace


@dataclass(frozen=True)
class Setup:
    """One way of starting the image."""

    name: str  # how the evidence names the run
    volume: bool  # an empty group-0 volume on the image's HOME


BARE = Setup("no volume", volume=False)
HOME_VOLUME = Setup("volume on HOME", volume=True)
SETUPS = (BARE, HOME_VOLUME)


@dataclass(frozen=True)
class RuntimeOptions:
    uid: int
    port: int  # the container port the server listens on
    start_timeout: float


def skipped(reason: str) -> list[CheckResult]:
    return [result(check_id, Status.SKIP, reason) for check_id in RUNTIME_IDS]


def runtime_checks(
    engine: Docker,
    image: str,
    config: ImageConfig,
    options: RuntimeOptions,
    leftovers: Leftovers,
    labels: Mapping[str, str],
    report: Reporter = silent,
) -> list[CheckResult]:
    """Every runtime check, seen in each of SETUPS, one run after the other."""
    parts: dict[str, list[Part]] = {check_id: [] for check_id in RUNTIME_IDS}
    for setup in SETUPS:
        found = run_setup(engine, image, config, options, setup, leftovers, labels, report)
        for check_id in RUNTIME_IDS:
            parts[check_id].append(found[check_id])
    return [combine(check_id, parts[check_id]) for check_id in RUNTIME_IDS]


def _all(setup: Setup, status: Status, why: str, ids: tuple[str, ...]) -> dict[str, Part]:
    return {check_id: Part(setup.name, status, why) for check_id in ids}


def run_setup(
    engine: Docker,
    image: str,
    config: ImageConfig,
    options: RuntimeOptions,
    setup: Setup,
    leftovers: Leftovers,
    labels: Mapping[str, str],
    report: Reporter = silent,
) -> dict[str, Part]:
    """Start the image one way, probe it, remove the container."""
    home = image_home(config)
    if setup.volume and not can_mount_home(home):
        return _all(setup, Status.SKIP, f"HOME is {home}: nowhere to mount a volume", RUNTIME_IDS)
    report(Event("step", f"starting {image} as UID {options.uid}:0, read-only, {setup.name}"))
    try:
        cid = _start(engine, image, home if setup.volume else "", options, leftovers, labels)
    except EngineUnavailable:
        raise
    except EngineError as exc:
        failed = Part(setup.name, Status.FAIL, f"the engine could not start it: {exc.problem}")
        return {"starts": failed, **_all(setup, Status.SKIP, "did not start", RUNTIME_IDS[1:])}
    try:
        return probe_all(engine, cid, config, options, setup)
    finally:
        # The next run starts afresh; a failed removal is left to the caller.
        with contextlib.suppress(EngineError):
            leftovers.drop(cid)


def _start(
    engine: Docker,
    image: str,
    volume_on: str,
    options: RuntimeOptions,
    leftovers: Leftovers,
    labels: Mapping[str, str],
) -> str:
    """The container, started; with an empty volume on volume_on unless it is ""."""
    spec = restricted.container_spec(
        image, uid=options.uid, container_port=options.port, empty_home=volume_on, labels=labels
    )
    cid = leftovers.container(engine.create_container(spec))
    engine.start(cid)
    return cid


def probe_all(
    engine: Docker, cid: str, config: ImageConfig, options: RuntimeOptions, setup: Setup
) -> dict[str, Part]:
    """Every runtime probe of one running container, sigterm last."""
    host_port = restricted.published_port(engine.inspect_container(cid), options.port)
    probe = Probe(engine, cid, options.uid, host_port)
    found = {"starts": probe_starts(probe, options.port, options.start_timeout, setup.name)}
    alive, _why = probe.running()
    if not alive:
        return found | after_exit(probe, image_home(config), setup)
    if found["starts"].status is Status.PASS:
        found["api-auth"] = guarded(probe, setup, lambda: probe_api_auth(probe, setup.name))
    else:
        found["api-auth"] = Part(setup.name, Status.SKIP, "no HTTP answer")
    pid, env = _server(probe, options.port)
    home = env.get("HOME") or image_home(config)
    dirs = list(dict.fromkeys([home, image_home(config), workspace(config), f"/proc/{pid}/cwd"]))
    probes: dict[str, Callable[[], Part]] = {
        "user-named": lambda: probe_user_named(probe, env, setup.name),
        "home-writable": lambda: probe_home_writable(
            probe, home, image_home(config), setup.volume, setup.name
        ),
        "file-group-writable": lambda: probe_file_group_writable(
            probe, pid, home, dirs, setup.name
        ),
        "reaps-orphans": lambda: probe_reaps_orphans(probe, setup.name),
        "sigterm": lambda: probe_sigterm(probe, setup.name),
    }
    for check_id, run in probes.items():
        found[check_id] = guarded(probe, setup, run)
    return found


def _server(probe: Probe, port: int) -> tuple[int, dict[str, str]]:
    """The server's PID and environment: the process listening on the port,
    else the first below PID 1 that is no init or shell; PID 1 and {} when
    the image has no sh."""
    pid = 1
    with contextlib.suppress(CannotLookInside):
        pid = probe.listener(port) or server_pid(probe.procs())
    with contextlib.suppress(CannotLookInside):
        return pid, probe.server_env(pid)
    return pid, {}


def after_exit(probe: Probe, home: str, setup: Setup) -> dict[str, Part]:
    """What can still be said of a server that exited during start-up: whether
    it died writing under HOME (from its log); nothing else."""
    info = probe.engine.inspect_container(probe.cid)
    why = f"not running (exit code {info.exit_code})"
    found = _all(setup, Status.SKIP, why, RUNTIME_IDS[1:])
    error = write_error(probe.logs(), home)
    if error:
        found["home-writable"] = Part(
            setup.name, Status.FAIL, f"the server died writing under HOME {home}: {error}"
        )
    return found


def guarded(probe: Probe, setup: Setup, run: Callable[[], Part]) -> Part:
    """Run one probe; an engine refusal or a dead server becomes its evidence."""
    started = time.monotonic()
    try:
        found = run()
    except EngineUnavailable:
        raise
    except CannotLookInside as exc:
        return Part(setup.name, Status.SKIP, str(exc))
    except (Nbs2iError, OSError, http.client.HTTPException) as exc:
        alive, why = True, ""
        with contextlib.suppress(Nbs2iError):
            alive, why = probe.running()
        status = Status.FAIL if alive else Status.SKIP
        return Part(setup.name, status, why or f"{type(exc).__name__}: {exc}")
    if found.seconds:
        return found
    return Part(found.setup, found.status, found.evidence, time.monotonic() - started)
