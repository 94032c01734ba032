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

from nbs2i.engine import Docker
from tests.support.images import build_dockerfile

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


def build_tiny_builder(engine: Docker, tag: str) -> str:
    files = {f"bin/{name}": text.encode() for name, text in SCRIPTS.items()}
    return build_dockerfile(engine, tag, DOCKERFILE, files)
