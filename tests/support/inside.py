"""Looking inside images the tests built: run a command in one, read its layers."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator, Sequence

from nbs2i.archive import readable
from nbs2i.engine import ContainerSpec, Docker, Leftovers
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


def layers(engine: Docker, image: str) -> Iterator[tuple[str, tarfile.TarFile]]:
    """(name, open tar) of each layer of `docker save image`, one at a time."""
    stream = readable(engine.export_image(image))
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                data = outer.extractfile(member)
                if data is not None:
                    with tarfile.open(fileobj=data, mode="r|") as layer:
                        yield member.name, layer


def find_in_layers(engine: Docker, image: str, needles: Sequence[bytes]) -> list[str]:
    """Every layer entry whose name or content holds a needle."""
    hits: list[str] = []
    count = 0
    for name, layer in layers(engine, image):
        count += 1
        for entry in layer:
            body = b""
            if entry.isfile():
                handle = layer.extractfile(entry)
                body = handle.read() if handle else b""
            hits += [
                f"{name}:{entry.name}" for n in needles if n in entry.name.encode() or n in body
            ]
    assert count > 0, f"docker save {image} held no layer"
    return hits


class _Hashing(io.RawIOBase):
    """Reads through to `inner`, hashing what passes."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(target))
        self.digest.update(data)
        target[: len(data)] = data
        return len(data)


def top_layer(engine: Docker, image: str) -> list[tarfile.TarInfo]:
    """The entries of the image's newest layer (found by its diff id)."""
    wanted = engine.inspect_image(image).layers[-1]
    stream = readable(engine.export_image(image))
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            data = outer.extractfile(member)
            if data is None or not member.name.endswith("layer.tar"):
                continue
            hashing = _Hashing(data)  # type: ignore[arg-type]
            with tarfile.open(fileobj=io.BufferedReader(hashing), mode="r|") as layer:
                entries = list(layer)
            hashing.read()  # the rest of the member (end blocks) counts too
            if f"sha256:{hashing.digest.hexdigest()}" == wanted:
                return entries
    raise AssertionError(f"no layer of {image} has the diff id {wanted}")


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
