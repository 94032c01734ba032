"""The container path: the S2I steps against the engine, as upstream s2i runs them.

A container from the builder (or the dependency layer), ENTRYPOINT cleared,
runs as the assemble user; the source is streamed into `<dest>/src` and
uploaded scripts into `<dest>/scripts`; its output is streamed live; it is
committed with exactly the plan's config (`commit.py`). The dependency layer
is made the same way from the dependency files alone
(`NBS2I_ASSEMBLE_PHASE=deps`), with Debian packages from apt.txt installed
below it as root by a fixed command (never the repository's code).

Injected files (`--inject`, `--ca-bundle`) live in volumes mounted read-only
for the assemble run only, so no byte of them reaches a layer (upstream
truncates them in place, leaving their names). A destination the builder does
not have is the volume's mount point. One it has as a directory keeps its
files: the volume is mounted aside, and the command links the injected files
into the directory before assemble and removes the links after it. Build-only
variables (CA paths, the phase) are exported by the container's command, not
set in its environment: the engine copies a container's environment into its
commit.

Every container and volume made here is registered with the caller's
`Leftovers`, which removes them whatever happens.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from nbs2i import ca, interrupts, labels
from nbs2i.archive import TarFile, files_tar, tar_stream
from nbs2i.building.commit import commit
from nbs2i.building.plan import PHASE_VAR, BuildPlan, DepsStep
from nbs2i.building.request import Injection
from nbs2i.cleanup import Leftovers
from nbs2i.engine import ContainerSpec, Docker, Mount
from nbs2i.errors import BuildError, Nbs2iError
from nbs2i.progress import SHOWN_BYTES, SHOWN_LINES, Event, Reporter, bounded, shown_lines
from nbs2i.prune import owned_name
from nbs2i.source import Source

# Lines of a failed script's output shown above the error.
TAIL_LINES = 20
SAVE_ARTIFACTS_TIMEOUT = 600
# What an image's usage script may take: its output is printed, and the image
# is anyone's. Past either bound it is stopped, and its first lines shown.
USAGE_SECONDS = 30
USAGE_BYTES = 1 << 20
USAGE_SHOWN_LINES = 40
# Where a volume for a destination the builder already has is mounted.
STAGING_DIR = "/run/nbs2i/inject"
# Links each injected file into its destination ("add"), or removes exactly
# those links ("remove"); arguments are staging/destination pairs. Adding never
# replaces a file of the builder's.
LINKS_FUNCTION = """links() {
  op=$1; shift
  while [ $# -gt 1 ]; do
    for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
      [ -e "$f" ] || continue
      t="$2/${f##*/}"
      if [ "$op" = add ]; then
        if [ -e "$t" ] || [ -L "$t" ]; then
          echo "nbs2i: --inject: the builder already has $t; inject into a directory of its own" >&2
          return 1
        fi
        ln -s "$f" "$t" || return 1
      elif [ -L "$t" ] && [ "$(readlink "$t")" = "$f" ]; then
        rm -f "$t" || return 1
      fi
    done
    shift 2
  done
}"""
# Installs apt.txt's packages as root, then leaves no lists, caches or set-id
# bits behind, as the builder itself does. The names arrive as arguments,
# already checked to be Debian package names.
APT_SCRIPT = """set -eu
export DEBIAN_FRONTEND=noninteractive
marker=$(mktemp)
apt-get update -qq
apt-get install -y -qq --no-install-recommends -- "$@"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log "$marker"
find / -xdev -perm /6000 \\( -type f -o -type d \\) -exec chmod ug-s {} +
"""
# How every step that runs as root starts, in a container and in the
# Dockerfile alike: with an empty environment and a fixed PATH. apt, dpkg and
# their maintainer scripts read their environment (APT_CONFIG names a
# configuration file, /proc/self/environ among them, whose hooks run as root),
# so no variable of the repository's may reach them, whatever the order of
# the steps.
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_COMMAND = ("/usr/bin/env", "-i", f"PATH={ROOT_PATH}", "/bin/sh", "-c", APT_SCRIPT, "apt.txt")
# PID 1 of every container that runs a repository's or an image's code: runs
# the command ("$0" "$@") with stdin closed, and ends the container, every
# process in it, once its own stdin closes. The engine closes that stdin when
# nbs2i's attach connection ends, which the kernel does for a killed nbs2i
# too (SIGKILL, out of memory): nothing it started goes on writing.
GUARD_SCRIPT = """exec 3<&0 </dev/null
trap 'exit 143' TERM
"$0" "$@" 3<&- &
child=$!
{ while read -r _; do :; done <&3; kill -TERM $$; } &
exec 3<&-
wait "$child"
"""


class Containers:
    """Creates the build's containers: one place for what they all share."""

    def __init__(self, engine: Docker, plan: BuildPlan, leftovers: Leftovers) -> None:
        self.engine = engine
        self.plan = plan
        self.leftovers = leftovers
        self.mounts: tuple[Mount, ...] = ()
        self.mount_env: dict[str, str] = {}
        self.links: tuple[tuple[str, str], ...] = ()  # (staging dir, destination)

    def create(
        self,
        image: str,
        script: str,
        role: str,
        *,
        build_env: Mapping[str, str] | None = None,
        mounts: bool = True,
        user: str = "",
    ) -> str:
        env = {**(self.mount_env if mounts else {}), **(build_env or {})}
        spec = ContainerSpec(
            image=image,
            command=guarded(_command(script, env, self.links if mounts else ())),
            stdin=True,
            entrypoint=(),
            user=user or self.plan.user,
            env=dict(self.plan.env),
            labels=self.labels_for(role),
            name=owned_name(role),
            mounts=self.mounts if mounts else (),
            network=self.plan.request.network,
        )
        return self.leftovers.container(self.engine.create_container(spec))

    def inject(self, ca_bundle: Path | None) -> None:
        """Fill one volume per injection directory; mounted read-only during assemble."""
        kinds = self._probe({inj.dest for inj in self.plan.injections})
        injections = list(self.plan.injections)
        if ca_bundle is not None:
            injections.append(Injection(ca_bundle, ca.CA_DIR))
            self.mount_env = ca.environment()
        volumes: dict[str, str] = {}
        for inj in injections:
            if inj.dest not in volumes:
                volume = self.engine.create_volume(
                    owned_name(labels.ROLE_INJECT), labels=self.labels_for(labels.ROLE_INJECT)
                )
                volumes[inj.dest] = self.leftovers.volume(volume)
            self._fill(volumes[inj.dest], inj, is_ca=inj.dest == ca.CA_DIR)
        mounts, links = [], []
        for number, (dest, name) in enumerate(volumes.items()):
            target = dest
            if kinds.get(dest) == "dir":
                target = f"{STAGING_DIR}/{number}"
                links.append((target, dest))
            mounts.append(Mount(name, target, read_only=True))
        self.mounts, self.links = tuple(mounts), tuple(links)

    def _probe(self, destinations: set[str]) -> dict[str, str]:
        """What the builder has at each --inject destination; refuses anything
        but a directory or nothing, before a volume is made."""
        if not destinations:
            return {}
        cid = self._idle_container()
        kinds = {dest: self.engine.path_kind(cid, dest) for dest in sorted(destinations)}
        self.leftovers.drop(cid)
        for dest, kind in kinds.items():
            if kind not in ("", "dir"):
                what = {"file": "a file", "link": "a link"}.get(kind, "a special file")
                raise BuildError(
                    f"the --inject destination {dest} is {what} in the builder {self.plan.builder}",
                    "give a directory as DEST (new or existing), "
                    "e.g. --inject FILE:/run/secrets/course",
                )
        return kinds

    def _idle_container(self, *mounts: Mount) -> str:
        """A builder container that never starts: the engine answers archive
        requests on it (and mounts its volumes for them)."""
        spec = ContainerSpec(
            image=self.plan.builder,
            command=("/bin/sh",),
            entrypoint=(),
            labels=self.labels_for(labels.ROLE_INJECT),
            name=owned_name(labels.ROLE_INJECT),
            mounts=mounts,
        )
        return self.leftovers.container(self.engine.create_container(spec))

    def labels_for(self, role: str) -> dict[str, str]:
        return {**dict(self.plan.request.container_labels), labels.ROLE: role}

    def run(self, cid: str, path: str, reporter: Reporter, what: str) -> None:
        """Start, stream the output as "output" events (bounded: `shown_lines`),
        wait; BuildError with the last lines on failure. A missing script is named
        as such (checked only then: the check costs a round trip that a good build
        does not need). Whatever happens, the attach connection is closed on the
        way out, and with it the container's stdin: its guard ends it."""
        engine = self.engine
        out = engine.attach(cid)  # attached before start: no line is missed
        try:
            engine.start(cid)
            tail = shown_lines(
                out,
                lambda line: reporter(Event("output", line, {"phase": what})),
                lambda: reporter(Event("warning", _truncated(what))),
                tail=TAIL_LINES,
            )
            code = engine.wait(cid)
        finally:
            close(out)
        if code == 0:
            return
        if not engine.path_kind(cid, path):
            raise BuildError(
                f"builder {self.plan.builder} has no {PurePosixPath(path).name} script at {path}",
                "fix the builder's io.openshift.s2i.scripts-url label, give --scripts-url, "
                "or add .s2i/bin/ scripts to the repository",
            )
        raise BuildError(
            f"{what} failed with exit code {code}",
            "read its last lines above, fix the repository (or the builder), and build again",
            details="\n".join(tail),
        )

    def _fill(self, volume: str, inj: Injection, *, is_ca: bool) -> None:
        """Copy an injected file or directory into its volume."""
        cid = self._idle_container(Mount(volume, "/inject"))
        uid = self.plan.uid
        if inj.src.is_dir():
            stream = tar_stream(inj.src, uid=uid, epoch=None, prefix="", excludes=())
        else:
            name = ca.CA_FILE if is_ca else inj.src.name
            stream = files_tar([TarFile(name, path=inj.src, mode=0o640)], uid=uid)
        self.engine.put_archive(cid, "/inject", stream)
        self.leftovers.drop(cid)


def _truncated(what: str) -> str:
    return (
        f"{what} printed more than {SHOWN_LINES} lines or {SHOWN_BYTES >> 20} MiB: output "
        "truncated; the rest is read but not shown (its last lines are, should it fail)"
    )


def guarded(command: Sequence[str]) -> tuple[str, ...]:
    """The command under GUARD_SCRIPT; its container needs `stdin` (ContainerSpec)."""
    return ("/bin/sh", "-c", GUARD_SCRIPT, *command)


def close(stream: Iterator[bytes]) -> None:
    """Close an engine stream (a generator) now, not when it is collected."""
    closing = getattr(stream, "close", None)
    if closing is not None:
        closing()


def _command(
    script: str, extra_env: Mapping[str, str], links: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """The script, with build-only variables exported by /bin/sh, and the
    injected files linked in for its run only."""
    if not extra_env and not links:
        return [script]
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(extra_env.items()))
    head = f"export {exports}; " if exports else ""
    if not links:
        return ["/bin/sh", "-c", f'{head}exec "$0"', script]
    pairs = " ".join(f"{shlex.quote(staged)} {shlex.quote(dest)}" for staged, dest in links)
    body = (
        f"{LINKS_FUNCTION}\n{head}links add {pairs} || {{ links remove {pairs}; exit 1; }}\n"
        '"$0"; status=$?\n'
        f"links remove {pairs} || {{ echo 'nbs2i: cannot remove the --inject links' >&2; "
        "exit 1; }\n"
        "exit $status"
    )
    return ["/bin/sh", "-c", body, script]


# -- the dependency layer ------------------------------------------------------------


def apt_layer(containers: Containers, deps: DepsStep, reporter: Reporter) -> None:
    """Debian packages from apt.txt, installed as root by a fixed command."""
    assert deps.apt is not None
    engine, plan = containers.engine, containers.plan
    reporter(Event("step", f"Installing Debian packages {' '.join(deps.apt.packages)}"))
    spec = ContainerSpec(
        image=plan.builder,
        command=guarded((*APT_COMMAND, *deps.apt.packages)),
        stdin=True,
        entrypoint=(),
        user="0:0",
        labels=containers.labels_for(labels.ROLE_DEPS),
        name=owned_name(labels.ROLE_DEPS),
        network=plan.request.network,
    )
    cid = containers.leftovers.container(engine.create_container(spec))
    containers.run(cid, APT_COMMAND[0], reporter, "apt.txt")
    commit(engine, cid, deps.apt.tag, deps.apt.config, "nbs2i: Debian packages from apt.txt")
    containers.leftovers.drop(cid)


def deps_layer(containers: Containers, deps: DepsStep, source: Source, reporter: Reporter) -> None:
    """The dependency files alone (the whole source when the repository is
    installed as a package), installed by assemble in its deps phase."""
    engine, plan = containers.engine, containers.plan
    base = deps.apt.tag if deps.apt else plan.builder
    cid = containers.create(
        base, plan.assemble.path, labels.ROLE_DEPS, build_env={PHASE_VAR: "deps"}
    )
    if deps.whole_source:
        stream = _whole_source(plan, source)
    else:
        files = [TarFile(f"src/{rel}", data=data) for rel, data in deps.files]
        stream = files_tar(
            [*files, *plan.scripts.uploads()], uid=plan.uid, epoch=source.epoch, dirs=["src"]
        )
    engine.put_archive(cid, plan.scripts.destination, stream)
    containers.run(cid, plan.assemble.path, reporter, "dependency install")
    commit(engine, cid, deps.tag, deps.config, "nbs2i dependency layer")
    containers.leftovers.drop(cid)


def _whole_source(plan: BuildPlan, source: Source) -> Iterator[bytes]:
    """The source under src/, with the scripts assemble runs, as the container gets it."""
    return tar_stream(
        source.root,
        uid=plan.uid,
        epoch=source.epoch,
        prefix="src",
        excludes=plan.request.excludes,
        extra=plan.scripts.uploads(),
    )


# -- the notebooks ------------------------------------------------------------------


def assemble_image(
    containers: Containers, source: Source, previous: str, reporter: Reporter
) -> tuple[str, bool]:
    """Run assemble over the source; the committed image id, and whether the
    previous image's artifacts were used."""
    engine, plan = containers.engine, containers.plan
    cid = containers.create(plan.base, plan.assemble.path, labels.ROLE_ASSEMBLE)
    used = False
    if plan.incremental:
        used = restore_artifacts(containers, previous, cid, reporter)
        if not used:  # the container may hold part of a tar: start over
            containers.leftovers.drop(cid)
            cid = containers.create(plan.base, plan.assemble.path, labels.ROLE_ASSEMBLE)
    dest = plan.scripts.destination
    reporter(Event("step", f"Streaming the source into {dest}/src"))
    engine.put_archive(cid, dest, _whole_source(plan, source))
    reporter(Event("step", f"Running assemble as user {plan.user}"))
    containers.run(cid, plan.assemble.path, reporter, "assemble")
    return cid, used


def restore_artifacts(containers: Containers, previous: str, cid: str, reporter: Reporter) -> bool:
    """save-artifacts in the previous image, its stdout unpacked at <dest>/artifacts.
    Any failure: a warning, and False (the build goes on clean)."""
    engine, plan = containers.engine, containers.plan
    save = plan.scripts.get("save-artifacts")
    if not previous or save is None:
        why = f"no previous {plan.request.tag}" if not previous else "no save-artifacts script"
        reporter(Event("warning", f"--incremental: {why}; building clean"))
        return False
    dest = plan.scripts.destination
    reporter(Event("step", "Saving artifacts from the previous image"))
    scid = ""
    out: Iterator[bytes] = iter(())
    try:
        scid = containers.create(previous, save.path, labels.ROLE_SAVE_ARTIFACTS, mounts=False)
        if save.content is not None:
            rel = str(PurePosixPath(save.path).relative_to(dest))
            engine.put_archive(
                scid, dest, files_tar([TarFile(rel, data=save.content, mode=0o755)], uid=plan.uid)
            )
        engine.put_archive(cid, dest, files_tar([], uid=plan.uid, dirs=["artifacts"]))
        out = engine.attach(scid, stderr=False)
        engine.start(scid)
        engine.put_archive(cid, f"{dest}/artifacts", out)
        code = engine.wait(scid, timeout=SAVE_ARTIFACTS_TIMEOUT)
        if code != 0:
            raise BuildError(f"save-artifacts exited with code {code}")
    except Nbs2iError as exc:
        reporter(Event("warning", f"--incremental: {exc.problem}; building clean"))
        return False
    finally:
        close(out)
        if scid:
            containers.leftovers.drop(scid)
    return True


def run_usage(engine: Docker, image: str, container_labels: Mapping[str, str]) -> str:
    """The output of an image's usage script (`nbs2i usage`), which the image
    controls: bounded in time and size; the container is removed whatever
    happens (a signal included)."""
    from nbs2i.scripts import resolve_scripts

    info = engine.inspect_image(image)
    scripts = resolve_scripts(scripts_url="", source_root=None, image_labels=info.config.labels)
    usage = scripts.get("usage")
    if usage is None:
        raise BuildError(
            f"image {image} has no usage script (no {labels.SCRIPTS_URL} label)",
            "give an S2I builder or an image built from one",
        )
    leftovers = Leftovers(engine)
    spec = ContainerSpec(
        image=image,
        command=guarded((usage.path,)),
        stdin=True,
        entrypoint=(),
        labels={**container_labels, labels.ROLE: labels.ROLE_USAGE},
        name=owned_name(labels.ROLE_USAGE),
        network="none",
    )
    try:
        cid = leftovers.container(engine.create_container(spec))
        # Read by `bounded`'s thread; removing the container ends it.
        out = engine.attach(cid)
        engine.start(cid)
        read = bounded(out, seconds=USAGE_SECONDS, limit=USAGE_BYTES)
        text = read.data.decode("utf-8", "replace")
        if read.stopped:
            raise _usage_stopped(image, read.stopped, text)
        code = engine.wait(cid, timeout=USAGE_SECONDS)
    finally:
        with interrupts.deferred():
            leftovers.remove_all()
    if code != 0:
        raise BuildError(
            f"the usage script of {image} failed with exit code {code}",
            "check the image's scripts",
            details=text,
        )
    return text.removesuffix("\n")


def _usage_stopped(image: str, why: str, text: str) -> BuildError:
    limit = f"did not finish in {USAGE_SECONDS} s" if why == "time" else "printed more than 1 MiB"
    shown = "\n".join(text.split("\n", USAGE_SHOWN_LINES)[:USAGE_SHOWN_LINES])
    return BuildError(
        f"the usage script of {image} {limit}: it was stopped and removed",
        "fix the image's usage script: it should print its help and exit",
        details=shown,
    )
