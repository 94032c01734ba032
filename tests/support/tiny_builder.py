"""A tiny S2I builder for fast tests of the build flow (seconds, no Python inside).

Built from debian:bookworm-slim: USER 1001, the S2I labels, an ENTRYPOINT to
restore, and POSIX sh scripts that keep the contracts nbs2i relies on:
assemble moves /tmp/src into /opt/app-root/src, installs (records) a
requirements.txt unless the same one is already installed, stops after that in
the `NBS2I_ASSEMBLE_PHASE=deps` phase, restores /tmp/artifacts; save-artifacts
writes a tar of /opt/app-root/cache on stdout. Test knobs (set with -e):
TINY_FAIL=1 fails after 30 lines, TINY_SLEEP=N sleeps, TINY_SHOW=path cats a file,
TINY_NET=1 lists the network interfaces, TINY_FAIL_DEPS=1 fails the deps phase.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nbs2i.engine import Engine
from nbs2i.errors import BuildError

ASSEMBLE = r"""#!/bin/sh
# tiny assemble: move the source into place, fake a dependency install.
set -eu
phase=${NBS2I_ASSEMBLE_PHASE:-all}
echo "assemble: phase=$phase uid=$(id -u) gid=$(id -g)"
if [ -f /tmp/src/requirements.txt ]; then
  sum=$(sha256sum /tmp/src/requirements.txt | cut -d' ' -f1)
  if [ "$(cat /opt/app-root/deps.sha256 2>/dev/null || true)" = "$sum" ]; then
    echo "requirements unchanged: not installing"
  else
    echo "installing requirements"
    cp /tmp/src/requirements.txt /opt/app-root/installed.txt
    echo "$sum" > /opt/app-root/deps.sha256
  fi
fi
if [ "$phase" = deps ] && [ -n "${TINY_FAIL_DEPS:-}" ]; then echo "no deps phase here"; exit 5; fi
if [ "$phase" = deps ]; then rm -rf /tmp/src; exit 0; fi
if [ -n "${TINY_SHOW:-}" ]; then echo "show: $(cat "$TINY_SHOW")"; fi
if [ -n "${TINY_NET:-}" ]; then echo "net: $(ls /sys/class/net | tr '\n' ' ')"; fi
echo "PIP_CERT=${PIP_CERT:-}"
if [ -n "${PIP_CERT:-}" ] && [ -r "$PIP_CERT" ]; then echo "ca bundle readable"; fi
if [ -n "${TINY_FAIL:-}" ]; then
  i=1; while [ $i -le 30 ]; do echo "failing line $i"; i=$((i + 1)); done
  exit 3
fi
if [ -n "${TINY_SLEEP:-}" ]; then echo "sleeping"; sleep "$TINY_SLEEP"; fi
mkdir -p /opt/app-root/cache
if [ -d /tmp/artifacts ] && [ -n "$(ls -A /tmp/artifacts)" ]; then
  echo "restored artifacts: $(ls /tmp/artifacts | tr '\n' ' ')"
  cp -R /tmp/artifacts/. /opt/app-root/cache/
fi
echo "built" > "/opt/app-root/cache/build-$(date +%s%N)"
for f in /tmp/src/* /tmp/src/.[!.]*; do
  if [ -e "$f" ] || [ -L "$f" ]; then mv "$f" /opt/app-root/src/; fi
done
rmdir /tmp/src
echo "assemble done"
"""

RUN = """#!/bin/sh
# tiny run: show what was built.
set -eu
echo "tiny run: $(ls /opt/app-root/src | tr '\\n' ' ')"
"""

SAVE_ARTIFACTS = """#!/bin/sh
# tiny save-artifacts: the cache dir as a tar on stdout.
set -eu
cd /opt/app-root/cache
tar -cf - .
"""

USAGE = """#!/bin/sh
# tiny usage
echo "tiny builder: nbs2i build SOURCE TAG --builder THIS"
"""

DOCKERFILE = """FROM debian:bookworm-slim
COPY bin/ /usr/libexec/s2i/
RUN chmod 755 /usr/libexec/s2i/* && mkdir -p /opt/app-root/src \\
 && chown -R 1001:0 /opt/app-root && chmod -R g=u /opt/app-root
LABEL io.openshift.s2i.scripts-url=image:///usr/libexec/s2i \\
      io.openshift.s2i.destination=/tmp
ENV TINY_BUILDER=1
WORKDIR /opt/app-root/src
USER 1001
ENTRYPOINT ["/usr/bin/env"]
CMD ["/usr/libexec/s2i/run"]
"""

SCRIPTS = {"assemble": ASSEMBLE, "run": RUN, "save-artifacts": SAVE_ARTIFACTS, "usage": USAGE}


def build_image(
    engine: Engine, tag: str, dockerfile: str, labels: Mapping[str, str], with_scripts: bool = True
) -> str:
    """docker build of `dockerfile` (with the tiny scripts in bin/) tagged `tag`."""
    with tempfile.TemporaryDirectory(prefix="nbs2i-tiny-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(dockerfile)
        (ctx / "bin").mkdir()
        if with_scripts:
            for name, text in SCRIPTS.items():
                (ctx / "bin" / name).write_text(text)
        log = []
        for event in engine.build(path=str(ctx), tag=tag, labels=dict(labels)):
            if "error" in event:
                raise BuildError(
                    f"tiny builder build failed: {event['error']}", details="".join(log)
                )
            log.append(str(event.get("stream", "")))
    return tag


def build_tiny_builder(engine: Engine, tag: str, labels: Mapping[str, str]) -> str:
    return build_image(engine, tag, DOCKERFILE, labels)


def derived(engine: Engine, base: str, tag: str, lines: str, labels: Mapping[str, str]) -> str:
    """An image FROM base with extra Dockerfile lines (root user, named user, no label...)."""
    return build_image(engine, tag, f"FROM {base}\n{lines}\n", labels, with_scripts=False)


# -- helpers for the build tests ---------------------------------------------------


def run_in_image(
    engine: Engine,
    image: str,
    cmd: list[str],
    labels: Mapping[str, str],
    user: str | None = None,
    timeout: float = 300,
) -> tuple[int, str]:
    """Run cmd in a throwaway container of image (entrypoint cleared); (exit code, output)."""
    cid = engine.create_container(
        image, entrypoint=[""], command=cmd, user=user or "", labels=dict(labels)
    )
    try:
        out = engine.attach_output(cid)
        engine.start(cid)
        text = b"".join(out).decode("utf-8", "replace")
        return engine.wait(cid, timeout=timeout), text
    finally:
        engine.remove_container(cid)


def git(cwd: Path, *args: str) -> str:
    import subprocess

    env = {
        "GIT_AUTHOR_NAME": "Teacher",
        "GIT_AUTHOR_EMAIL": "teacher@example.org",
        "GIT_COMMITTER_NAME": "Teacher",
        "GIT_COMMITTER_EMAIL": "teacher@example.org",
        "GIT_AUTHOR_DATE": "2024-03-01T10:00:00Z",
        "GIT_COMMITTER_DATE": "2024-03-01T10:00:00Z",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def one_notebook(tmp_path: Path, name: str = "src") -> Path:
    """A source directory holding one empty notebook, a.ipynb."""
    src = tmp_path / name
    src.mkdir()
    (src / "a.ipynb").write_text("{}")
    return src


def make_repo(path: Path, content: Path, subdir: str = "") -> str:
    """A Git repo at path holding a copy of content (under subdir); returns the commit."""
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(content, path / subdir if subdir else path, dirs_exist_ok=True)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Lecture notebooks")
    return git(path, "rev-parse", "HEAD")


class _Stream:
    """A file-like view of an iterator of bytes chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._buf += chunk
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


def find_in_layers(engine: Engine, image: str, needles: Sequence[bytes]) -> list[str]:
    """Every layer entry (of `docker save image`) whose name or content holds a needle.

    Streams the export: layers are read one at a time, never the whole image.
    """
    import tarfile

    hits: list[str] = []
    layers = 0
    with tarfile.open(fileobj=_Stream(engine.export_image(image)), mode="r|") as outer:
        for member in outer:
            if not member.name.endswith("layer.tar"):
                continue
            layers += 1
            data = outer.extractfile(member)
            assert data is not None
            with tarfile.open(fileobj=data, mode="r|") as layer:
                for entry in layer:
                    body = b""
                    if entry.isfile():
                        f = layer.extractfile(entry)
                        body = f.read() if f else b""
                    for needle in needles:
                        if needle in entry.name.encode() or needle in body:
                            hits.append(f"{member.name}:{entry.name}")
    assert layers > 0, f"docker save {image} held no layer"
    return hits
