"""The checks that read an image without running it: metadata and files.

Pure functions from what the engine said (`ImageConfig`, from inspect_image)
and what the filesystem scan saw (`FileFacts`) to `CheckResult`s, so each
rule is tested on its own without an engine.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbs2i.checks import CheckResult, Status, result
from nbs2i.imagefs import FileFacts

# What may stand as PID 1 and reap orphans / forward signals.
INITS = frozenset({"tini", "tini-static", "dumb-init", "docker-init", "catatonit"})
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
SCRIPTS_LABEL = "io.openshift.s2i.scripts-url"
DESTINATION_LABEL = "io.openshift.s2i.destination"
BUILT_FROM_LABEL = "io.openshift.s2i.build.image"
REQUIRED_SCRIPTS = ("assemble", "run")
# Env names a workspace directory may be announced under, most specific first.
WORKSPACE_ENV = ("NOTEBOOK_DIR", "JUPYTER_SERVER_ROOT", "WORKSPACE")
# A random UID with no passwd entry gets this HOME from the engine.
NO_HOME = "/"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config the checks read."""

    user: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[str, ...] = ()  # "8888/tcp"
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, inspect: Mapping[str, Any]) -> ImageConfig:
        config = inspect.get("Config") or {}
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            name, _, value = str(item).partition("=")
            env[name] = value
        return cls(
            user=str(config.get("User") or ""),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            env=env,
            ports=tuple(sorted((config.get("ExposedPorts") or {}).keys())),
            labels=dict(config.get("Labels") or {}),
        )

    @property
    def home(self) -> str:
        return self.env.get("HOME") or NO_HOME

    @property
    def workspace(self) -> str:
        for name in WORKSPACE_ENV:
            if self.env.get(name):
                return self.env[name]
        return self.home

    @property
    def scripts_dir(self) -> str | None:
        url = self.labels.get(SCRIPTS_LABEL, "")
        return url[len("image://") :] if url.startswith("image://") else None

    @property
    def pid1_argv(self) -> tuple[str, ...]:
        return self.entrypoint + self.cmd if self.entrypoint else self.cmd

    def files_wanted(self) -> tuple[str, ...]:
        """Paths whose entries the file checks need from the scan."""
        paths = ["/etc/passwd", "/etc/group", self.home, self.workspace]
        if self.scripts_dir:
            paths += [posixpath.join(self.scripts_dir, s) for s in (*REQUIRED_SCRIPTS, "usage")]
        return tuple(dict.fromkeys(paths))


def _user_part(user: str) -> str:
    return user.partition(":")[0].strip()


def passwd_uid(passwd: str, name: str) -> int | None:
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def check_user_numeric(config: ImageConfig) -> CheckResult:
    user = _user_part(config.user)
    if not user:
        return result("user-numeric", Status.FAIL, "no USER: the image runs as root by default")
    if user.isdigit():
        return result("user-numeric", Status.PASS, f"USER {config.user}")
    return result(
        "user-numeric",
        Status.FAIL,
        f"USER {config.user} is a name; runAsNonRoot and --allowed-uids need a number",
    )


def check_user_not_root(config: ImageConfig, files: FileFacts | None) -> CheckResult:
    user = _user_part(config.user)
    if not user:
        return result("user-not-root", Status.FAIL, "no USER: the image runs as root (UID 0)")
    if user.isdigit():
        if int(user) == 0:
            return result("user-not-root", Status.FAIL, f"USER {config.user} is root")
        return result("user-not-root", Status.PASS, f"UID {int(user)}")
    if user == "root":
        return result("user-not-root", Status.FAIL, f"USER {config.user} is root")
    passwd = (files.texts.get("/etc/passwd") if files else None) or ""
    uid = passwd_uid(passwd, user)
    if uid == 0:
        return result("user-not-root", Status.FAIL, f"USER {user} has UID 0 in /etc/passwd")
    seen = f"UID {uid} in /etc/passwd" if uid is not None else "no /etc/passwd entry"
    return result("user-not-root", Status.PASS, f"USER {user} ({seen})")


def _is_shell_form(argv: tuple[str, ...]) -> bool:
    return (
        len(argv) >= 2
        and posixpath.basename(argv[0]) in ("sh", "bash", "ash", "dash")
        and (argv[1] == "-c")
    )


def check_init(config: ImageConfig) -> CheckResult:
    shown = " ".join(config.pid1_argv) or "(none)"
    for what, argv in (("ENTRYPOINT", config.entrypoint), ("CMD", config.cmd)):
        if _is_shell_form(argv):
            return result(
                "init-pid1",
                Status.FAIL,
                f"{what} is in shell form: `{shown}`; a shell in the way neither reaps "
                "orphans nor forwards SIGTERM",
            )
    if not config.pid1_argv:
        return result("init-pid1", Status.FAIL, "no ENTRYPOINT or CMD")
    first = posixpath.basename(config.pid1_argv[0])
    if first in INITS:
        return result("init-pid1", Status.PASS, f"PID 1: {shown}")
    return result("init-pid1", Status.FAIL, f"PID 1 would be {first}, not an init: {shown}")


def check_ports(config: ImageConfig) -> CheckResult:
    if not config.ports:
        return result("ports-unprivileged", Status.PASS, "no port exposed")
    low = [p for p in config.ports if p.split("/")[0].isdigit() and int(p.split("/")[0]) < 1024]
    if low:
        return result(
            "ports-unprivileged", Status.FAIL, f"exposes {', '.join(low)}: below 1024 needs root"
        )
    return result("ports-unprivileged", Status.PASS, f"exposes {', '.join(config.ports)}")


def check_env_secrets(config: ImageConfig) -> CheckResult:
    # Names only, never values: the evidence ends up in CI logs.
    found = sorted(
        name
        for name, value in config.env.items()
        if value and any(word in name.upper() for word in SECRET_WORDS)
    )
    if found:
        return result(
            "env-no-secrets",
            Status.FAIL,
            f"ENV sets {', '.join(found)} (values hidden); anyone who pulls the image reads them",
        )
    return result("env-no-secrets", Status.PASS, f"{len(config.env)} ENV names, none secret-like")


def check_s2i(config: ImageConfig, files: FileFacts | None) -> CheckResult:
    url = config.labels.get(SCRIPTS_LABEL)
    if url is None:
        if BUILT_FROM_LABEL in config.labels:
            return result("s2i-builder", Status.FAIL, f"built by S2I but no {SCRIPTS_LABEL} label")
        return result("s2i-builder", Status.SKIP, "not an S2I image (no S2I labels)")
    scripts = config.scripts_dir
    if scripts is None:
        return result(
            "s2i-builder",
            Status.WARN,
            f"{SCRIPTS_LABEL}={url}: scripts come from outside the image",
        )
    if DESTINATION_LABEL not in config.labels:
        return result("s2i-builder", Status.FAIL, f"no {DESTINATION_LABEL} label")
    if files is None:
        return result("s2i-builder", Status.SKIP, "labels present; files not scanned")
    missing = []
    for name in REQUIRED_SCRIPTS:
        entry = files.lookup(posixpath.join(scripts, name))
        if entry is None or entry.kind not in ("file", "hardlink") or not entry.mode & 0o111:
            missing.append(name)
    if missing:
        return result(
            "s2i-builder",
            Status.FAIL,
            f"{url}: {', '.join(missing)} missing or not executable",
        )
    dest = config.labels[DESTINATION_LABEL]
    return result(
        "s2i-builder", Status.PASS, f"{url}: assemble, run executable; destination {dest}"
    )


def check_setid(files: FileFacts) -> CheckResult:
    if not files.setid_files:
        return result("no-setuid", Status.PASS, f"none among {files.scanned} entries")
    shown = ", ".join(f"{e.path} ({e.mode:04o})" for e in files.setid_files[:5])
    more = len(files.setid_files) - 5
    tail = f" and {more} more" if more > 0 else ""
    return result("no-setuid", Status.FAIL, f"{len(files.setid_files)} set-id files: {shown}{tail}")


def check_passwd(files: FileFacts) -> CheckResult:
    seen = []
    bad = []
    for path in ("/etc/passwd", "/etc/group"):
        entry = files.lookup(path)
        if entry is None:
            seen.append(f"{path} absent")
            continue
        seen.append(f"{path} {entry.mode:04o}")
        if entry.mode & 0o022:
            bad.append(f"{path} is {entry.mode:04o} (group/world-writable)")
    if bad:
        return result(
            "passwd-not-writable",
            Status.FAIL,
            "; ".join(bad) + ": any user can add a root account",
        )
    return result("passwd-not-writable", Status.PASS, ", ".join(seen))


def check_home(config: ImageConfig, files: FileFacts) -> CheckResult:
    places = {"HOME": config.home}
    if config.workspace != config.home:
        places["workspace"] = config.workspace
    seen = []
    bad = []
    for what, path in places.items():
        entry = files.lookup(path)
        if entry is None:
            bad.append(f"{what} {path} does not exist in the image")
            continue
        where = f"{what} {path} {entry.uid}:{entry.gid} {entry.mode:04o}"
        seen.append(where)
        if entry.kind != "dir":
            bad.append(f"{what} {path} is not a directory")
        elif entry.gid != 0 or not entry.mode & 0o020 or not entry.mode & 0o010:
            bad.append(f"{where}: needs group 0 with group write")
    if not config.env.get("HOME"):
        bad.insert(0, "no HOME in ENV: a random UID gets HOME=/")
    if bad:
        return result("home-group-writable", Status.FAIL, "; ".join(bad))
    return result("home-group-writable", Status.PASS, "; ".join(seen))


def check_caches(files: FileFacts) -> CheckResult:
    if not files.caches:
        return result("no-package-caches", Status.PASS, "no apt lists, apt archives or pip cache")
    shown = ", ".join(
        f"{a.name} {a.where} ({a.files} files, {a.size // 1024} KiB)" for a in files.caches
    )
    return result("no-package-caches", Status.FAIL, shown)


def metadata_checks(config: ImageConfig, files: FileFacts | None) -> list[CheckResult]:
    return [
        check_user_numeric(config),
        check_user_not_root(config, files),
        check_init(config),
        check_ports(config),
        check_env_secrets(config),
        check_s2i(config, files),
    ]


def file_checks(config: ImageConfig, files: FileFacts) -> list[CheckResult]:
    return [check_setid(files), check_passwd(files), check_home(config, files), check_caches(files)]


# Ports the runtime checks try when the image does not say, in order.
DEFAULT_PORT = 8888
_PORT = re.compile(r"^(\d+)(?:/tcp)?$")


def serving_port(config: ImageConfig) -> int:
    """The TCP port to probe: the only (or lowest) exposed TCP port, else 8888."""
    tcp = [int(m.group(1)) for p in config.ports if (m := _PORT.match(p))]
    if DEFAULT_PORT in tcp or not tcp:
        return DEFAULT_PORT
    return min(tcp)
