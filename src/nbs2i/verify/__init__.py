"""`nbs2i verify IMAGE`: is this image ready for a restricted platform?

Works on any image (ours, an upstream s2i build, a docker-stacks image, a
teacher's Dockerfile). Three kinds of checks (`checks.CATALOGUE`):

- metadata, from the engine's inspect (`static`);
- files, from the image's filesystem read through a never-started container
  (`imagefs`, judged in `static`);
- runtime, the image started as a restricted platform would, once without a
  volume and once with an empty volume on HOME (`runtime`, `probes`).

The filesystem scan runs beside the runtime checks, so a full verify costs
the longer of the two. Everything created carries this run's id and is
removed at the end, also on Ctrl-C, SIGTERM or SIGHUP (see `interrupts`).
`report` renders the result as a table, JSON or JUnit XML.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from nbs2i import defaults, interrupts, labels, restricted
from nbs2i.engine import Docker, ImageConfig
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError
from nbs2i.examine import ImageUnexaminable, OptionError, Sandbox, inspect_image
from nbs2i.progress import Event, Reporter, silent
from nbs2i.verify.checks import CATALOGUE, CheckResult, VerifyReport
from nbs2i.verify.imagefs import FileFacts, read_image_files
from nbs2i.verify.runtime import SETUPS, RuntimeOptions, runtime_checks, skipped
from nbs2i.verify.static import file_checks, files_wanted, metadata_checks

__all__ = [
    "START_TIMEOUT",
    "ImageUnexaminable",
    "OptionError",
    "VerifyOptions",
    "check_options",
    "verify",
]

# Seconds a server gets to answer, in each runtime setup.
START_TIMEOUT = defaults.VERIFY_TIMEOUT
# How long an interrupted run waits for the filesystem scan to let go.
SCAN_GRACE = 30.0


@dataclass(frozen=True)
class VerifyOptions:
    uid: int | None = None  # None: a random UID, as OpenShift assigns
    runtime: bool = True
    port: int | None = None  # the container port; None: restricted.server_port
    start_timeout: float = START_TIMEOUT
    labels: Mapping[str, str] = field(default_factory=dict)  # put on all we create


def check_options(options: VerifyOptions) -> None:
    """Refuse bad options before anything is asked of the engine."""
    if options.uid is not None:
        try:
            restricted.check_uid(options.uid)
        except Nbs2iError as exc:
            raise OptionError(exc.problem, exc.fix) from exc
    if options.port is not None and not 0 < options.port < 65536:
        raise OptionError(f"--port {options.port} is not a TCP port", "pick one from 1 to 65535")
    if options.start_timeout <= 0:
        raise OptionError("--timeout must be positive", "give the seconds to wait for the server")


class _Sandbox(Sandbox):
    """What one verify run created; the filesystem scan may still be creating."""

    def __init__(self, engine: Docker, extra: Mapping[str, str]) -> None:
        super().__init__(engine, extra, labels.ROLE_VERIFY, labels.VERIFY_RUN)

    def close(self, scan: Future[FileFacts] | None, report: Reporter) -> None:
        with interrupts.deferred():
            report(Event("step", "removing the containers verify created"))
            self.sweep()
            if scan is not None and not scan.done():
                # Interrupted mid-scan: its container is gone, so it ends
                # soon; then sweep what it may have created meanwhile.
                wait([scan], timeout=SCAN_GRACE)
                self.sweep()


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


def _runtime(
    engine: Docker,
    image: str,
    config: ImageConfig,
    options: VerifyOptions,
    uid: int,
    sandbox: _Sandbox,
    report: Reporter,
) -> list[CheckResult]:
    if not options.runtime:
        return skipped("--no-runtime")
    port = options.port or restricted.server_port(config)
    runtime = RuntimeOptions(uid, port, options.start_timeout)
    return runtime_checks(engine, image, config, runtime, sandbox.leftovers, sandbox.labels, report)


def verify(
    engine: Docker, image: str, options: VerifyOptions | None = None, report: Reporter = silent
) -> VerifyReport:
    """Every check of the catalogue on `image`; nothing it created is left."""
    options = options or VerifyOptions()
    check_options(options)
    started = time.monotonic()
    info = inspect_image(engine, image)
    uid = options.uid if options.uid is not None else restricted.random_uid()
    sandbox = _Sandbox(engine, options.labels)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbs2i-verify-files")
    scan: Future[FileFacts] | None = None
    try:
        report(Event("step", f"reading the filesystem of {image}"))
        scan = pool.submit(
            read_image_files,
            engine,
            image,
            want=files_wanted(info.config),
            read=("/etc/passwd",),
            labels=sandbox.labels,
        )
        found = _runtime(engine, image, info.config, options, uid, sandbox, report)
        files = _scanned(scan, image)
    finally:
        sandbox.close(scan, report)
        pool.shutdown(wait=False, cancel_futures=True)
    checks = metadata_checks(info.config, files) + file_checks(info.config, files) + found
    order = {spec.id: i for i, spec in enumerate(CATALOGUE)}
    return VerifyReport(
        image=image,
        image_id=info.id,
        uid=uid if options.runtime else None,
        checks=tuple(sorted(checks, key=lambda c: order[c.id])),
        seconds=round(time.monotonic() - started, 2),
        setups=tuple(s.name for s in SETUPS) if options.runtime else (),
    )
