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
