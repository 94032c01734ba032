"""Deliberately broken images: each fails exactly the checks aimed at it.

Each image is the builder with ONE change, so everything else about it is
good; a full verify (runtime included) must fail what the change breaks and no
other check. Built once per module through the engine seam, tagged with the
session id, removed at the end.
"""

from __future__ import annotations

import io

import pytest

from nbs2i.checks import Status
from nbs2i.engine import Engine
from nbs2i.errors import BuildError
from nbs2i.verify import VerifyOptions, verify
from tests.conftest import SESSION_ID, TEST_LABELS, Tracker
from tests.engine.run_support import builder

# A wrapper that ignores SIGTERM and keeps the server running: tini (without
# -g) signals only its child, this shell, which ignores it.
STUBBORN = r"""printf '%s\n' '#!/bin/sh' "trap '' TERM" '/usr/libexec/s2i/run &' 'wait' \
    > /usr/local/bin/stubborn && chmod 0755 /usr/local/bin/stubborn"""

# name: (Dockerfile lines after FROM, the checks it must fail)
BROKEN: dict[str, tuple[str, frozenset[str]]] = {
    "root-user": ("USER 0", frozenset({"user-not-root"})),
    "named-user": ("USER jovyan", frozenset({"user-numeric"})),
    # No init: a shell-form CMD and no ENTRYPOINT. PID 1 is then /bin/sh, which
    # has no SIGTERM handler, so the kernel drops the TERM a platform sends (it
    # happens to reap, as it waits for any child). The static check sees the
    # cause, the SIGTERM check the effect.
    "shell-cmd": (
        "ENTRYPOINT []\nCMD /usr/libexec/s2i/run",
        frozenset({"init-pid1", "sigterm"}),
    ),
    # No init, exec form: the run script execs the server, so the notebook
    # server itself is PID 1 and never waits for orphans (seed 001's zombies).
    "no-init": (
        'ENTRYPOINT []\nCMD ["/usr/libexec/s2i/run"]',
        frozenset({"init-pid1", "reaps-orphans"}),
    ),
    "home-not-group-writable": (
        "USER 0\nRUN chmod 0755 /home/jovyan\nUSER 1001",
        frozenset({"home-group-writable"}),
    ),
    "setuid": ("USER 0\nRUN chmod 4755 /usr/bin/true\nUSER 1001", frozenset({"no-setuid"})),
    "passwd-writable": (
        "USER 0\nRUN chmod 0664 /etc/passwd\nUSER 1001",
        frozenset({"passwd-not-writable"}),
    ),
    # An empty token (and no password): the server lets anyone in.
    "auth-off": (
        "USER 0\nRUN printf 'c.IdentityProvider.token = \"\"\\n' "
        "> /opt/app-root/venv/etc/jupyter/jupyter_server_config.py\nUSER 1001",
        frozenset({"api-auth"}),
    ),
    # Beyond the list, so that every runtime check has an image that
    # fails it: no nss_wrapper, so a random UID has no name...
    "no-user-name": ('ENV LD_PRELOAD=""', frozenset({"user-named"})),
    # ...and a server whose files are not group-writable.
    "umask-022": (
        "USER 0\nRUN sed -i 's/^umask 0002$/umask 0022/' /usr/libexec/s2i/run\nUSER 1001",
        frozenset({"file-group-writable"}),
    ),
    "ignores-sigterm": (
        f'USER 0\nRUN {STUBBORN}\nUSER 1001\nENTRYPOINT ["tini", "--"]\n'
        'CMD ["/usr/local/bin/stubborn"]',
        frozenset({"sigterm"}),
    ),
}


def build_broken(engine: Engine, base: str, name: str, change: str) -> str:
    tag = f"nbs2i-test/verify-{name}:{SESSION_ID}"
    dockerfile = f"FROM {base}\n{change}\n".encode()
    log = []
    for event in engine.build(fileobj=io.BytesIO(dockerfile), tag=tag, labels=TEST_LABELS):
        if "error" in event:
            raise BuildError(f"building {name} failed: {event['error']}", details="".join(log))
        log.append(str(event.get("stream", "")))
    return tag


@pytest.fixture(scope="module")
def broken_images(
    request: pytest.FixtureRequest, engine: Engine, session_tracker: Tracker
) -> dict[str, str]:
    base = builder(request)
    images = {}
    for name, (change, _aimed) in BROKEN.items():
        images[name] = session_tracker.image(f"nbs2i-test/verify-{name}:{SESSION_ID}")
        build_broken(engine, base, name, change)
    return images


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_fails_exactly_the_aimed_checks(
    name: str, engine: Engine, broken_images: dict[str, str]
) -> None:
    report = verify(engine, broken_images[name], VerifyOptions(labels=TEST_LABELS))
    failed = {c.id for c in report.checks if c.status is Status.FAIL}
    shown = "\n".join(f"  {c.status.value:4} {c.id}: {c.evidence}" for c in report.checks)
    assert failed == BROKEN[name][1], f"{name}:\n{shown}"
    # Nothing required was skipped or warned about either: the rest of the
    # image really is good, and every check ran.
    others = [c for c in report.checks if c.id not in BROKEN[name][1] and c.required]
    assert all(c.status is Status.PASS for c in others), f"{name}:\n{shown}"
    assert not report.ok
