"""The errors nbs2i shows to a user.

Every failure a user can cause or meet ends as one of these: the CLI prints
`nbs2i: error: <problem>: <fix>` on one line and exits with `exit_code`.
Anything else that escapes is a bug in nbs2i, and the CLI says so.
"""

from __future__ import annotations


class Nbs2iError(Exception):
    """A failure with a one-line message that names the problem and the fix."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "", *, details: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        # Extra lines shown before the one-line error (e.g. the last lines of a
        # failed assemble). Never a traceback.
        self.details = details

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


class EngineUnavailable(Nbs2iError):
    """No Docker engine answers where we looked."""

    exit_code = 2


class EngineError(Nbs2iError):
    """The engine refused a request (bad argument, conflict, server error)."""


class NotFound(EngineError):
    """An image, container or volume that does not exist."""


class SourceError(Nbs2iError):
    """The notebook repository cannot be fetched or read."""


class BuildError(Nbs2iError):
    """A build step failed (assemble, commit, scripts)."""


class SecurityError(Nbs2iError):
    """A refused image: root or named user, outside the allowed UIDs."""


class RunError(Nbs2iError):
    """A server did not start, did not answer, or could not be stopped."""


class UsageError(Nbs2iError):
    """A bad option value or combination."""


class RegistryError(Nbs2iError):
    """A registry refused, failed or could not be reached (credentials, TLS, network)."""


class NeedsEngine(Nbs2iError):
    """The build needs something only an engine can do, and no engine answers."""
