"""Run the `nbs2i` command as a user would: a separate process, its exit code,
stdout and stderr."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

ERROR_PREFIX = "nbs2i: error: "


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The last line of stderr, checked to be one `nbs2i: error: PROBLEM: FIX` line."""
        assert "Traceback" not in self.stderr and "internal error" not in self.stderr, self.stderr
        lines = self.stderr.strip().splitlines()
        assert lines, "nothing on stderr"
        last = lines[-1]
        assert last.startswith(ERROR_PREFIX), self.stderr
        assert ": " in last[len(ERROR_PREFIX) :], f"no fix after the problem: {last}"
        return last


# Cleared for every run: NBS2I_DEBUG so that a traceback would be a bug,
# NBS2I_PASSWORD so that only a test that means to give one does.
CLEARED = ("NBS2I_DEBUG", "NBS2I_PASSWORD")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbs2i", *args]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full_env.update(extra or {})
    return full_env


def nbs2i(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    stdin: str = "",
    cwd: str | os.PathLike[str] | None = None,
) -> Result:
    """`nbs2i ARGS...`, waited for (in `cwd`, when a test gives relative paths)."""
    done = subprocess.run(
        command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment(env),
        timeout=timeout,
        input=stdin,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def fails(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> Result:
    """`nbs2i ARGS...` expected to fail with one error line."""
    result = nbs2i(*args, env=env, timeout=timeout)
    assert result.code != 0, result.stderr
    _ = result.error_line
    return result


class Running:
    """`nbs2i ARGS...` in the background (to signal it, or to read it as it goes):
    its stdout and stderr read by threads, so that waiting for a line is bounded
    in time even when nothing is printed. No terminal on stdin."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environment(env),
        )
        self._lines = {"stdout": queue.Queue[str](), "stderr": queue.Queue[str]()}
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True) for name in self._lines
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in stream:
            self._lines[name].put(line.rstrip("\n"))

    def wait_for(
        self, wanted: str | re.Pattern[str], timeout: float, stream: str = "stderr"
    ) -> str:
        """The first new line of `stream` that contains `wanted` (a string) or matches
        it (a pattern); AssertionError after `timeout` s or when the process ended."""
        deadline = time.monotonic() + timeout
        lines = self._lines[stream]
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and lines.empty():
                    break
                continue
            self.seen[stream].append(line)
            found = wanted in line if isinstance(wanted, str) else wanted.search(line)
            if found:
                return line
        raise AssertionError(f"no {stream} line with {wanted!r} within {timeout} s: {self.seen}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> Result:
        """Wait for the end (killed after `timeout` s); everything it printed."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)
        for name, lines in self._lines.items():
            while not lines.empty():
                self.seen[name].append(lines.get())
        return Result(
            self.proc.returncode, "\n".join(self.seen["stdout"]), "\n".join(self.seen["stderr"])
        )


def interrupt(running: Running, signum: int, timeout: float = 60) -> Result:
    """Send a background nbs2i a signal and wait for it to finish (killed if it
    does not within `timeout`, which fails the caller's exit code check)."""
    running.signal(signum)
    return running.finish(timeout)
