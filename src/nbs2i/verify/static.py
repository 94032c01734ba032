"""The checks that read an image without running it: metadata and files.

Pure functions from what the engine said (`ImageConfig`, from inspect_image)
and what the filesystem scan saw (`FileFacts`) to `CheckResult`s, so each
rule is tested on its own without an engine.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from nbs2i import labels
from nbs2i.engine import ImageConfig
from nbs2i.scripts import ALWAYS, KERNELS, PATHS, env_rule
from nbs2i.verify.checks import CheckResult, Status, result
from nbs2i.verify.imagefs import Entry, FileFacts

# What may stand as PID 1 and reap orphans / forward signals.
INITS = frozenset({"tini", "tini-static", "dumb-init", "docker-init", "catatonit"})
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh"})
# tini and catatonit signal the child's whole process group with -g (tini also
# when this variable is set); dumb-init does so unless told --single-child.
TINI_GROUP_ENV = "TINI_KILL_PROCESS_GROUP"
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
REQUIRED_SCRIPTS = ("assemble", "run")
# Env names a workspace directory may be announced under, most specific first.
WORKSPACE_ENV = ("NOTEBOOK_DIR", "JUPYTER_SERVER_ROOT", "WORKSPACE")
# A random UID with no passwd entry gets this HOME from the engine.
NO_HOME = "/"
# How many offending paths the evidence names.
SHOWN = 5


# -- what the checks read from the config -------------------------------------------


def image_home(config: ImageConfig) -> str:
    return config.env.get("HOME") or NO_HOME


def workspace(config: ImageConfig) -> str:
    for name in WORKSPACE_ENV:
        if config.env.get(name):
            return config.env[name]
    return image_home(config)


def scripts_dir(config: ImageConfig) -> str | None:
    url = config.labels.get(labels.SCRIPTS_URL, "")
    return url[len("image://") :] if url.startswith("image://") else None


def pid1_argv(config: ImageConfig) -> tuple[str, ...]:
    return config.entrypoint + config.cmd if config.entrypoint else config.cmd


def files_wanted(config: ImageConfig) -> tuple[str, ...]:
    """Paths whose entries the file checks need from the scan."""
    paths = ["/etc/passwd", "/etc/group", image_home(config), workspace(config)]
    scripts = scripts_dir(config)
    if scripts:
        paths += [posixpath.join(scripts, s) for s in (*REQUIRED_SCRIPTS, "usage")]
    return tuple(dict.fromkeys(paths))


# -- metadata ---------------------------------------------------------------------


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
    if user == "root" or (user.isdigit() and int(user) == 0):
        return result("user-not-root", Status.FAIL, f"USER {config.user} is root")
    if user.isdigit():
        return result("user-not-root", Status.PASS, f"UID {int(user)}")
    passwd = (files.texts.get("/etc/passwd") if files else None) or ""
    uid = passwd_uid(passwd, user)
    if uid == 0:
        return result("user-not-root", Status.FAIL, f"USER {user} has UID 0 in /etc/passwd")
    seen = f"UID {uid} in /etc/passwd" if uid is not None else "no /etc/passwd entry"
    return result("user-not-root", Status.PASS, f"USER {user} ({seen})")


def is_shell_form(argv: Sequence[str]) -> bool:
    """What Docker makes of `CMD text` / `ENTRYPOINT text`: ["/bin/sh", "-c", text]."""
    return len(argv) >= 2 and posixpath.basename(argv[0]) in SHELLS and argv[1] == "-c"


def _init_options(argv: Sequence[str]) -> list[str]:
    options = []
    for arg in argv[1:]:
        if arg == "--" or not arg.startswith("-"):
            break
        options.append(arg)
    return options


def signals_group(config: ImageConfig, argv: Sequence[str]) -> bool:
    """Does the init in argv[0] send SIGTERM to its child's whole process group?"""
    init = posixpath.basename(argv[0])
    options = _init_options(argv)
    if init == "dumb-init":
        return not any(o in ("-c", "--single-child") for o in options)
    short = "".join(o[1:] for o in options if not o.startswith("--"))
    return "g" in short or (init != "catatonit" and bool(config.env.get(TINI_GROUP_ENV)))


def check_init(config: ImageConfig) -> CheckResult:
    """An init as PID 1 reaps orphans and passes SIGTERM on. A shell in the way
    (shell form) is judged by what it costs, which the runtime checks measure:
    as PID 1 it takes the init's place (a failure); under an init it is a
    warning, since the init still reaps, and the group signal (or a shell that
    execs the server) still delivers SIGTERM."""
    argv = pid1_argv(config)
    if not argv:
        return result("init-pid1", Status.FAIL, "no ENTRYPOINT or CMD")
    shown = " ".join(argv)
    first = posixpath.basename(argv[0])
    if first in SHELLS:
        return result(
            "init-pid1",
            Status.FAIL,
            f"PID 1 would be the shell {first}: `{shown}`; as PID 1 a shell does not pass "
            'SIGTERM on; put an init in front (ENTRYPOINT ["tini", "-g", "--"])',
        )
    if first not in INITS:
        return result("init-pid1", Status.FAIL, f"PID 1 would be {first}, not an init: {shown}")
    if not (is_shell_form(config.entrypoint) or is_shell_form(config.cmd)):
        return result("init-pid1", Status.PASS, f"PID 1: {shown}")
    if signals_group(config, argv):
        how = f"{first} signals the whole process group, so SIGTERM reaches the server too"
    else:
        how = f"{first} signals only the shell, so SIGTERM reaches the server only if it is exec'd"
    return result(
        "init-pid1",
        Status.WARN,
        f"PID 1: `{shown}`: a shell-form command under {first}; {how} (the reaps-orphans "
        "and sigterm checks show what happens); exec form needs no shell",
    )


def check_ports(config: ImageConfig) -> CheckResult:
    ports = config.exposed_ports
    if not ports:
        return result("ports-unprivileged", Status.PASS, "no port exposed")
    low = [p for p in ports if p.split("/")[0].isdigit() and int(p.split("/")[0]) < 1024]
    if low:
        return result(
            "ports-unprivileged", Status.FAIL, f"exposes {', '.join(low)}: below 1024 needs root"
        )
    return result("ports-unprivileged", Status.PASS, f"exposes {', '.join(ports)}")


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


def _inside(path: str, place: str) -> bool:
    return place != NO_HOME and (path == place or path.startswith(place.rstrip("/") + "/"))


def _path_problem(path: str, config: ImageConfig, files: FileFacts | None) -> str:
    """Why a directory the server would read from is not the image's own: ""
    when it is. Course files and students' work live in HOME and the workspace;
    a directory anyone may write (or create, under one) is anyone's."""
    if not path.startswith("/"):
        return "relative: the server's working directory"
    path = posixpath.normpath(path)
    if _inside(path, image_home(config)) or _inside(path, workspace(config)):
        return "in HOME or the workspace"
    probe = path
    while files is not None:
        entry = files.lookup(probe)
        if entry is not None:
            return "writable by anyone" if entry.mode & 0o002 else ""
        if probe == "/":
            break
        probe = posixpath.dirname(probe)
    return ""


def _steering(name: str, value: str, config: ImageConfig, files: FileFacts | None) -> str:
    """What one ENV name does to the server, as evidence; "" when nothing."""
    rule = env_rule(name)
    if rule is None or rule.verify not in (ALWAYS, PATHS):
        return ""
    if rule.verify == ALWAYS:
        return name  # never its value: a token or password hash may be one
    if rule.build == KERNELS and _isolated(config):
        return ""
    problems = [
        f"{entry} {problem}"
        for entry in value.split(":")
        if entry and (problem := _path_problem(entry, config, files))
    ]
    return f"{name}: {'; '.join(problems)}" if problems else ""


def _isolated(config: ImageConfig) -> bool:
    return config.labels.get(labels.SERVER_PYTHON) == labels.SERVER_PYTHON_ISOLATED


def check_env_server(config: ImageConfig, files: FileFacts | None) -> CheckResult:
    """Names of the table of names a course may not set (`nbs2i.scripts.ENV_RULES`)
    that would give the image's ENV a hand in the server's login, configuration
    or code: a planted token or hub, a configuration path, a data or code path
    where course files or students' work live."""
    found = [
        finding
        for name, value in sorted(config.env.items())
        if (finding := _steering(name, value, config, files))
    ]
    if found:
        return result(
            "env-server",
            Status.FAIL,
            f"ENV steers the server: {', '.join(found)}; a login is given when the image runs, "
            "configuration belongs in /etc/jupyter, code and extensions in the image's own "
            "directories",
        )
    kernels_only = (
        sorted(n for n in config.env if n.startswith("PYTHON")) if _isolated(config) else []
    )
    extra = f" ({', '.join(kernels_only)}: kernels only, the server's Python runs isolated)"
    return result(
        "env-server",
        Status.PASS,
        "no ENV name steers the server's login, configuration or code"
        + (extra if kernels_only else ""),
    )


def _missing_scripts(files: FileFacts, scripts: str) -> list[str]:
    missing = []
    for name in REQUIRED_SCRIPTS:
        entry = files.lookup(posixpath.join(scripts, name))
        if entry is None or entry.kind not in ("file", "hardlink") or not entry.mode & 0o111:
            missing.append(name)
    return missing


def check_s2i(config: ImageConfig, files: FileFacts | None) -> CheckResult:
    url = config.labels.get(labels.SCRIPTS_URL)
    if url is None:
        if labels.BUILD_IMAGE in config.labels:
            return result(
                "s2i-builder", Status.FAIL, f"built by S2I but no {labels.SCRIPTS_URL} label"
            )
        return result("s2i-builder", Status.SKIP, "not an S2I image (no S2I labels)")
    scripts = scripts_dir(config)
    if scripts is None:
        return result(
            "s2i-builder",
            Status.WARN,
            f"{labels.SCRIPTS_URL}={url}: scripts come from outside the image",
        )
    if labels.DESTINATION not in config.labels:
        return result("s2i-builder", Status.FAIL, f"no {labels.DESTINATION} label")
    if files is None:
        return result("s2i-builder", Status.SKIP, "labels present; files not scanned")
    missing = _missing_scripts(files, scripts)
    if missing:
        return result(
            "s2i-builder", Status.FAIL, f"{url}: {', '.join(missing)} missing or not executable"
        )
    dest = config.labels[labels.DESTINATION]
    return result(
        "s2i-builder", Status.PASS, f"{url}: assemble, run executable; destination {dest}"
    )


def metadata_checks(config: ImageConfig, files: FileFacts | None) -> list[CheckResult]:
    return [
        check_user_numeric(config),
        check_user_not_root(config, files),
        check_init(config),
        check_ports(config),
        check_env_secrets(config),
        check_env_server(config, files),
        check_s2i(config, files),
    ]


# -- files ------------------------------------------------------------------------


def _listed(entries: Sequence[Entry]) -> str:
    shown = ", ".join(f"{e.path} ({e.mode:04o})" for e in entries[:SHOWN])
    more = len(entries) - SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_setid(files: FileFacts) -> CheckResult:
    if not files.setid_files:
        return result("no-setuid", Status.PASS, f"none among {files.scanned} entries")
    return result(
        "no-setuid",
        Status.FAIL,
        f"{len(files.setid_files)} set-id files: {_listed(files.setid_files)}",
    )


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


def check_world_writable(files: FileFacts) -> CheckResult:
    found = files.world_writable
    if not found:
        return result(
            "no-world-writable",
            Status.PASS,
            f"none among {files.scanned} entries (sticky /tmp-like directories aside)",
        )
    return result(
        "no-world-writable",
        Status.FAIL,
        f"{len(found)} world-writable: {_listed(found)}; any UID can rewrite them for the "
        "next user or process",
    )


def _judge_place(what: str, path: str, entry: Entry | None) -> tuple[str, str]:
    """(what was seen, what is wrong or "") for HOME or the workspace."""
    if entry is None:
        return "", f"{what} {path} does not exist in the image"
    seen = f"{what} {path} {entry.uid}:{entry.gid} {entry.mode:04o}"
    if entry.kind != "dir":
        return seen, f"{what} {path} is not a directory"
    if entry.gid != 0 or not entry.mode & 0o020 or not entry.mode & 0o010:
        return seen, f"{seen}: needs group 0 with group write"
    return seen, ""


def check_home(config: ImageConfig, files: FileFacts) -> CheckResult:
    places = {"HOME": image_home(config)}
    if workspace(config) != places["HOME"]:
        places["workspace"] = workspace(config)
    judged = [_judge_place(what, path, files.lookup(path)) for what, path in places.items()]
    bad = [wrong for _seen, wrong in judged if wrong]
    if not config.env.get("HOME"):
        bad.insert(0, "no HOME in ENV: a random UID gets HOME=/")
    if bad:
        return result("home-group-writable", Status.FAIL, "; ".join(bad))
    return result("home-group-writable", Status.PASS, "; ".join(seen for seen, _ in judged))


def check_caches(files: FileFacts) -> CheckResult:
    if not files.caches:
        return result("no-package-caches", Status.PASS, "no apt lists, apt archives or pip cache")
    shown = ", ".join(
        f"{a.name} {a.where} ({a.files} files, {a.size // 1024} KiB)" for a in files.caches
    )
    return result("no-package-caches", Status.FAIL, shown)


def file_checks(config: ImageConfig, files: FileFacts) -> list[CheckResult]:
    return [
        check_setid(files),
        check_passwd(files),
        check_world_writable(files),
        check_home(config, files),
        check_caches(files),
    ]
