"""A notebook image from a builder, for tests that need lectures in an image.

`s2i_build()` is the S2I contract done by hand through the engine seam, the
way upstream `s2i build` does it: a container of the builder runs its assemble
(as the assemble user, sources in `<destination>/src`, the CA bundle mounted
read-only where assemble looks for it), and is committed with the builder's
config and CMD = the run script. It needs nothing from nbs2i's build package,
so these tests do not depend on its state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from nbs2i.engine import ContainerSpec, Docker, Mount
from nbs2i.errors import Nbs2iError
from tests.support.session import LABELS

SAMPLES = Path(__file__).resolve().parents[2] / "sample-notebooks"
LECTURES = (
    "01-python-basics.ipynb",
    "02-reading-a-csv.ipynb",
    "03-plotting.ipynb",
    "04-random-walks.ipynb",
)
# Where the builder's assemble reads a CA bundle from during the build only.
CA_MOUNT = "/run/nbs2i/ca"
CA_NAME = "ca-bundle.crt"
ASSEMBLE_SECONDS = 900


class S2IBuildError(AssertionError):
    pass


def _source_tar(source: Path, uid: int) -> bytes:
    """source/ as `src/`, owned by the assemble user and group 0, g=u."""
    buffer = io.BytesIO()

    def own(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, 0, "", ""
        info.mode |= (info.mode & 0o700) >> 3
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(source), arcname="src", filter=own)
    return buffer.getvalue()


def _scripts_path(url: str) -> str:
    if not url.startswith("image://"):
        raise S2IBuildError(f"scripts-url {url!r}: only image:// scripts are supported here")
    return url[len("image://") :]


def s2i_build(
    engine: Docker, builder: str, source: Path, ref: str, ca_bundle: Path | None = None
) -> str:
    """Build `source` with `builder` into `ref` (labelled with the session's
    labels); the reference. The assemble container is removed either way."""
    config = engine.inspect_image(builder).config
    dest = config.labels.get("io.openshift.s2i.destination", "/tmp")
    scripts = _scripts_path(config.labels["io.openshift.s2i.scripts-url"])
    user = config.labels.get("io.openshift.s2i.assemble-user") or config.user
    ca_dir = Path(tempfile.mkdtemp(prefix="nbs2i-ca-"))
    cid = ""
    try:
        mounts: tuple[Mount, ...] = ()
        if ca_bundle is not None:
            shutil.copyfile(ca_bundle, ca_dir / CA_NAME)
            os.chmod(ca_dir, 0o755)
            os.chmod(ca_dir / CA_NAME, 0o644)
            mounts = (Mount(str(ca_dir), CA_MOUNT, read_only=True),)
        cid = engine.create_container(
            ContainerSpec(
                image=builder,
                command=(f"{scripts}/assemble",),
                user=user,
                labels=LABELS,
                mounts=mounts,
            )
        )
        engine.put_archive(cid, dest, _source_tar(source, int(user.split(":")[0])))
        engine.start(cid)
        code = engine.wait(cid, timeout=ASSEMBLE_SECONDS)
        if code != 0:
            raise S2IBuildError(f"assemble exited {code}:\n{engine.logs(cid, tail=40)}")
        committed = dataclasses.replace(
            config, cmd=(f"{scripts}/run",), labels={**config.labels, **LABELS}
        )
        engine.commit(cid, ref, committed, f"s2i build of {source.name}")
    finally:
        if cid:
            with contextlib.suppress(Nbs2iError):
                engine.remove_container(cid)
        shutil.rmtree(ca_dir, ignore_errors=True)
    return ref


def notebooks_only(tmp: Path) -> Path:
    """The sample lectures without requirements.txt: assemble has only files to
    move, so the build takes seconds (the notebooks need not run here)."""
    target = tmp / "lectures"
    shutil.copytree(SAMPLES, target, ignore=shutil.ignore_patterns("requirements.txt"))
    return target
