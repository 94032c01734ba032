"""`nbs2i verify IMAGE`: is this image ready for a restricted platform?

Works on any image (ours, an upstream s2i build, a docker-stacks image, a
teacher's Dockerfile). Three kinds of checks, see `nbs2i.checks.CATALOGUE`:
metadata (inspect), files (the filesystem read from a never-started
container), runtime (the image started as a restricted platform would, see
`nbs2i.verify_runtime`). Everything created is labelled with this run's id and
removed at the end, also when the user presses Ctrl-C.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from nbs2i.checks import CATALOGUE, CheckResult, VerifyReport
from nbs2i.engine import Engine
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError, UsageError
from nbs2i.imagefs import FileFacts, read_image_files
from nbs2i.progress import Event, Reporter, silent
from nbs2i.verify_runtime import RuntimeOptions, Sandbox, runtime_checks, skipped
from nbs2i.verify_static import ImageConfig, file_checks, metadata_checks, serving_port

RUN_LABEL = "nbs2i.verify.run"
# OpenShift hands out UIDs from a namespace range such as 1000680000-1000689999.
RANDOM_UID_BASE = 1_000_000_000
RANDOM_UID_SPAN = 999_999_999
# How long an interrupted run waits for the filesystem scan to let go.
SCAN_GRACE = 30.0


class ImageUnexaminable(Nbs2iError):
    """The image could not be examined at all (absent, engine refused)."""

    exit_code = 2


@dataclass(frozen=True)
class VerifyOptions:
    uid: int | None = None  # None: a random UID, as OpenShift assigns
    runtime: bool = True
    port: int | None = None  # None: the exposed port, else 8888
    start_timeout: float = 60.0
    labels: Mapping[str, str] = field(default_factory=dict)  # put on all we create


def random_uid() -> int:
    return RANDOM_UID_BASE + secrets.randbelow(RANDOM_UID_SPAN)


def _validate(options: VerifyOptions) -> None:
    if options.uid is not None and not 0 < options.uid < 2**31:
        raise UsageError(
            f"--uid {options.uid} is not a non-root UID",
            "pick one between 1 and 2147483647, or leave it out for a random one",
        )
    if options.port is not None and not 0 < options.port < 65536:
        raise UsageError(f"--port {options.port} is not a TCP port", "pick one from 1 to 65535")
    if options.start_timeout <= 0:
        raise UsageError("--timeout must be positive", "give the seconds to wait for the server")


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Let clean-up finish even if Ctrl-C is pressed again (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _sweep(engine: Engine, sandbox: Sandbox, run_id: str) -> None:
    """Remove what we know we made (with the anonymous volumes of any VOLUME), then
    any container or volume carrying this run's label
    (a container whose create call was interrupted before it returned its id)."""
    sandbox.cleanup()
    selector = [f"{RUN_LABEL}={run_id}"]
    for container in engine.containers(labels=selector):
        engine.remove_container(container["Id"])
    for volume in engine.volumes(labels=selector):
        engine.remove_volume(volume["Name"])


def _scanned(scan: Future[FileFacts], image: str) -> FileFacts:
    try:
        return scan.result()
    except EngineUnavailable:
        raise
    except EngineError as exc:
        raise ImageUnexaminable(
            f"cannot read the filesystem of {image}: {exc.problem}",
            exc.fix or "check that the engine can create containers from it",
        ) from exc


def verify(
    engine: Engine, image: str, options: VerifyOptions | None = None, report: Reporter = silent
) -> VerifyReport:
    options = options or VerifyOptions()
    _validate(options)
    started = time.monotonic()
    try:
        inspect = engine.inspect_image(image)
    except EngineUnavailable:
        raise
    except EngineError as exc:
        raise ImageUnexaminable(
            f"cannot examine {image}: {exc.problem}",
            exc.fix or "check the name with `docker images`",
        ) from exc
    config = ImageConfig.from_inspect(inspect)
    run_id = secrets.token_hex(6)
    sandbox = Sandbox(engine, {**options.labels, RUN_LABEL: run_id})
    uid = options.uid if options.uid is not None else random_uid()
    checks: list[CheckResult] = []
    # The filesystem scan (seconds for a big image) runs beside the runtime
    # checks (mostly waiting on the server), so a full verify costs the longer
    # of the two, not their sum.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbs2i-verify-files")
    scan: Future[FileFacts] | None = None
    try:
        report(Event("step", f"reading the filesystem of {image}"))
        scan = pool.submit(
            read_image_files,
            engine,
            image,
            want=config.files_wanted(),
            read=("/etc/passwd",),
            labels=sandbox.labels,
        )
        if options.runtime:
            port = options.port or serving_port(config)
            runtime = RuntimeOptions(uid, port, options.start_timeout)
            found = runtime_checks(engine, image, config, runtime, sandbox, report)
        else:
            found = skipped("--no-runtime")
        files = _scanned(scan, image)
        checks += metadata_checks(config, files) + file_checks(config, files) + found
    finally:
        with _uninterrupted():
            report(Event("step", "removing the containers and volumes verify created"))
            _sweep(engine, sandbox, run_id)
            if scan is not None and not scan.done():
                # Interrupted mid-scan: let it end (its container is gone, so
                # it ends soon), then sweep what it may have created meanwhile.
                wait([scan], timeout=SCAN_GRACE)
                _sweep(engine, sandbox, run_id)
        pool.shutdown(wait=False, cancel_futures=True)
    order = {spec.id: i for i, spec in enumerate(CATALOGUE)}
    checks.sort(key=lambda c: order[c.id])
    return VerifyReport(
        image=image,
        image_id=str(inspect.get("Id", "")),
        uid=uid if options.runtime else None,
        checks=tuple(checks),
        seconds=round(time.monotonic() - started, 2),
    )
