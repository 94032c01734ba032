"""A push to a real registry, and the image back from it by digest.

A registry (Debian's docker-registry) runs on 127.0.0.1 for this test only.
An image that exists nowhere else is pushed with nbs2i.registry.push, removed
from the engine, and pulled back by the pinned reference the push returned:
the same image, and the digest the registry itself reports.
"""

from __future__ import annotations

import io
import tarfile
import uuid

from nbs2i import registry as image_registry
from nbs2i.engine import BuildSpec, Engine
from tests.support import registry
from tests.support.session import LABELS, SESSION_ID
from tests.support.tracker import Tracker

BASE = "debian:bookworm-slim"


def unique_image(engine: Engine, track: Tracker, ref: str) -> str:
    """A small image with a layer of its own, so a pull has to fetch it."""
    dockerfile = f"FROM {BASE}\nRUN echo {SESSION_ID}-{uuid.uuid4().hex} > /nbs2i-push-test\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    track.image(ref)
    image_id = ""
    errors = []
    for event in engine.build(BuildSpec(context=buffer.getvalue(), tag=ref, labels=LABELS)):
        image_id = event.image_id or image_id
        if event.error:
            errors.append(event.error)
    assert not errors, errors
    return engine.inspect_image(ref).id


def test_push_remove_pull_by_digest(engine: Engine, track: Tracker) -> None:
    with registry.running() as reg:
        repository = f"{reg.host}/nbs2i-test/push-{SESSION_ID}"
        ref = f"{repository}:v1"
        image_id = unique_image(engine, track, ref)

        pinned = track.image(image_registry.push(engine, ref))
        digest = image_registry.ImageRef.parse(pinned).digest
        assert pinned == f"{repository}@{digest}"
        assert reg.manifest_digest(f"nbs2i-test/push-{SESSION_ID}", "v1") == digest

        engine.remove_image(ref, force=True)
        assert not engine.image_exists(ref)
        assert not engine.image_exists(image_id)

        engine.pull(pinned)
        assert engine.inspect_image(pinned).id == image_id
        engine.pull(ref)
        assert engine.inspect_image(ref).id == image_id
    assert not reg.root.exists()
