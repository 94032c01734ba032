"""Image metadata: the labels a build adds, the committed config, the user check.

Labels: all of upstream s2i's output labels (`io.openshift.s2i.build.*`,
`io.k8s.display-name`), so `s2i rebuild` and OpenShift consoles read our images,
plus the OCI ones (`org.opencontainers.image.source/.revision/.created`). Only
non-empty values are set. `.created` is the commit time, not the wall clock, so
building the same commit twice gives the same labels. Credentials in a source
URL never reach a label.

User check (`--allowed-uids`, default `1-`): the builder's USER and the
assemble user must be numeric UIDs inside the range. Names are never looked up:
a name is what makes the kubelet refuse a pod under runAsNonRoot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nbs2i.errors import SecurityError, UsageError
from nbs2i.source import Source, redact

S2I_PREFIX = "io.openshift.s2i.build."
USER_REFUSED = "image must specify a user that is numeric and within the range of allowed users"


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


def created(source: Source) -> str:
    """The commit time as RFC 3339 UTC, or "" for a plain directory."""
    if source.epoch is None:
        return ""
    return datetime.fromtimestamp(source.epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def output_labels(source: Source, *, builder: str, tag: str) -> dict[str, str]:
    """Upstream s2i's output labels plus the OCI ones; empty values left out."""
    location = redact(source.location)
    labels = {
        f"{S2I_PREFIX}image": builder,
        f"{S2I_PREFIX}commit.id": source.commit,
        f"{S2I_PREFIX}commit.ref": source.ref,
        f"{S2I_PREFIX}commit.author": source.author,
        f"{S2I_PREFIX}commit.date": source.date,
        f"{S2I_PREFIX}commit.message": source.message,
        f"{S2I_PREFIX}source-location": location,
        f"{S2I_PREFIX}source-context-dir": source.context_dir,
        "io.k8s.display-name": tag,
        "org.opencontainers.image.source": location,
        "org.opencontainers.image.revision": source.commit,
        "org.opencontainers.image.created": created(source),
    }
    return {k: v for k, v in labels.items() if v}


def env_list(env: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def merge_env(base: list[str] | None, extra: Mapping[str, str]) -> list[str]:
    """The builder's ENV with the build's values added or replaced, order kept."""
    result: dict[str, str] = {}
    for item in base or []:
        key, _, value = item.partition("=")
        result[key] = value
    result.update(extra)
    return env_list(result)


def commit_config(
    builder_config: Mapping[str, Any],
    *,
    cmd: list[str],
    env: Mapping[str, str],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The config of the committed image.

    Everything is given explicitly: the engine fills unset fields from the
    assemble container, whose ENTRYPOINT was cleared and whose env may hold
    build-only values (CA bundle paths) that must not reach the image.
    """
    return {
        "User": builder_config.get("User") or "",
        "Entrypoint": list(builder_config.get("Entrypoint") or []),
        "Cmd": cmd,
        "Env": merge_env(builder_config.get("Env"), env),
        "Labels": {**(builder_config.get("Labels") or {}), **labels},
        "WorkingDir": builder_config.get("WorkingDir") or "",
        "ExposedPorts": builder_config.get("ExposedPorts") or {},
        "Volumes": builder_config.get("Volumes"),
        "StopSignal": builder_config.get("StopSignal"),
        "Healthcheck": builder_config.get("Healthcheck"),
    }
