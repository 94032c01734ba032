"""Run the `nbs2i` command as a user would: a separate process, its exit code,
stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
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
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300, stdin: str = ""
) -> Result:
    """`nbs2i ARGS...`, waited for."""
    done = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=environment(env),
        timeout=timeout,
        input=stdin,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def spawn(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`nbs2i ARGS...` in the background (to signal it): pipes for stdout and
    stderr, no terminal on stdin. The caller waits for it or kills it."""
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment(env),
    )


def fails(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> Result:
    """`nbs2i ARGS...` expected to fail with one error line."""
    result = nbs2i(*args, env=env, timeout=timeout)
    assert result.code != 0, result.stderr
    _ = result.error_line
    return result


def interrupt(proc: subprocess.Popen[str], signum: int, timeout: float = 60) -> Result:
    """Send a spawned nbs2i a signal and wait for it to finish (killed if it
    does not within `timeout`, which fails the caller's exit code check)."""
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
    return Result(proc.returncode, out, err)
