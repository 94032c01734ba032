"""The demo's last step, seen through a real browser.

Starts the sample build the way scripts/demo does (`nbs2i run TAG --detach
--name ...`), opens the printed URL in headless Chromium (Debian's `chromium`;
`make browser` installs it) and checks that JupyterLab's file browser lists
the lecture notebooks. The screenshot is kept in test-artifacts/ (gitignored).

Chromium is fenced in: no proxy, no background or component traffic, and every
host name resolves to nothing except 127.0.0.1, so it can reach only our server.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.builds import LECTURES
from tests.support.cli import nbs2i
from tests.support.session import label_args
from tests.support.tracker import Tracker

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "demo-jupyterlab.png"
# A headless window of a fixed size, plus the fences described above.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1280,800",
    # JupyterLab loads its file listing asynchronously; virtual time waits for it.
    "--virtual-time-budget=20000",
)
LISTING = re.compile(r'class="jp-DirListing-itemText"[^>]*><span>([^<]+)</span>')


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make browser`", pytrace=False)
    return path


def browse(url: str, *action: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="nbs2i-chromium-") as profile:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


def test_jupyterlab_shows_the_lecture_notebooks(sample_build: Any, track: Tracker) -> None:
    name = track.container(f"nbs2i-test-browser-{uuid.uuid4().hex[:8]}")
    # The demo's run line, on any free port, with the test labels.
    started = nbs2i(
        "run",
        sample_build.tag,
        "--detach",
        "--name",
        name,
        "--port",
        "0",
        *label_args(),
        timeout=180,
    )
    assert started.code == 0, started.stderr
    url = started.stdout.splitlines()[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/lab\?token=[0-9a-f]{48}", url), url

    dom = browse(url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = {html.unescape(n) for n in LISTING.findall(dom.stdout)}
    assert set(LECTURES) <= shown, sorted(shown)

    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = browse(url, f"--screenshot={SCREENSHOT}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert SCREENSHOT.stat().st_size > 10_000  # a rendered page, not a blank one

    stop = nbs2i("stop", name, timeout=60)
    assert stop.code == 0, stop.stderr
