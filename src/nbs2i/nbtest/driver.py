"""Runs the course's notebooks inside the image under test; prints one record a line.

`nbs2i test` passes this file's text as an argument, never writes it into the
image: the image's ENTRYPOINT does the platform setup (a name for the UID,
HOME seeded with the course, umask) and then starts
`/opt/jupyter/bin/python -I -c SOURCE CONFIG`, the server environment's
Python, isolated so that no file of the course or of HOME shadows a module.
Only the standard library and what every Jupyter server environment has
(nbformat, nbclient, jupyter_client) are used; nbs2i imports this module for
the names the two sides share and for the pure selection rules.

Protocol, on the container's stdout: lines `RECORD_PREFIX + JSON object`,
small and written whole:

- {"kind": "notebook", "path": P}  for each selected notebook, in run order;
- {"kind": "unmatched", "pattern": G}  for each --include that matched none;
- {"kind": "planned", "count": N, "root": DIR, "home": DIR}  the plan is complete;
- {"kind": "result", "path": P, "status": S, "seconds": T, ...}  one per notebook,
  as it ends: "pass"; "fail" with "cell" (counted from 1, markdown included),
  "source" (the cell's first line) and "error" ("ename: evalue"); "timeout"
  with the cell that was running; "error" when it could not start;
- {"kind": "done"}, or {"kind": "fatal", "error": E} when nothing can run.

Everything else the process and its kernels print goes to a pipe whose last
bytes say why a kernel died; nothing of it reaches stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import sys
import threading
import time
from typing import Any

RECORD_PREFIX = "nbs2i-test-record "
# More selected notebooks than this is refused: select some with --include.
MAX_NOTEBOOKS = 1000
# The longest pattern, notebook path, excerpt and error line a record carries.
MAX_PATTERN = 512
MAX_PATH = 1024
MAX_SOURCE = 80
MAX_ERROR = 400
# How much of the kernels' last output is kept to explain a death.
TAIL_BYTES = 4096
# Seconds a killed kernel's clean-up may take before the next notebook starts.
STOP_GRACE = 10.0
NOTEBOOK_SUFFIX = ".ipynb"
PASS, FAIL, TIMEOUT, ERROR = "pass", "fail", "timeout", "error"


# -- which notebooks: pure, shared with nbs2i ---------------------------------------


def clean_pattern(pattern: str) -> str:
    """A pattern as given on the command line, relative to the course: "./"
    and trailing "/" dropped."""
    text = pattern.strip()
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/")


def hidden(path: str) -> bool:
    """In a folder Jupyter hides (.ipynb_checkpoints, .git, ...), or hidden itself."""
    return any(part.startswith(".") for part in path.split("/"))


def matches(path: str, pattern: str) -> bool:
    """The notebook, or one of its folders, matches the glob (`*` crosses `/`)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def select(paths: list[str], include: list[str], skip: list[str]) -> tuple[list[str], list[str]]:
    """(the notebooks to run, sorted; the include patterns that matched none).
    No include pattern: every notebook; a skip pattern wins over an include."""
    chosen = [
        p
        for p in sorted(paths)
        if p.endswith(NOTEBOOK_SUFFIX)
        and not hidden(p)
        and (not include or any(matches(p, g) for g in include))
        and not any(matches(p, g) for g in skip)
    ]
    unmatched = [g for g in include if not any(matches(p, g) for p in paths if not hidden(p))]
    return chosen, unmatched


def first_line(source: str) -> str:
    """The first non-blank line of a cell, as the report quotes it."""
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:MAX_SOURCE]
    return ""


# -- inside the image ---------------------------------------------------------------


class Output:
    """The records on the real stdout; everything else (this process's and its
    kernels' prints) into a pipe whose last bytes are kept."""

    def __init__(self) -> None:
        self.fd = os.dup(1)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self._tail = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, args=(read,), daemon=True).start()

    def _drain(self, fd: int) -> None:
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            with self._lock:
                self._tail += data
                del self._tail[:-TAIL_BYTES]

    def record(self, kind: str, **fields: object) -> None:
        line = RECORD_PREFIX + json.dumps({"kind": kind, **fields}, ensure_ascii=True) + "\n"
        data = line.encode("ascii")
        while data:
            data = data[os.write(self.fd, data) :]

    def restart(self) -> None:
        with self._lock:
            self._tail.clear()

    def last_line(self) -> str:
        with self._lock:
            text = self._tail.decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:MAX_ERROR] if lines else ""


def find_notebooks(root: str) -> list[str]:
    """Every notebook under root outside hidden folders, relative, with "/"."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for name in files:
            if name.endswith(NOTEBOOK_SUFFIX) and not name.startswith("."):
                path = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if os.path.isfile(os.path.join(folder, name)):
                    found.append(path)
    return found


def where(rel: str, root: str, home: str) -> str:
    """The copy a student's server opens: the one seeded into HOME, else the
    course's own (an image that does not seed, or whose course is HOME)."""
    seeded = os.path.join(home, rel)
    return seeded if home and os.path.isfile(seeded) else os.path.join(root, rel)


def outcome(started: float, **fields: object) -> dict[str, object]:
    return {**fields, "seconds": round(time.monotonic() - started, 2)}


def cell_fields(nb: Any, index: int | None) -> dict[str, object]:
    if index is None:
        return {}
    cells = nb.cells
    source = cells[index].get("source", "") if index < len(cells) else ""
    return {"cell": index + 1, "source": first_line(str(source))}


async def stop(client: Any, task: asyncio.Future[Any]) -> None:
    """Kill the kernel at once, then let nbclient's clean-up finish (bounded)."""
    km = client.km
    if km is not None:
        with contextlib.suppress(Exception):  # already dead or dying: that is the goal
            await asyncio.wait_for(km.shutdown_kernel(now=True), STOP_GRACE)
    task.cancel()
    await asyncio.wait({task}, timeout=STOP_GRACE)


def failure(nb: Any, exc: BaseException, index: int | None, out: Output) -> dict[str, object]:
    """What a notebook that ended with `exc` reports: the cell that ran, and why."""
    from jupyter_client.kernelspec import (  # type: ignore[import-not-found, unused-ignore]
        KernelSpecManager,
        NoSuchKernel,
    )
    from nbclient.exceptions import (  # type: ignore[import-not-found, unused-ignore]
        CellExecutionError,
        DeadKernelError,
    )

    if isinstance(exc, CellExecutionError):
        error = f"{exc.ename}: {exc.evalue}" if exc.ename else str(exc).strip().splitlines()[-1]
        return {"status": FAIL, "error": error[:MAX_ERROR], **cell_fields(nb, index)}
    if isinstance(exc, NoSuchKernel):
        have = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        return {"status": ERROR, "error": f"no kernel named {exc.name!r} (the image has: {have})"}
    why = "the kernel died" if isinstance(exc, DeadKernelError) else f"{type(exc).__name__}: {exc}"
    said = out.last_line()
    error = f"{why}: {said}" if said else why
    status = FAIL if index is not None else ERROR
    return {"status": status, "error": error[:MAX_ERROR], **cell_fields(nb, index)}


async def run_notebook(path: str, limit: float, why_limit: str, out: Output) -> dict[str, object]:
    """Execute one notebook from its own folder with the kernel it names."""
    import nbformat  # type: ignore[import-not-found, unused-ignore]
    from nbclient import NotebookClient  # type: ignore[import-not-found, unused-ignore]

    started = time.monotonic()
    out.restart()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        why = f"not a notebook nbformat reads: {exc}"[:MAX_ERROR]
        return outcome(started, status=ERROR, error=why)
    current: list[int | None] = [None]

    def on_cell_execute(cell: Any, cell_index: int) -> None:
        current[0] = cell_index

    client = NotebookClient(
        nb,
        timeout=None,
        startup_timeout=max(1, int(min(limit, 60))),
        shutdown_kernel="immediate",
        resources={"metadata": {"path": os.path.dirname(path)}},
        on_cell_execute=on_cell_execute,
    )
    task = asyncio.ensure_future(client.async_execute())
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        await stop(client, task)
        starting = " (the kernel was still starting)" if current[0] is None else ""
        why = f"{why_limit}{starting}; the kernel was killed"
        return outcome(started, status=TIMEOUT, error=why, **cell_fields(nb, current[0]))
    error = task.exception()
    if error is None:
        return outcome(started, status=PASS)
    return outcome(started, **failure(nb, error, current[0], out))


async def run_all(config: dict[str, Any], out: Output) -> None:
    import nbclient  # type: ignore[import-not-found, unused-ignore]  # noqa: F401 - missing: fatal, once

    root = os.path.abspath(str(config["root"]))
    home = os.environ.get("HOME", "")
    include = [str(g) for g in config.get("include") or []]
    skip = [str(g) for g in config.get("skip") or []]
    if not os.path.isdir(root):
        out.record("fatal", error=f"{root} is not a directory in the image")
        return
    chosen, unmatched = select(find_notebooks(root), include, skip)
    if len(chosen) > MAX_NOTEBOOKS:
        out.record("fatal", error=f"{len(chosen)} notebooks: more than {MAX_NOTEBOOKS}")
        return
    chosen = [path[:MAX_PATH] for path in chosen]
    for path in chosen:
        out.record("notebook", path=path)
    for pattern in unmatched:
        out.record("unmatched", pattern=pattern[:MAX_PATTERN])
    out.record("planned", count=len(chosen), root=root, home=home)
    if unmatched:
        return
    timeout, total = float(config["timeout"]), float(config["total"])
    deadline = time.monotonic() + total
    for rel in chosen:
        left = deadline - time.monotonic()
        if left <= 0:
            why = f"not started: the whole run's limit of {total:g} s was reached"
            out.record("result", path=rel, status=TIMEOUT, seconds=0.0, error=why)
            continue
        if left < timeout:
            limit, why = left, f"the whole run's limit of {total:g} s was reached"
        else:
            limit, why = timeout, f"no end within {timeout:g} s"
        path = where(rel, root, home)
        found = await run_notebook(path, limit, why, out)
        out.record("result", path=rel, ran_in=os.path.dirname(path), **found)
    out.record("done")


def main() -> None:
    out = Output()
    try:
        config = json.loads(sys.argv[1])
        asyncio.run(run_all(config, out))
    except BaseException as exc:  # one record, whatever went wrong
        out.record("fatal", error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR])
        sys.exit(3)
    sys.exit(0)


if __name__ == "__main__":
    main()
