"""The S2I build: from a source to a committed image, against the engine.

Steps (each reported as a "step" event):

1. make sure the builder is there (`--pull-policy`; the default builder is
   built on first use), refuse a root or named user (`--allowed-uids`);
2. open the source (clone or directory), find the scripts and the environment;
3. dependency layer: when the source has `requirements.txt`, a first container
   gets only the dependency files and runs assemble with
   `NBS2I_ASSEMBLE_PHASE=deps`; it is committed as `nbs2i-cache/deps:<key>`,
   the key hashing the builder image id, the assemble script, the environment
   and the dependency files, and reused by every later build with that key;
4. `--incremental`: save-artifacts runs in the previous image of the same tag,
   its stdout tar is unpacked at `<dest>/artifacts`; any failure: warning,
   clean build;
5. assemble: a container from the builder (or the dependency image), ENTRYPOINT
   cleared, as the assemble user, the source streamed into `<dest>/src` and
   uploaded scripts into `<dest>/scripts`, output streamed live;
6. commit with the builder's ENTRYPOINT, CMD = run, the build env, labels.

Everything a build creates in the engine (containers, inject volumes) is
removed in a `finally`: after success, failure and Ctrl-C. Injected files
(`--inject`, `--ca-bundle`) live in volumes mounted for the assemble run only,
so no byte of them reaches a layer (upstream truncates them in place, leaving
the names). Build-only variables (CA paths, the phase) are set by the command,
not the container's env: the engine copies a container's env into a commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shlex
import tarfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nbs2i.archive import DEFAULT_EXCLUDE, TarFile, check_source, tar_stream
from nbs2i.builder import BuilderRequest, build_builder, s2i_dir
from nbs2i.builder import default_ca_bundle as builder_ca_bundle
from nbs2i.builder import default_tags as builder_tags
from nbs2i.engine import Engine, Leftovers
from nbs2i.errors import BuildError, EngineError, Nbs2iError, NotFound, UsageError
from nbs2i.image import (
    check_user,
    commit_config,
    output_labels,
    parse_uid_range,
)
from nbs2i.progress import Event, Reporter, lines, silent
from nbs2i.scripts import (
    ASSEMBLE_USER_LABEL,
    Scripts,
    build_environment,
    resolve_scripts,
)
from nbs2i.source import Source, open_source

PULL_POLICIES = ("always", "never", "if-not-present")
DEPS_REPOSITORY = "nbs2i-cache/deps"
PHASE_VAR = "NBS2I_ASSEMBLE_PHASE"
ROLE_LABEL = "nbs2i.role"
# Where --ca-bundle is mounted during assemble, and the variables that point to it.
CA_DIR = "/run/nbs2i/ca"
CA_FILE = "ca-bundle.crt"
CA_VARS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
# Lines of a failed assemble's output shown above the error.
TAIL_LINES = 20
# `-r other.txt` / `-c constraints.txt` lines pull more files into the dependency layer.
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)")
# A requirement that installs something from the source tree itself: no separate layer.
_LOCAL_REQ = re.compile(r"^\s*(?:-e\s+|--editable[\s=]+)?(?:\.|/|file:)")


def default_builder() -> str:
    """nbs2i/builder:<version>, as `nbs2i builder build` tags it."""
    return builder_tags()[0]


@dataclass(frozen=True)
class Injection:
    """--inject SRC:DEST: SRC (file or dir) available in directory DEST during assemble."""

    src: Path
    dest: str

    @classmethod
    def parse(cls, text: str) -> Injection:
        src, sep, dest = text.rpartition(":")
        if not sep or not src or not dest.startswith("/"):
            raise UsageError(
                f"--inject {text!r} is not SRC:DEST",
                "write --inject /path/on/this/machine:/absolute/dir/in/the/container",
            )
        path = Path(src).expanduser()
        if not path.exists():
            raise UsageError(
                f"--inject source {src} does not exist", "give an existing file or directory"
            )
        clean = str(PurePosixPath(dest))
        if clean == "/" or ".." in PurePosixPath(dest).parts:
            raise UsageError(f"--inject destination {dest!r} is not allowed", "give a directory")
        return cls(path.resolve(), clean)


@dataclass(frozen=True)
class BuildRequest:
    source: str
    tag: str
    builder: str = ""  # "" = nbs2i/builder:<version>, built on first use
    ref: str = ""
    context_dir: str = ""
    excludes: tuple[str, ...] = (DEFAULT_EXCLUDE,)
    scripts_url: str = ""
    env: tuple[tuple[str, str], ...] = ()
    env_files: tuple[Path, ...] = ()
    injections: tuple[Injection, ...] = ()
    ca_bundle: Path | None = None
    assemble_user: str = ""
    allowed_uids: str = "1-"
    pull_policy: str = "if-not-present"
    network: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    incremental: bool = False
    dependency_layer: bool = True
    # Run assemble even when it would only move the files (see _direct_dest).
    always_assemble: bool = False
    # Labels put on every container and volume the build creates (CI and test
    # clean-up find them by these). The engine copies a container's labels into
    # its commit, so the images carry them too.
    container_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    builder: str
    labels: dict[str, str] = field(default_factory=dict)
    deps_image: str = ""  # the dependency layer's tag, "" when none
    deps_reused: bool = False
    incremental: bool = False  # artifacts from the previous image were used
    direct: bool = False  # the files were placed without running assemble
    seconds: float = 0.0


def default_ca_bundle() -> Path | None:
    for var in CA_VARS:
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return None


def split_tag(ref: str) -> tuple[str, str]:
    """("repo", "tag") of an image reference; tag "latest" when none."""
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref:
        raise UsageError(f"tag {ref!r} is a digest", "give a name like myclass:1")
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


# -- builder ---------------------------------------------------------------------


def ensure_builder(
    engine: Engine, ref: str, policy: str, *, is_default: bool, reporter: Reporter
) -> dict[str, Any]:
    """Inspect the builder, pulling or building it as the pull policy says."""
    if policy not in PULL_POLICIES:
        raise UsageError(f"--pull-policy {policy!r}", f"give one of {', '.join(PULL_POLICIES)}")
    hint = (
        "`nbs2i builder build`"
        if is_default
        else f"`docker pull {ref}` (or `nbs2i builder build` for nbs2i's own builder)"
    )
    if policy == "always" and not is_default:
        reporter(Event("step", f"Pulling {ref}"))
        engine.pull(ref)
    with contextlib.suppress(NotFound):
        return engine.inspect_image(ref)
    if policy == "never":
        raise NotFound(
            f"builder image {ref} is not in the engine (--pull-policy never)", f"run {hint} first"
        )
    if is_default:
        reporter(Event("step", f"Building the builder image {ref} (first use)"))
        _build_default_builder(engine, reporter)
        return engine.inspect_image(ref)
    reporter(Event("step", f"Pulling {ref}"))
    engine.pull(ref)
    return engine.inspect_image(ref)


def _build_default_builder(engine: Engine, reporter: Reporter) -> None:
    request = BuilderRequest(tags=builder_tags(), ca_bundle=builder_ca_bundle())
    build_builder(engine, request, reporter)


# -- dependency files ------------------------------------------------------------


def dependency_files(root: Path) -> list[str] | None:
    """Relative paths of requirements.txt and the files it includes; None when there is
    no requirements.txt or it installs from the source tree (no separate layer then)."""
    first = root / "requirements.txt"
    if not first.is_file():
        return None
    seen: list[str] = []
    todo = ["requirements.txt"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        path = (root / rel).resolve()
        if not path.is_file() or not str(path).startswith(str(root.resolve()) + os.sep):
            return None  # refers to something we cannot take apart safely
        seen.append(rel)
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if _LOCAL_REQ.match(line):
                return None
            m = _INCLUDE.match(line)
            if m:
                todo.append(os.path.normpath(os.path.join(os.path.dirname(rel), m.group(1))))
    return sorted(seen)


def deps_key(
    builder_id: str, assemble: str, env: Mapping[str, str], root: Path, files: Sequence[str]
) -> str:
    digest = hashlib.sha256()
    for part in (builder_id, assemble, repr(sorted(env.items()))):
        digest.update(part.encode() + b"\0")
    for rel in files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:20]


# -- the build -------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What every container of one build shares."""

    builder: str
    config: Mapping[str, Any]  # the builder's image config
    scripts: Scripts
    user: str
    uid: int
    env: Mapping[str, str]
    build_env: Mapping[str, str]  # assemble only (CA paths), never in the image
    mounts: tuple[tuple[str, str], ...]  # (volume, dir) injected during assemble
    network: str
    container_labels: Mapping[str, str]


def build(engine: Engine, request: BuildRequest, reporter: Reporter = silent) -> BuildResult:
    """Build `request.source` into `request.tag`. Raises Nbs2iError subclasses."""
    started = time.monotonic()
    allowed = parse_uid_range(request.allowed_uids)
    split_tag(request.tag)
    ca_bundle = request.ca_bundle
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise UsageError(f"--ca-bundle {ca_bundle} is not a file", "give a PEM bundle file")
    builder = request.builder or default_builder()
    reporter(Event("step", f"Checking builder {builder}"))
    info = ensure_builder(
        engine,
        builder,
        request.pull_policy,
        is_default=not request.builder,
        reporter=reporter,
    )
    config = info.get("Config") or {}
    labels = config.get("Labels") or {}
    image_user = config.get("User") or ""
    check_user(image_user, allowed, f"builder {builder}")
    user = request.assemble_user or labels.get(ASSEMBLE_USER_LABEL) or image_user
    uid = check_user(user, allowed, "assemble")

    reporter(Event("step", f"Fetching source {request.source}"))
    with open_source(request.source, ref=request.ref, context_dir=request.context_dir) as source:
        check_source(source.root, request.excludes)
        scripts = resolve_scripts(
            scripts_url=request.scripts_url, source_root=source.root, image_labels=labels
        )
        scripts.require("assemble", builder)
        scripts.require("run", builder)
        env = build_environment(source.root, request.env_files, dict(request.env))
        cleanup = Leftovers(engine)
        try:
            plan = _plan(
                engine, request, cleanup, builder, config, scripts, user, uid, env, ca_bundle
            )
            return _build(engine, request, plan, source, info, cleanup, reporter, started)
        finally:
            cleanup.remove_all()


def _plan(
    engine: Engine,
    request: BuildRequest,
    cleanup: Leftovers,
    builder: str,
    config: Mapping[str, Any],
    scripts: Scripts,
    user: str,
    uid: int,
    env: Mapping[str, str],
    ca_bundle: Path | None,
) -> _Plan:
    injections = list(request.injections)
    build_env: dict[str, str] = {}
    if ca_bundle is not None:
        injections.append(Injection(Path(ca_bundle), CA_DIR))
        build_env = {var: f"{CA_DIR}/{CA_FILE}" for var in CA_VARS}
    container_labels = dict(request.container_labels)
    # One volume per destination directory (two mounts on one path are refused).
    volumes: dict[str, str] = {}
    for inj in injections:
        if inj.dest not in volumes:
            name = engine.create_volume(labels={**container_labels, ROLE_LABEL: "inject"})
            cleanup.volumes.append(name)
            volumes[inj.dest] = name
        _fill_volume(
            engine, cleanup, builder, volumes[inj.dest], inj, ca_bundle, uid, container_labels
        )
    mounts = [(name, dest) for dest, name in volumes.items()]
    return _Plan(
        builder=builder,
        config=config,
        scripts=scripts,
        user=user,
        uid=uid,
        env=env,
        build_env=build_env,
        mounts=tuple(mounts),
        network=request.network,
        container_labels=container_labels,
    )


def _fill_volume(
    engine: Engine,
    cleanup: Leftovers,
    image: str,
    volume: str,
    inj: Injection,
    ca_bundle: Path | None,
    uid: int,
    container_labels: Mapping[str, str],
) -> None:
    """Copy an injected file or directory into its volume through a container that never
    starts (the engine mounts volumes for archive uploads)."""
    cid = engine.create_container(
        image,
        entrypoint=[""],
        command=["/bin/sh"],
        labels={**container_labels, ROLE_LABEL: "inject"},
        host_config={"binds": {volume: {"bind": "/inject", "mode": "rw"}}},
    )
    cleanup.containers.append(cid)
    if inj.src.is_dir():
        stream = tar_stream(inj.src, uid=uid, epoch=None, prefix="", excludes=())
    else:
        name = CA_FILE if ca_bundle is not None and inj.dest == CA_DIR else inj.src.name
        stream = _files_tar(inj.src.parent, [TarFile(name=name, path=inj.src, mode=0o640)], uid)
    engine.put_archive(cid, "/inject", stream)
    engine.remove_container(cid)
    cleanup.containers.remove(cid)


def _files_tar(root: Path, files: Sequence[TarFile], uid: int) -> Iterator[bytes]:
    """A tar of only `files` (root's own entries all excluded)."""
    return tar_stream(root, uid=uid, epoch=None, prefix="", excludes=(r".",), extra=files)


def _dir_tar(name: str, uid: int) -> bytes:
    """A tar holding one empty directory owned uid:0, group bits = user bits."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o775
        info.uid, info.gid = uid, 0
        tar.addfile(info)
    return buf.getvalue()


def _build(
    engine: Engine,
    request: BuildRequest,
    plan: _Plan,
    source: Source,
    info: Mapping[str, Any],
    cleanup: Leftovers,
    reporter: Reporter,
    started: float,
) -> BuildResult:
    dest = plan.scripts.destination
    assemble = plan.scripts.require("assemble", plan.builder)
    run = plan.scripts.require("run", plan.builder)
    base = plan.builder
    deps_tag, deps_reused = "", False
    files = dependency_files(source.root) if request.dependency_layer else None
    # A repository's own assemble (.s2i/bin, file://) may not know the deps phase.
    if files and assemble.upload is None:
        key = deps_key(str(info.get("Id")), _identity(assemble), plan.env, source.root, files)
        deps_tag = f"{DEPS_REPOSITORY}:{key}"
        if engine.image_exists(deps_tag):
            reporter(Event("step", f"Reusing the dependency layer {deps_tag}"))
            deps_reused = True
            base = deps_tag
        else:
            reporter(Event("step", f"Installing {', '.join(files)} into {deps_tag}"))
            try:
                _deps_layer(engine, plan, cleanup, source, files, deps_tag, key, reporter)
                base = deps_tag
            except BuildError as exc:
                # nbs2i's builder knows the deps phase: its failure is the user's to see.
                # Another S2I builder may need the whole source: build in one step.
                if _knows_deps_phase(plan.config):
                    raise
                reporter(
                    Event(
                        "warning",
                        f"the dependency layer failed ({exc.problem}); this builder may not "
                        f"know {PHASE_VAR}: building in one step (--no-dependency-layer "
                        "skips the attempt)",
                    )
                )
                deps_tag = ""

    previous: dict[str, Any] | None = None
    with contextlib.suppress(NotFound):
        previous = engine.inspect_image(request.tag)
    # Created without the inject mounts first: their mount points would be empty
    # directories in the commit, and a build that places the files directly
    # needs no mounts.
    cid = _create(engine, plan, cleanup, base, assemble.path, {}, "assemble", mounts=False)
    direct = _direct_dest(engine, cid, request, plan, source, deps_tag)
    if not direct and plan.mounts:
        _drop(engine, cleanup, cid)
        cid = _create(engine, plan, cleanup, base, assemble.path, {}, "assemble")
    used_artifacts = False
    if request.incremental:
        if previous is None:
            reporter(Event("warning", f"--incremental: no previous {request.tag}; building clean"))
        else:
            used_artifacts = _restore_artifacts(engine, plan, cleanup, previous, cid, reporter)
            if not used_artifacts:  # the container may hold part of a tar: start over
                _drop(engine, cleanup, cid)
                cid = _create(engine, plan, cleanup, base, assemble.path, {}, "assemble")

    if direct:
        reporter(
            Event(
                "step",
                f"Streaming the source into {direct}: the builder's assemble would only "
                "move it there (--always-assemble runs it anyway)",
            )
        )
        engine.put_archive(
            cid,
            direct,
            tar_stream(
                source.root, uid=plan.uid, epoch=source.epoch, prefix="", excludes=request.excludes
            ),
        )
    else:
        reporter(Event("step", f"Streaming the source into {dest}/src"))
        engine.put_archive(
            cid,
            dest,
            tar_stream(
                source.root,
                uid=plan.uid,
                epoch=source.epoch,
                prefix="src",
                excludes=request.excludes,
                extra=plan.scripts.uploads(),
            ),
        )
        reporter(Event("step", f"Running assemble as user {plan.user}"))
        _run_script(engine, cid, plan, assemble.path, reporter, "assemble")

    # The engine copies the container's labels into the commit: ROLE_LABEL is
    # overwritten so that the image does not claim to be an assemble container.
    labels = {
        ROLE_LABEL: "image",
        **output_labels(source, builder=plan.builder, tag=request.tag),
        **dict(request.labels),
    }
    conf = commit_config(plan.config, cmd=[run.path], env=plan.env, labels=labels)
    repo, tag = split_tag(request.tag)
    reporter(Event("step", f"Committing {request.tag}"))
    image_id = engine.commit(cid, repo, tag, conf=conf, message="nbs2i build")
    if previous is not None:
        _drop_if_dangling(engine, str(previous.get("Id")), image_id)
    result = BuildResult(
        tag=request.tag,
        image_id=image_id,
        builder=plan.builder,
        labels=labels,
        deps_image=deps_tag,
        deps_reused=deps_reused,
        incremental=used_artifacts,
        direct=bool(direct),
        seconds=round(time.monotonic() - started, 3),
    )
    reporter(
        Event(
            "done",
            f"Built {request.tag} ({image_id[7:19]}) in {result.seconds:.1f}s",
            {
                "tag": request.tag,
                "image": image_id,
                "seconds": result.seconds,
                "deps_image": deps_tag,
                "deps_reused": deps_reused,
            },
        )
    )
    return result


def _direct_dest(
    engine: Engine,
    cid: str,
    request: BuildRequest,
    plan: _Plan,
    source: Source,
    deps_tag: str,
) -> str:
    """The notebook directory when running assemble would do nothing but move the
    source there, else "".

    That is the case when the builder's assemble is, byte for byte, the one this
    nbs2i ships (s2i/bin/assemble), nothing overrides or adds to it, and pip has
    nothing to install (no requirements.txt, or its dependency layer is the
    base). Then the source tar, already owned uid:0 with group bits equal to user
    bits, is unpacked straight into the notebook directory of a container that
    never starts, as `COPY --chown` does: the same files, owners and modes, and
    about half a second less than starting a container.
    """
    if request.always_assemble or request.incremental or request.injections:
        return ""
    if plan.scripts.uploads():
        return ""
    if (source.root / ".s2i" / "bin" / "assemble").exists():
        return ""
    if (source.root / "requirements.txt").exists() and not deps_tag:
        return ""
    image_env = dict(e.split("=", 1) for e in plan.config.get("Env") or [] if "=" in e)
    dest = image_env.get("NOTEBOOK_DIR", "")
    if not dest.startswith("/") or plan.env.get("NOTEBOOK_DIR", dest) != dest:
        return ""
    shipped = _shipped_assemble()
    assemble = plan.scripts.require("assemble", plan.builder)
    if shipped is None or _read_file(engine, cid, assemble.path) != shipped:
        return ""
    return dest


def _shipped_assemble() -> bytes | None:
    try:
        return (s2i_dir() / "bin" / "assemble").read_bytes()
    except (Nbs2iError, OSError):
        return None


def _read_file(engine: Engine, cid: str, path: str) -> bytes | None:
    """A small regular file of a container, or None when it is not one."""
    try:
        data = b"".join(engine.get_archive(cid, path))
    except NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        if member is None or not member.isreg():
            return None
        handle = tar.extractfile(member)
        return handle.read() if handle else None


def _knows_deps_phase(config: Mapping[str, Any]) -> bool:
    """True for nbs2i's own builder, whose assemble implements NBS2I_ASSEMBLE_PHASE=deps."""
    labels = config.get("Labels") or {}
    return labels.get("org.opencontainers.image.title") == "nbs2i-builder"


def _identity(script: Any) -> str:
    """What the dependency key knows of the assemble script: its path, and its content
    when it is uploaded."""
    if script.upload is None:
        return script.path
    return script.path + hashlib.sha256(Path(script.upload).read_bytes()).hexdigest()


def _deps_layer(
    engine: Engine,
    plan: _Plan,
    cleanup: Leftovers,
    source: Source,
    files: Sequence[str],
    deps_tag: str,
    key: str,
    reporter: Reporter,
) -> None:
    assemble = plan.scripts.require("assemble", plan.builder)
    run = plan.scripts.require("run", plan.builder)
    cid = _create(engine, plan, cleanup, plan.builder, assemble.path, {PHASE_VAR: "deps"}, "deps")
    extra = [TarFile(name=f"src/{rel}", path=source.root / rel) for rel in files]
    stream = tar_stream(
        source.root,
        uid=plan.uid,
        epoch=source.epoch,
        prefix="src",
        excludes=(r".",),  # nothing of the tree but the dependency files below
        extra=[*extra, *plan.scripts.uploads()],
    )
    engine.put_archive(cid, plan.scripts.destination, stream)
    _run_script(engine, cid, plan, assemble.path, reporter, "dependency install")
    labels = {
        ROLE_LABEL: "deps",
        "nbs2i.deps-key": key,
        "io.openshift.s2i.build.image": plan.builder,
    }
    conf = commit_config(plan.config, cmd=[run.path], env=plan.env, labels=labels)
    repo, tag = split_tag(deps_tag)
    engine.commit(cid, repo, tag, conf=conf, message="nbs2i dependency layer")
    _drop(engine, cleanup, cid)


def _command(script: str, extra_env: Mapping[str, str]) -> list[str]:
    """The script, with build-only variables exported by /bin/sh (never the container's
    env: the engine would copy that into the committed image)."""
    if not extra_env:
        return [script]
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in extra_env.items())
    return ["/bin/sh", "-c", f'export {exports}; exec "$0"', script]


def _create(
    engine: Engine,
    plan: _Plan,
    cleanup: Leftovers,
    image: str,
    script: str,
    extra_env: Mapping[str, str],
    role: str,
    *,
    mounts: bool = True,
) -> str:
    host: dict[str, Any] = {}
    if mounts and plan.mounts:
        host["binds"] = {vol: {"bind": d, "mode": "ro"} for vol, d in plan.mounts}
    if plan.network:
        host["network_mode"] = plan.network
    cid = engine.create_container(
        image,
        entrypoint=[""],
        command=_command(script, {**plan.build_env, **extra_env} if mounts else extra_env),
        user=plan.user,
        environment=[f"{k}={v}" for k, v in plan.env.items()],
        labels={**plan.container_labels, ROLE_LABEL: role},
        host_config=host,
    )
    cleanup.containers.append(cid)
    return cid


def _drop(engine: Engine, cleanup: Leftovers, cid: str) -> None:
    engine.remove_container(cid)
    cleanup.containers.remove(cid)


def _check_script(engine: Engine, cid: str, plan: _Plan, path: str) -> None:
    """A clear error for a script the image does not have (instead of exit 127)."""
    try:
        for _chunk in engine.get_archive(cid, path):
            pass
    except NotFound:
        raise BuildError(
            f"builder {plan.builder} has no {PurePosixPath(path).name} script at {path}",
            "fix the builder's io.openshift.s2i.scripts-url label, give --scripts-url, "
            "or add .s2i/bin/ scripts to the repository",
        ) from None


def _run_script(
    engine: Engine, cid: str, plan: _Plan, path: str, reporter: Reporter, what: str
) -> None:
    """_run; when it fails, a missing script is named as such (checked only then: the
    check costs a round trip that a good build does not need)."""
    try:
        _run(engine, cid, reporter, what)
    except (BuildError, EngineError):
        _check_script(engine, cid, plan, path)
        raise


def _run(engine: Engine, cid: str, reporter: Reporter, what: str) -> None:
    """Start, stream output as "output" events, wait; BuildError with the tail on failure."""
    out = engine.attach_output(cid)  # attached before start: no line is missed
    engine.start(cid)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    for line in lines(out):
        tail.append(line)
        reporter(Event("output", line, {"phase": what}))
    code = engine.wait(cid)
    if code != 0:
        raise BuildError(
            f"{what} failed with exit code {code}",
            "read its last lines above, fix the repository (or the builder), and build again",
            details="\n".join(tail),
        )


def _restore_artifacts(
    engine: Engine,
    plan: _Plan,
    cleanup: Leftovers,
    previous: Mapping[str, Any],
    cid: str,
    reporter: Reporter,
) -> bool:
    """save-artifacts in the previous image, its stdout unpacked at <dest>/artifacts."""
    save = plan.scripts.get("save-artifacts")
    if save is None:
        reporter(Event("warning", "--incremental: no save-artifacts script; building clean"))
        return False
    dest = plan.scripts.destination
    reporter(Event("step", "Saving artifacts from the previous image"))
    scid = ""
    try:
        scid = _create(
            engine,
            plan,
            cleanup,
            str(previous["Id"]),
            save.path,
            {},
            "save-artifacts",
            mounts=False,
        )
        if save.upload is not None:
            rel = str(PurePosixPath(save.path).relative_to(dest))
            tar = _files_tar(
                save.upload.parent, [TarFile(rel, path=save.upload, mode=0o755)], plan.uid
            )
            engine.put_archive(scid, dest, tar)
        engine.put_archive(cid, dest, _dir_tar("artifacts", plan.uid))
        out = engine.attach_stdout(scid)
        engine.start(scid)
        engine.put_archive(cid, f"{dest}/artifacts", out)
        code = engine.wait(scid, timeout=600)
        if code != 0:
            raise BuildError(f"save-artifacts exited with code {code}")
    except Nbs2iError as exc:
        reporter(Event("warning", f"--incremental: {exc.problem}; building clean"))
        return False
    finally:
        if scid:
            _drop(engine, cleanup, scid)
    return True


def _drop_if_dangling(engine: Engine, old_id: str, new_id: str) -> None:
    """The image the tag pointed to before, removed when the new build left it untagged."""
    if not old_id or old_id == new_id:
        return
    with contextlib.suppress(Nbs2iError):
        if not engine.inspect_image(old_id).get("RepoTags"):
            engine.remove_image(old_id)


def run_usage(engine: Engine, image: str, *, labels: Mapping[str, str] | None = None) -> str:
    """The output of an image's usage script (`nbs2i usage`)."""
    info = engine.inspect_image(image)
    config = info.get("Config") or {}
    scripts = resolve_scripts(scripts_url="", source_root=None, image_labels=config.get("Labels"))
    usage = scripts.get("usage")
    if usage is None:
        raise BuildError(
            f"image {image} has no usage script (no io.openshift.s2i.scripts-url label)",
            "give an S2I builder or an image built from one",
        )
    cid = engine.create_container(
        image,
        entrypoint=[""],
        command=[usage.path],
        labels={**(labels or {}), ROLE_LABEL: "usage"},
    )
    try:
        out = engine.attach_output(cid)
        engine.start(cid)
        text = "\n".join(lines(out))
        code = engine.wait(cid)
    finally:
        engine.remove_container(cid)
    if code != 0:
        raise BuildError(
            f"the usage script of {image} failed with exit code {code}",
            "check the image's scripts",
            details=text,
        )
    return text
