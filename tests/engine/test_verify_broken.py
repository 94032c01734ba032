"""Deliberately broken images: each fails exactly the checks aimed at it.

Each image is the builder with ONE change, so everything else about it is
good; a full verify (both runtime runs included) must fail what the change
breaks and no other check. Built once per module through the engine seam,
tagged with the session id, removed at the end; verified a few at a time.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait

import pytest

from nbs2i.engine import Engine
from nbs2i.verify import VerifyOptions, verify
from nbs2i.verify.checks import Status, VerifyReport
from tests.support.images import derived
from tests.support.session import LABELS, tag
from tests.support.tracker import Tracker


def wrapper(path: str, *lines: str) -> str:
    """A RUN line (as root) that writes an executable sh script at path."""
    quoted = " ".join("'" + line.replace("'", "'\"'\"'") + "'" for line in ("#!/bin/sh", *lines))
    return f"USER 0\nRUN printf '%s\\n' {quoted} > {path} && chmod 0755 {path}\nUSER 1001"


# A wrapper that ignores SIGTERM and keeps the server running: tini (without
# -g) signals only its child, this shell, which ignores it.
STUBBORN = wrapper("/usr/local/bin/stubborn", "trap '' TERM", "/usr/libexec/s2i/run &", "wait")
# repo2docker's image under a plain restricted run (measured): the server
# writes under the image's HOME at start, which a read-only root refuses
# ("Read-only file system: '/home/jovyan/.local'"). With a volume it works.
NEEDS_WRITABLE_HOME = wrapper(
    "/usr/local/bin/start",
    "set -e",
    "python3 -c 'import os; os.makedirs(os.path.expanduser(\"~/.local/share\"), exist_ok=True)'",
    "exec /usr/libexec/s2i/run",
)
# The opposite: it needs a file the image put in HOME, which an empty volume
# on HOME hides. Without a volume it works.
NEEDS_IMAGE_HOME = wrapper(
    "/usr/local/bin/start",
    'test -e "$HOME/.course" || { echo "start: $HOME/.course is missing" >&2; exit 3; }',
    "exec /usr/libexec/s2i/run",
)

# name: (Dockerfile lines after FROM, the checks it must fail)
# Like an image without nbs2i's platform setup (repo2docker's): HOME stays what
# the image says, however the platform mounts it.
WITHOUT_SETUP = 'ENTRYPOINT ["tini", "-g", "--"]'
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
    # What `s2i build --inject pip.conf:/etc` leaves: an emptied file anyone may rewrite.
    "world-writable-file": (
        "USER 0\nRUN : > /etc/pip.conf && chmod 0666 /etc/pip.conf\nUSER 1001",
        frozenset({"no-world-writable"}),
    ),
    # An empty token (and no password), in the server environment's own
    # configuration: the server lets anyone in.
    "auth-off": (
        "USER 0\nRUN mkdir -p /opt/jupyter/etc/jupyter && "
        "printf 'c.IdentityProvider.token = \"\"\\n' "
        "> /opt/jupyter/etc/jupyter/jupyter_server_config.py\nUSER 1001",
        frozenset({"api-auth"}),
    ),
    # Configuration from where the course's files are: it could switch the
    # login off (the run script drops the name, so the server stays locked).
    "env-config-path": (
        "ENV JUPYTER_CONFIG_PATH=/opt/app-root/src/conf",
        frozenset({"env-server"}),
    ),
    # A hand-written image (no isolated server Python) whose server would
    # import from the students' HOME.
    "env-pythonpath-in-home": (
        'LABEL io.nbs2i.server-python=""\nENV PYTHONPATH=/home/jovyan/lib',
        frozenset({"env-server"}),
    ),
    # No nss_wrapper, so a random UID has no name.
    "no-user-name": ('ENV LD_PRELOAD=""', frozenset({"user-named"})),
    # A server whose files are not group-writable.
    "umask-022": (
        "USER 0\nRUN sed -i 's/umask 0002$/umask 0022/' "
        "/usr/libexec/s2i/run /usr/libexec/s2i/profile\nUSER 1001",
        frozenset({"file-group-writable"}),
    ),
    "ignores-sigterm": (
        f'{STUBBORN}\nENTRYPOINT ["tini", "--"]\nCMD ["/usr/local/bin/stubborn"]',
        frozenset({"sigterm"}),
    ),
    # Breaks only in a bare pod (no volume): caught by that run alone.
    "needs-writable-home": (
        f'{NEEDS_WRITABLE_HOME}\n{WITHOUT_SETUP}\nCMD ["/usr/local/bin/start"]',
        frozenset({"starts", "home-writable"}),
    ),
    # Breaks only with an empty volume on HOME: caught by that run alone.
    "needs-image-home": (
        f"{NEEDS_IMAGE_HOME}\nUSER 0\nRUN touch /home/jovyan/.course\nUSER 1001\n"
        f'{WITHOUT_SETUP}\nCMD ["/usr/local/bin/start"]',
        frozenset({"starts"}),
    ),
}
# Which runtime setup each of these must fail in (the other one passes).
ONE_SETUP = {"needs-writable-home": "no volume", "needs-image-home": "volume on HOME"}


@pytest.fixture(scope="module")
def broken_images(engine: Engine, session_tracker: Tracker, builder_image: str) -> dict[str, str]:
    images = {}
    for name, (change, _aimed) in BROKEN.items():
        images[name] = session_tracker.image(tag(f"verify-{name}"))
        derived(engine, builder_image, images[name], change)
    return images


# Verifies that run at once: each mostly waits for servers to start and stop
# (the SIGTERM checks wait out their 10 s), so a few at a time take a fraction
# of the time one after another does, on two cores.
AT_ONCE = 4


@pytest.fixture(scope="module")
def reports(engine: Engine, broken_images: dict[str, str]) -> dict[str, Future[VerifyReport]]:
    """Every broken image verified, a few at a time; each test reads its own."""
    with ThreadPoolExecutor(AT_ONCE) as pool:
        found = {
            name: pool.submit(verify, engine, image, VerifyOptions(labels=LABELS))
            for name, image in broken_images.items()
        }
        wait(found.values())
    return found


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_fails_exactly_the_aimed_checks(
    name: str, reports: dict[str, Future[VerifyReport]]
) -> None:
    report = reports[name].result()
    failed = {c.id for c in report.checks if c.status is Status.FAIL}
    shown = "\n".join(f"  {c.status.value:4} {c.id}: {c.evidence}" for c in report.checks)
    assert failed == BROKEN[name][1], f"{name}:\n{shown}"
    # Nothing required was skipped or warned about either: the rest of the
    # image really is good, and every check ran (in at least one setup).
    others = [c for c in report.checks if c.id not in BROKEN[name][1] and c.required]
    assert all(c.status is Status.PASS for c in others), f"{name}:\n{shown}"
    assert not report.ok
    if name in ONE_SETUP:
        starts = report.get("starts")
        failing = [p.setup for p in starts.parts if p.status is Status.FAIL]
        assert failing == [ONE_SETUP[name]], f"{name}:\n{shown}"
    if name == "needs-writable-home":
        # The server died; its log says why, and the verdict says where.
        home = report.get("home-writable").evidence
        assert home.startswith("no volume: the server died writing under HOME /home/jovyan")
        assert "Read-only file system: '/home/jovyan/.local'" in home
