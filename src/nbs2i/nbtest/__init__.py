"""`nbs2i test IMAGE`: do the course's notebooks run in the image?

The image starts as a student's server would (`restricted.container_spec`: a
random UID with GID 0, read-only root with a tmpfs on /tmp, every capability
dropped, no-new-privileges) with an empty group-0 volume on HOME, as
zero-to-jupyterhub and OpenShift mount a student's storage, and through its
own ENTRYPOINT, which names the UID, seeds HOME with the course and sets the
umask. Its command is the server environment's Python running `driver` (an
argument, never a file in the image): each selected notebook is executed
with nbclient, from its own folder in the seeded copy in HOME, with the
kernel it names from the image's kernelspecs, within its time limit.

The container's output is read as untrusted text (`results`): bounded in
line length and in total, every string cut and escaped. The whole run has a
limit too; past it, or past the output bound, the container is killed.
Everything created carries the run's label and is removed at the end, also
on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from importlib import resources

from nbs2i import interrupts, labels, restricted
from nbs2i.engine import Docker, ImageInfo
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError
from nbs2i.examine import ImageUnexaminable, OptionError, Sandbox, inspect_image
from nbs2i.nbtest.options import NotebookTestOptions, check_options
from nbs2i.nbtest.report import first_failure, progress_line
from nbs2i.nbtest.results import MAX_LINE, MAX_OUTPUT, NotebookReport, Reading, Status
from nbs2i.progress import Event, Reporter, lines, silent
from nbs2i.prune import owned_name

__all__ = [
    "SERVER_PYTHON",
    "NotebookTestOptions",
    "NotebooksFailed",
    "check_options",
    "gate",
    "run_notebooks",
]

# The server environment's Python, which has nbclient; never the course's.
SERVER_PYTHON = "/opt/jupyter/bin/python"
# Seconds the entrypoint (seeding HOME) and the driver's start get beyond the
# whole run's limit before nbs2i kills the container.
START_GRACE = 30.0
# Seconds to wait for the container to exit once its output has ended.
EXIT_WAIT = 15.0


class NotebooksFailed(Nbs2iError):
    """A notebook did not pass (`nbs2i build --test`)."""


@dataclass(frozen=True)
class Ending:
    """How the container's run ended, as nbs2i saw it."""

    exit_code: int | None
    killed_at_limit: bool
    flooded: bool


def driver_command(root: str, options: NotebookTestOptions) -> tuple[str, ...]:
    """The container's command: the driver's source and its configuration as arguments."""
    import json

    source = resources.files("nbs2i.nbtest").joinpath("driver.py").read_text("utf-8")
    config = {
        "root": root,
        "include": list(options.include),
        "skip": list(options.skip),
        "timeout": options.timeout,
        "total": options.total_timeout,
    }
    return (SERVER_PYTHON, "-I", "-c", source, json.dumps(config))


def _bounded(chunks: Iterable[bytes], flooded: list[bool]) -> Iterator[bytes]:
    """The chunks until MAX_OUTPUT bytes have come; then flooded[0] is set."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > MAX_OUTPUT:
            flooded[0] = True
            return
        yield chunk


def _start(
    engine: Docker,
    image: str,
    info: ImageInfo,
    uid: int,
    options: NotebookTestOptions,
    box: Sandbox,
) -> str:
    """The container, started: the image as a student's server, running the driver."""
    from nbs2i.verify.static import image_home, workspace

    home = image_home(info.config)
    spec = restricted.container_spec(
        image,
        uid=uid,
        empty_home=home if restricted.can_mount_home(home) else "",
        labels=box.labels,
        name=owned_name(labels.ROLE_NOTEBOOK_TEST),
    )
    command = driver_command(workspace(info.config), options)
    cid = box.leftovers.container(engine.create_container(replace(spec, command=command, ports=())))
    engine.start(cid)
    return cid


def _follow(
    engine: Docker, cid: str, options: NotebookTestOptions, reading: Reading, report: Reporter
) -> Ending:
    """Feed the container's output to `reading` until it ends, the output bound
    is passed, or the whole run's limit (then the container is killed)."""
    killed: list[bool] = [False]
    flooded: list[bool] = [False]

    def kill(at_limit: bool) -> None:
        killed[0] = at_limit
        with contextlib.suppress(EngineError):
            engine.kill(cid)

    timer = threading.Timer(options.total_timeout + START_GRACE, kill, args=(True,))
    timer.daemon = True
    timer.start()
    try:
        for line in lines(_bounded(engine.follow_logs(cid), flooded), limit=MAX_LINE):
            found = reading.feed(line)
            if found is not None:
                data = {"notebook": found.path, "result": found.status.value}
                report(Event("notebook", progress_line(found), data))
    finally:
        timer.cancel()
    if flooded[0]:
        kill(at_limit=False)
    code = None
    with contextlib.suppress(EngineError):
        code = engine.wait(cid, timeout=EXIT_WAIT)
    return Ending(code, killed[0], flooded[0])


def run_notebooks(
    engine: Docker,
    image: str,
    options: NotebookTestOptions | None = None,
    report: Reporter = silent,
) -> NotebookReport:
    """Run the selected notebooks of `image`; nothing it created is left."""
    options = check_options(options or NotebookTestOptions())
    started = time.monotonic()
    info = inspect_image(engine, image)
    uid = options.uid if options.uid is not None else restricted.random_uid()
    box = Sandbox(engine, options.labels, labels.ROLE_NOTEBOOK_TEST, labels.NOTEBOOK_TEST_RUN)
    reading = Reading()
    try:
        report(Event("step", f"running the notebooks of {image} as UID {uid}:0, read-only"))
        try:
            cid = _start(engine, image, info, uid, options, box)
        except EngineUnavailable:
            raise
        except EngineError as exc:
            raise ImageUnexaminable(
                f"the engine could not start {image}: {exc.problem}",
                exc.fix or "check that `nbs2i run` starts it",
            ) from exc
        ending = _follow(engine, cid, options, reading, report)
    finally:
        with interrupts.deferred():
            report(Event("step", "removing the container nbs2i test created"))
            box.sweep()
    judge_plan(image, reading, ending, options)
    missing, why = missing_result(ending, reading, options)
    return NotebookReport(
        image=image,
        image_id=info.id,
        uid=uid,
        notebook_dir=reading.root,
        home=reading.home,
        notebooks=reading.notebooks(missing, why),
        seconds=round(time.monotonic() - started, 2),
        timeout=options.timeout,
        total_timeout=options.total_timeout,
    )


def judge_plan(image: str, reading: Reading, ending: Ending, options: NotebookTestOptions) -> None:
    """Refuse a run that could not examine the notebooks: exit 2, one line."""
    fix = (
        f"nbs2i test runs the notebooks with {SERVER_PYTHON} (nbclient) after the image's "
        "entrypoint, as an image built by nbs2i has them"
    )
    if not reading.plan_done:
        if reading.fatal:
            raise ImageUnexaminable(f"cannot run the notebooks of {image}: {reading.fatal}", fix)
        if ending.flooded:
            why = f"it printed more than {MAX_OUTPUT // 2**20} MiB"
        elif ending.killed_at_limit:
            why = f"no plan within {options.total_timeout + START_GRACE:g} s"
        else:
            said = f": {reading.last_noise}" if reading.last_noise else ""
            why = f"exit code {ending.exit_code}{said}"
        raise ImageUnexaminable(f"{image} did not report its notebooks ({why})", fix)
    if reading.unmatched:
        patterns = ", ".join(repr(p) for p in reading.unmatched)
        raise OptionError(
            f"no notebook of {image} matches {patterns}",
            f"patterns are relative to {reading.root}: a notebook, a folder or a glob",
        )
    if not reading.planned:
        where = "after --skip" if options.skip else f"in {reading.root}, outside hidden folders"
        raise ImageUnexaminable(
            f"no notebook of {image} to run {where}", "check the image, --include and --skip"
        )


def missing_result(
    ending: Ending, reading: Reading, options: NotebookTestOptions
) -> tuple[Status, str]:
    """What a notebook the run never reported gets."""
    if reading.fatal:
        return Status.ERROR, f"no result: the run stopped: {reading.fatal}"
    if ending.flooded:
        return Status.ERROR, f"no result: the image printed more than {MAX_OUTPUT // 2**20} MiB"
    if ending.killed_at_limit:
        return Status.TIMEOUT, f"the whole run's limit of {options.total_timeout:g} s was reached"
    said = f": {reading.last_noise}" if reading.last_noise else ""
    return Status.ERROR, f"no result: the run ended with exit code {ending.exit_code}{said}"


def gate(
    engine: Docker, tag: str, options: NotebookTestOptions, pushing: bool, report: Reporter
) -> NotebookReport:
    """`nbs2i build --test`: the report when every notebook passed, else
    NotebooksFailed naming the first that did not."""
    found = run_notebooks(engine, tag, options, report)
    if found.ok:
        return found
    kept = "nothing was pushed; " if pushing else ""
    raise NotebooksFailed(
        first_failure(found),
        f"{kept}{tag} is tagged so that you can look into it; "
        f"`nbs2i test {tag}` shows every notebook",
    )
