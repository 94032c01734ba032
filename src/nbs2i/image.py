"""Image metadata: the labels a build writes, the config it commits, the user check.

Labels: all of upstream s2i's output labels (`io.openshift.s2i.build.*`,
`io.k8s.display-name`), so `s2i rebuild` and OpenShift consoles read our
images, plus the OCI ones (`org.opencontainers.image.source/.revision/.created`).
The image describes itself, not its builder: the builder's title, tags,
version and descriptions are replaced; its S2I labels (scripts, destination)
stay, so the image can be built upon (`--incremental`, `s2i rebuild`). Only
non-empty values are set. `.created` is the commit time, not the wall clock,
so building the same commit twice gives the same labels. Credentials in a
source URL never reach a label.

User check (`--allowed-uids`, default `1-`): the builder's USER and the
assemble user must be numeric UIDs inside the range. Names are never looked
up: a name is what makes the kubelet refuse a pod under runAsNonRoot.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from nbs2i import labels
from nbs2i.engine import ImageConfig
from nbs2i.errors import SecurityError, UsageError
from nbs2i.reference import split
from nbs2i.source import Source, redact

USER_REFUSED = "image must specify a user that is numeric and within the range of allowed users"
# Labels that describe the builder; a built image replaces them with its own.
_IDENTITY = (
    labels.OCI_TITLE,
    labels.OCI_DESCRIPTION,
    labels.OCI_VERSION,
    labels.OPENSHIFT_TAGS,
    labels.K8S_DESCRIPTION,
)
IMAGE_TAGS = "jupyter,notebooks"
# The builder's licence is not the course's; SPDX's word for "not stated".
IMAGE_LICENSES = "NOASSERTION"


@dataclass(frozen=True)
class UidRange:
    """Allowed UIDs: inclusive (low, high) spans; high None means no upper bound."""

    spans: tuple[tuple[int, int | None], ...]
    text: str

    def allows(self, uid: int) -> bool:
        return any(lo <= uid and (hi is None or uid <= hi) for lo, hi in self.spans)


_SPAN = re.compile(r"^(\d+)(?:(-)(\d*))?$")


def parse_uid_range(text: str) -> UidRange:
    """`1-`, `1000-2000`, `1001`, or a comma list of those."""
    spans: list[tuple[int, int | None]] = []
    for part in text.split(","):
        m = _SPAN.match(part.strip())
        if not m:
            raise UsageError(
                f"--allowed-uids {text!r} is not a UID range", "write e.g. 1-, 1000-2000 or 1001"
            )
        lo = int(m.group(1))
        hi: int | None = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
        if hi is not None and hi < lo:
            raise UsageError(f"--allowed-uids {text!r}: {part} is empty", "write LOW-HIGH")
        spans.append((lo, hi))
    return UidRange(tuple(spans), text)


def check_user(user: str, allowed: UidRange, what: str) -> int:
    """The numeric UID of `user` (`uid` or `uid:gid`); SecurityError when refused."""
    uid_text = user.split(":", 1)[0].strip()
    shown = user or "(none: root)"
    if not uid_text.isdigit() or not allowed.allows(int(uid_text)):
        raise SecurityError(
            f"{what} user {shown} refused: {USER_REFUSED} ({allowed.text})",
            "set a numeric non-root USER in the builder (e.g. USER 1001) or "
            "--assemble-user 1001, or widen --allowed-uids",
        )
    return int(uid_text)


def created(epoch: int | None) -> str:
    """A time as RFC 3339 UTC, or "" when there is none."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def output_labels(source: Source, *, builder: str, tag: str) -> dict[str, str]:
    """Upstream s2i's output labels, the OCI ones, and the image's own identity;
    empty values left out."""
    location = redact(source.location)
    name, version = split(tag)
    description = f"Jupyter notebooks from {location}"
    found = {
        labels.BUILD_IMAGE: builder,
        labels.BUILD_COMMIT_ID: source.commit,
        labels.BUILD_COMMIT_REF: source.ref,
        labels.BUILD_COMMIT_AUTHOR: source.author,
        labels.BUILD_COMMIT_DATE: source.date,
        labels.BUILD_COMMIT_MESSAGE: source.message,
        labels.BUILD_SOURCE_LOCATION: location,
        labels.BUILD_CONTEXT_DIR: source.context_dir,
        labels.K8S_DISPLAY_NAME: tag,
        labels.K8S_DESCRIPTION: description,
        labels.OPENSHIFT_TAGS: IMAGE_TAGS,
        labels.OCI_TITLE: name.rsplit("/", 1)[-1],
        labels.OCI_DESCRIPTION: description,
        labels.OCI_VERSION: version,
        labels.OCI_SOURCE: location,
        labels.OCI_REVISION: source.commit,
        labels.OCI_CREATED: created(source.epoch),
        labels.OCI_LICENSES: IMAGE_LICENSES,
    }
    return {k: v for k, v in found.items() if v}


def image_config(
    builder: ImageConfig, *, cmd: tuple[str, ...], env: Mapping[str, str], extra: Mapping[str, str]
) -> ImageConfig:
    """The config of a built image: the builder's, with CMD = the run script, the
    build's environment added, the builder's identity labels replaced by `extra`.

    Everything is explicit: a commit would otherwise take unset fields from the
    assemble container, whose ENTRYPOINT was cleared and whose environment may
    hold build-only values.
    """
    kept = {k: v for k, v in builder.labels.items() if k not in _IDENTITY}
    return dataclasses.replace(
        builder,
        cmd=cmd,
        env={**builder.env, **env},
        labels={**kept, **extra},
    )
