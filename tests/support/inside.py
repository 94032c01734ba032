"""Looking inside images the tests built: run a command in one, read its layers."""

from __future__ import annotations

from nbs2i.cleanup import Leftovers
from nbs2i.engine import ContainerSpec, Docker
from tests.support.session import LABELS


def run_to_end(engine: Docker, spec: ContainerSpec, timeout: float) -> tuple[int, str]:
    """Run a throwaway container to its end; (exit code, output). Removed after."""
    leftovers = Leftovers(engine)
    try:
        cid = leftovers.container(engine.create_container(spec))
        out = engine.attach(cid)
        engine.start(cid)
        text = b"".join(out).decode("utf-8", "replace")
        return engine.wait(cid, timeout=timeout), text
    finally:
        leftovers.remove_all()


def run_in_image(
    engine: Docker, image: str, cmd: list[str], user: str = "", timeout: float = 300
) -> tuple[int, str]:
    """Run cmd in a throwaway container of image (entrypoint cleared); (exit code, output)."""
    spec = ContainerSpec(image, command=tuple(cmd), entrypoint=(), user=user, labels=LABELS)
    return run_to_end(engine, spec, timeout)


def run_restricted(
    engine: Docker, image: str, cmd: list[str], uid: int, timeout: float = 600
) -> tuple[int, str]:
    """Run cmd as a restricted platform would (the image's ENTRYPOINT kept, a UID
    with GID 0, read-only root, tmpfs /tmp, no capabilities); (exit code, output)."""
    from dataclasses import replace

    from nbs2i import restricted

    spec = replace(
        restricted.container_spec(image, uid=uid, labels=LABELS), command=tuple(cmd), ports=()
    )
    return run_to_end(engine, spec, timeout)
