"""The Kubernetes pod `nbs2i deploy kubernetes` writes, rehearsed on the engine.

The builder image is started with exactly what the generated Deployment tells
a kubelet (tests/support/simulate.py): its UID or a random restricted one,
GID 0, a workspace volume handed to the fsGroup on HOME, a read-only root with
a tmpfs on /tmp, every capability dropped, no privilege escalation, the token
from the Secret. The probe path answers 200 without credentials, within the
startup probe's budget; the API wants the token; the workspace takes a file.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nbs2i import deploy, restricted
from nbs2i.deploy import kubernetes, pod
from nbs2i.engine import Engine
from tests.support import simulate
from tests.support.session import LABELS
from tests.support.tracker import Tracker

TOKEN = "simulated-token-0123456789"
READY_SECONDS = 90.0
# The startup probe's whole budget: the server must be ready well within it.
STARTUP_BUDGET = pod.STARTUP_PERIOD * pod.STARTUP_FAILURES


def auth() -> dict[str, str]:
    return {"Authorization": f"token {TOKEN}"}


@pytest.mark.parametrize("uid", [None, 1000680000], ids=["platform-uid", "uid-in-spec"])
def test_the_generated_pod_runs_on_the_engine(
    engine: Engine, track: Tracker, builder_image: str, tmp_path: Path, uid: int | None
) -> None:
    objects = kubernetes.objects(deploy.options("kubernetes", builder_image, token=TOKEN, uid=uid))
    settings = simulate.settings(objects)
    assert settings.uid == uid
    assert settings.env[pod.TOKEN_KEY] == TOKEN
    run_as = settings.uid if settings.uid is not None else restricted.random_uid()
    volume = simulate.workspace(tmp_path / "claim", settings.fs_group)
    spec = simulate.container_spec(builder_image, settings, volume, run_as, LABELS)
    assert spec.user == f"{run_as}:{restricted.GID}"
    assert spec.read_only and spec.tmpfs == (restricted.scratch(),)

    container, port = simulate.start(engine, spec, track)
    ready = restricted.wait_ready(
        engine, container, port, timeout=READY_SECONDS, path=settings.probe_path
    )
    assert ready.ready, f"{ready}\n{engine.logs(container, tail=30)}"
    assert ready.seconds < STARTUP_BUDGET

    # The probe needs no credentials; everything else does.
    assert restricted.http_status(port, settings.probe_path) == 200
    assert restricted.http_status(port, "/api/contents") == 403
    assert restricted.http_status(port, "/api/contents", auth()) == 200

    # The workspace: a file written through Jupyter lands on the volume, owned
    # by the UID, in the fsGroup, group-writable for the next UID.
    body = json.dumps({"type": "file", "format": "text", "content": "kept\n"}).encode()
    answer = restricted.http_request(
        port,
        "/api/contents/from-the-cluster.txt",
        method="PUT",
        headers={**auth(), "Content-Type": "application/json"},
        body=body,
    )
    assert answer.status == 201, answer.body[:300]
    written = volume / "from-the-cluster.txt"
    assert written.read_text() == "kept\n"
    info = written.stat()
    assert (info.st_uid, info.st_gid) == (run_as, settings.fs_group)
    assert info.st_mode & stat.S_IWGRP

    # A read-only root: only the volume and /tmp take writes.
    denied = engine.exec(container, ["sh", "-c", "touch /opt/app-root/nbs2i-probe"])
    assert denied.exit_code != 0
    allowed = engine.exec(container, ["sh", "-c", f"touch {restricted.TMP}/nbs2i-probe"])
    assert allowed.exit_code == 0, allowed.output


def test_what_the_rehearsal_cannot_reproduce_is_refused(builder_image: str, tmp_path: Path) -> None:
    objects = kubernetes.objects(deploy.options("kubernetes", builder_image, token=TOKEN))
    settings = simulate.settings(objects)
    other_group = simulate.PodSettings(**{**settings.__dict__, "fs_group": 100})
    with pytest.raises(simulate.CannotSimulate, match="fsGroup"):
        simulate.container_spec(builder_image, other_group, tmp_path, 1000680000, LABELS)
    writable_root = simulate.PodSettings(**{**settings.__dict__, "read_only": False})
    with pytest.raises(simulate.CannotSimulate, match="read-only"):
        simulate.container_spec(builder_image, writable_root, tmp_path, 1000680000, LABELS)
