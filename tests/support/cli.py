"""Run the `nbs2i` command as a user would: a separate process, its exit code,
stdout and stderr."""

from __future__ import annotations

import os
import queue
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


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbs2i", *args]


def nbs2i(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300, stdin: str = ""
) -> Result:
    """`nbs2i ARGS...`; NBS2I_DEBUG is cleared so that a traceback would be a bug."""
    full_env = {k: v for k, v in os.environ.items() if k != "NBS2I_DEBUG"}
    full_env.update(env or {})
    done = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=full_env,
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
    """`nbs2i ARGS...` running in the background; its stderr read by a thread, so
    that waiting for a line is bounded in time even when nothing is printed."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k != "NBS2I_DEBUG"}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._stdout: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.extend(self.proc.stdout)

    def wait_for(self, wanted: str, timeout: float) -> None:
        """Until a stderr line contains `wanted`; AssertionError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if wanted in line:
                return
        raise AssertionError(f"no line with {wanted!r} within {timeout} s: {self.seen}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> Result:
        """Wait for the end (killed after `timeout` s); what it printed."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return Result(self.proc.returncode, "".join(self._stdout), "\n".join(self.seen))
