"""The CA bundle that lets pip reach its index through a TLS-intercepting proxy.

One way for every build: the bundle is mounted read-only at CA_DIR/CA_FILE in
the container that runs pip (assemble, or the builder's build stage), and the
variables pip and requests read point at it for that run only. It is never
copied into a layer, never written into the image's ENV.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nbs2i.errors import UsageError

# Where the assemble container finds the bundle (the builder creates the
# directory empty, so mounting on it leaves nothing in the committed layer).
CA_DIR = "/run/nbs2i/ca"
CA_FILE = "ca-bundle.crt"
# The variables that name a bundle, in the order pip and requests look.
CA_ENV = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def default_ca_bundle(env: Mapping[str, str] | None = None) -> Path | None:
    """The bundle named by the first of $PIP_CERT, $REQUESTS_CA_BUNDLE,
    $SSL_CERT_FILE that is set; None when none is. A variable that names no
    file is an error: pip would fail later, less clearly."""
    env = os.environ if env is None else env
    for name in CA_ENV:
        value = env.get(name)
        if value:
            path = Path(value)
            if not path.is_file():
                raise UsageError(
                    f"${name} names {value}, which is not a file",
                    f"fix or unset {name}, or pass --ca-bundle FILE",
                )
            return path
    return None


def check_bundle(path: Path) -> Path:
    """A --ca-bundle that exists and can be read."""
    if not path.is_file():
        raise UsageError(f"--ca-bundle {path} is not a file", "give a PEM bundle file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--ca-bundle {path} is not readable", "check its permissions")
    return path


def environment() -> dict[str, str]:
    """The variables that point pip and requests at the mounted bundle."""
    return {name: f"{CA_DIR}/{CA_FILE}" for name in CA_ENV}
