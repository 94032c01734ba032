"""The real upstream `s2i` CLI with the nbs2i builder, and `nbs2i build` side by side.

Every S2I path a course uses, built once with s2i and once with nbs2i from the
same source: a directory; a Git repository (file://) with --ref and
--context-dir; a repository's .s2i/bin/run; a --scripts-url run script;
--incremental twice with requirements.txt behind the TLS proxy (the CA
mounted at /run/nbs2i/ca for s2i, --ca-bundle for nbs2i); --as-dockerfile
then `docker build`. Each image starts as a restricted platform starts it
(`restricted.container_spec`: random UID, GID 0, read-only root, tmpfs /tmp,
no capabilities, no-new-privileges, loopback port) and its API serves the
notebooks; `nbs2i verify` judges a selection; the two tools' images are
compared. Then `s2i rebuild` of an nbs2i image, the command lines `s2i usage`
prints (run as printed), and `s2i build --inject`.

The images are built once per module (fixtures) and shared by the tests that
only look at them. s2i runs with DOCKER_API_VERSION=1.41 and, like every
image here, names only references under a refusing loopback registry, so
nothing it does reaches a registry outside this machine (tests/support/s2i.py).
What s2i, nbs2i and the tests create is removed at the end of the module,
also after a failure; the module's teardown fails if anything is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i import restricted
from nbs2i.engine import ContainerSpec, Engine
from nbs2i.errors import Nbs2iError
from nbs2i.verify import VerifyOptions, verify
from nbs2i.verify.checks import Status, VerifyReport
from tests.support import s2i as upstream
from tests.support.builds import LECTURES, SAMPLES
from tests.support.cli import nbs2i
from tests.support.gitrepo import git, make_repo
from tests.support.images import build_directory
from tests.support.jupyter import Api
from tests.support.layers import scan
from tests.support.leftovers import assert_nothing_left, temp_dirs
from tests.support.session import LABELS, label_args
from tests.support.tracker import Tracker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        upstream.binary() is None,
        reason="the upstream s2i CLI is not on PATH: these tests compare nbs2i with it "
        "when an `s2i` binary (v1.3.8 or newer) is installed",
    ),
]

TOKEN = "nbs2i-test-" + uuid.uuid4().hex[:12]
READY_SECONDS = 90.0
VERIFY = VerifyOptions(labels=LABELS, start_timeout=90)
CA_MOUNT = "/run/nbs2i/ca"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
# A small pure-Python package, as a wheel only: pip never builds anything.
PACKAGE, VERSION = "six", "1.17.0"
# What the course's run script leaves in the server's environment and log.
RUN_MARK = "COURSE_RUN=ran"
RUN_LOG = "course run script: starting"
RUN_SCRIPT = f"""#!/bin/sh
# The course's own run script: it says so, leaves a mark in the server's
# environment, then runs the builder's.
echo "{RUN_LOG}" >&2
export {RUN_MARK}
exec /usr/libexec/s2i/run "$@"
"""
# s2i runs every script of a --scripts-url from there: a URL holding only
# `run` makes it look for assemble there too. This one runs the builder's.
ASSEMBLE_SCRIPT = """#!/bin/sh
exec /usr/libexec/s2i/assemble "$@"
"""
EXTRA_NOTEBOOK = "05-release-only.ipynb"

# Labels in which an nbs2i image and an s2i image of the same source differ by
# design: nbs2i describes the image it built, s2i copies the builder's.
DESCRIBING = (
    "io.k8s.description",
    "io.openshift.tags",
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
)
# Labels only nbs2i sets: OCI's time and revision, its role, and on an image
# with a dependency layer the key of that cached layer. s2i keeps the builder's
# licence on the course; nbs2i states none.
NBS2I_ONLY = (
    "org.opencontainers.image.created",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.revision",
    "nbs2i.role",
    "nbs2i.deps-key",
)
# Each tool names the image after its own tag.
DISPLAY_NAME = "io.k8s.display-name"
COMMIT_DATE = "io.openshift.s2i.build.commit.date"
# The provenance that `s2i rebuild` reads.
PROVENANCE = (
    "io.openshift.s2i.build.image",
    "io.openshift.s2i.build.source-location",
    "io.openshift.s2i.build.source-context-dir",
    "io.openshift.s2i.build.commit.id",
    "io.openshift.s2i.build.commit.ref",
    "io.openshift.s2i.build.commit.author",
    "io.openshift.s2i.build.commit.message",
)


# -- the sources -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    root: Path
    notebooks: Path  # sample-notebooks without requirements.txt
    with_run: Path  # the same plus .s2i/bin/run
    scripts: Path  # a --scripts-url directory: run and assemble
    repo: Path  # Git: week1/ on main; branch release adds a notebook and a top file
    with_deps: Path  # the notebooks plus a requirements.txt of one small package
    ca_dir: Path  # ca-bundle.crt: this machine's bundle plus a marker line
    ca_marker: bytes

    @property
    def repo_url(self) -> str:
        return self.repo.as_uri()

    @property
    def ca_bundle(self) -> Path:
        return self.ca_dir / "ca-bundle.crt"


def write_sources(root: Path) -> Sources:
    notebooks = root / "notebooks"
    shutil.copytree(SAMPLES, notebooks, ignore=shutil.ignore_patterns("requirements.txt"))
    with_run = root / "with-run"
    shutil.copytree(notebooks, with_run)
    executable(with_run / ".s2i" / "bin" / "run", RUN_SCRIPT)
    scripts = root / "scripts"
    executable(scripts / "run", RUN_SCRIPT)
    executable(scripts / "assemble", ASSEMBLE_SCRIPT)
    repo = root / "repo"
    make_repo(repo, notebooks, subdir="week1")
    git(repo, "checkout", "-q", "-b", "release")
    shutil.copy(notebooks / LECTURES[0], repo / "week1" / EXTRA_NOTEBOOK)
    (repo / "syllabus.md").write_text("Outside the context dir.\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Release: one more notebook")
    git(repo, "checkout", "-q", "main")
    with_deps = root / "with-deps"
    shutil.copytree(notebooks, with_deps)
    # The comment makes the file (and nbs2i's dependency cache key) this run's own.
    requirement = f"--only-binary=:all:\n{PACKAGE}=={VERSION}\n# {uuid.uuid4().hex}\n"
    (with_deps / "requirements.txt").write_text(requirement)
    ca_dir = root / "ca"
    ca_dir.mkdir()
    marker = f"nbs2i-test-ca-{uuid.uuid4().hex}".encode()
    bundle = Path(proxy_bundle()).read_bytes()
    # Text outside the PEM blocks is ignored by OpenSSL: the bundle still works,
    # and the marker finds any copy of it.
    (ca_dir / "ca-bundle.crt").write_bytes(b"# " + marker + b"\n" + bundle)
    return Sources(root, notebooks, with_run, scripts, repo, with_deps, ca_dir, marker)


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def proxy_bundle() -> str:
    """The bundle pip needs here: the one nbs2i would use, else the system's
    (a machine without an intercepting proxy needs no more)."""
    from nbs2i.ca import default_ca_bundle

    found = default_ca_bundle() or Path(SYSTEM_BUNDLE)
    if not found.is_file():
        pytest.skip(f"no CA bundle for pip ($PIP_CERT, or {SYSTEM_BUNDLE})")
    return str(found)


def listing(directory: Path) -> list[str]:
    """What a build of `directory` puts in the notebook directory (top level)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in (".s2i", "requirements.txt"))


# -- module fixtures: the builder under a private name, the tools, the clean-up ------


@pytest.fixture(scope="module")
def sources() -> Iterator[Sources]:
    root = Path(tempfile.mkdtemp(prefix="nbs2i-test-s2i-src-"))
    try:
        yield write_sources(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def builder(engine: Engine, builder_image: str) -> Iterator[str]:
    """The session's builder under a name private to this module (see
    tests/support/s2i.py); at the end every image built from that name, by
    either tool, tagged or left untagged, is removed, then the name."""
    alias = upstream.local_tag("s2i-builder")
    engine.tag(builder_image, alias)
    temp_before = temp_dirs()
    try:
        yield alias
    finally:
        upstream.remove_images_built_from(engine, alias)
        with contextlib.suppress(Nbs2iError):
            engine.remove_image(alias)
        prefix = upstream.container_prefix(alias)
        assert not [c.name for c in engine.containers() if c.name.startswith(prefix)]
        assert_nothing_left(engine, temp_before=temp_before)


@pytest.fixture(scope="module")
def made(engine: Engine, builder: str) -> Iterator[Tracker]:
    """The images this module made (tags, dependency caches); removed at the end."""
    tracker = Tracker(engine)
    try:
        yield tracker
    finally:
        tracker.cleanup()


@pytest.fixture(scope="module")
def s2i(engine: Engine, builder: str) -> upstream.S2i:
    path = upstream.binary()
    assert path is not None
    return upstream.S2i(engine, path, [builder])


@dataclass(frozen=True)
class Built:
    tool: str  # "s2i" or "nbs2i"
    image: str
    seconds: float
    log: str
    built_as: str = ""  # the tag the tool was given, when the image is now kept under another

    @property
    def name(self) -> str:
        return self.built_as or self.image


def s2i_build(s2i: upstream.S2i, made: Tracker, name: str, *args: str) -> Built:
    """`s2i build ARGS... TAG`: the image, tracked."""
    ref = made.image(upstream.local_tag(name))
    result = s2i("build", *args, ref).expect_ok()
    return Built("s2i", ref, result.seconds, result.output)


def nbs2i_build(made: Tracker, builder: str, name: str, *args: str) -> Built:
    """`nbs2i build ARGS... TAG --builder BUILDER`: the image, tracked, and the
    dependency layer it made (not one it merely reused)."""
    ref = made.image(upstream.local_tag(name))
    started = time.monotonic()
    done = nbs2i(
        "build", *args, ref, "--builder", builder, "--json", *label_args("--container-label")
    )
    seconds = time.monotonic() - started
    assert done.code == 0, done.stderr + done.stdout
    event = json.loads(done.stdout.strip().splitlines()[-1])
    assert event["event"] == "done", event
    if event.get("deps_image") and not event.get("deps_reused"):
        made.image(event["deps_image"])
    return Built("nbs2i", ref, seconds, done.stdout + done.stderr)


def both(
    s2i: upstream.S2i, made: Tracker, builder: str, name: str, *source_and_options: str
) -> tuple[Built, Built]:
    """The same source and options through `s2i build` and `nbs2i build`."""
    source, *options = source_and_options
    by_s2i = s2i_build(s2i, made, f"s2i-{name}", source, builder, *options)
    by_nbs2i = nbs2i_build(made, builder, f"nbs2i-{name}", source, *options)
    return by_s2i, by_nbs2i


@pytest.fixture(scope="module")
def from_directory(
    s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> tuple[Built, Built]:
    return both(s2i, made, builder, "dir", str(sources.notebooks))


@pytest.fixture(scope="module")
def from_git(
    s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> tuple[Built, Built]:
    return both(
        s2i, made, builder, "git", sources.repo_url, "--ref", "release", "--context-dir", "week1"
    )


@pytest.fixture(scope="module")
def with_run_script(
    s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> tuple[Built, Built]:
    return both(s2i, made, builder, "run", str(sources.with_run))


@pytest.fixture(scope="module")
def with_scripts_url(
    s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> tuple[Built, Built]:
    url = sources.scripts.as_uri()
    return both(s2i, made, builder, "scripts", str(sources.notebooks), "--scripts-url", url)


@pytest.fixture(scope="module")
def from_dockerfile(
    engine: Engine, s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> Iterator[tuple[Built, Built]]:
    """`--as-dockerfile` of the course with its own run script, then a real
    `docker build` of what each tool wrote."""
    out = Path(tempfile.mkdtemp(prefix="nbs2i-test-s2i-df-"))
    source = str(sources.with_run)
    by_s2i = made.image(upstream.local_tag("s2i-dockerfile"))
    by_nbs2i = made.image(upstream.local_tag("nbs2i-dockerfile"))
    try:
        written = s2i("build", source, builder, by_s2i, "--as-dockerfile", f"{out}/s2i/Dockerfile")
        written.expect_ok()
        assert not engine.image_exists(by_s2i), "s2i --as-dockerfile built an image"
        done = nbs2i(
            "build", source, by_nbs2i, "--builder", builder, "--as-dockerfile", str(out / "nbs2i")
        )
        assert done.code == 0, done.stderr
        assert not engine.image_exists(by_nbs2i), "nbs2i --as-dockerfile built an image"
        pair = []
        for tool, image in (("s2i", by_s2i), ("nbs2i", by_nbs2i)):
            started = time.monotonic()
            log = build_directory(engine, out / tool, image)
            pair.append(Built(tool, image, time.monotonic() - started, log))
        yield pair[0], pair[1]
    finally:
        shutil.rmtree(out, ignore_errors=True)


CASES = ("from_directory", "from_git", "with_run_script", "with_scripts_url", "from_dockerfile")
WITH_RUN_SCRIPT = ("with_run_script", "with_scripts_url", "from_dockerfile")


def expected_listing(case: str, sources: Sources) -> list[str]:
    if case == "from_git":
        return sorted([*listing(sources.notebooks), EXTRA_NOTEBOOK])
    return listing(sources.notebooks)


def run_in_image(engine: Engine, image: str, cmd: list[str]) -> tuple[int, str]:
    """(exit code, output) of cmd in a throwaway container of image, entrypoint
    cleared. The output is read from the log once the container ended: an
    attach can end before the last lines of a container that exits at once."""
    spec = ContainerSpec(image, command=tuple(cmd), entrypoint=(), labels=LABELS, network="none")
    cid = engine.create_container(spec)
    try:
        engine.start(cid)
        code = engine.wait(cid, timeout=120)
        return code, engine.logs(cid)
    finally:
        engine.remove_container(cid)


# -- starting an image as a restricted platform does -----------------------------------


@dataclass(frozen=True)
class Server:
    cid: str
    uid: int
    api: Api


def serve(engine: Engine, track: Tracker, image: str) -> Server:
    """Start `image` under the restricted flags with a known token; wait until
    its API takes the token. Fails with the log when it does not."""
    uid = restricted.random_uid()
    spec = restricted.container_spec(image, uid=uid, env={"JUPYTER_TOKEN": TOKEN}, labels=LABELS)
    cid = track.container(engine.create_container(spec))
    engine.start(cid)
    port = restricted.published_port(engine.inspect_container(cid), restricted.SERVER_PORT)
    assert port is not None, "8888 was not published"
    ready = restricted.wait_ready(
        engine, cid, port, timeout=READY_SECONDS, path=f"/api/status?token={TOKEN}"
    )
    if not ready.ready:
        pytest.fail(f"{image} did not answer ({ready}); log:\n{engine.logs(cid, tail=40)}")
    return Server(cid, uid, Api(port, TOKEN))


# What the server's process sees: the flags took effect, not only were asked for.
PLATFORM_FACTS = r"""
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "user=$(id -un)"
probe=/opt/app-root/src/.nbs2i-probe
if touch "$probe" 2>/dev/null; then echo root=writable; else echo root=read-only; fi
echo "tmp=$(awk '$2 == "/tmp" {print $3}' /proc/mounts)"
echo "caps=$(awk '/^CapEff:/ {print $2}' /proc/self/status)"
echo "no_new_privs=$(awk '/^NoNewPrivs:/ {print $2}' /proc/self/status)"
server=$(cut -d' ' -f1 /proc/1/task/1/children)
echo "server=$(tr '\0' ' ' < "/proc/$server/cmdline")"
if tr '\0' '\n' < "/proc/$server/environ" | grep -qx '@RUN_MARK@'; then
  echo course_run=ran
else
  echo course_run=absent
fi
if [ -e "$HOME/.s2i" ]; then echo home_s2i=present; else echo home_s2i=absent; fi
""".replace("@RUN_MARK@", RUN_MARK)


def platform_facts(engine: Engine, cid: str) -> dict[str, str]:
    # bash reads the image's profile (BASH_ENV): HOME and the name as the server has them.
    done = engine.exec(cid, ["bash", "-c", PLATFORM_FACTS])
    assert done.exit_code == 0, done.output
    return dict(line.split("=", 1) for line in done.output.splitlines() if "=" in line)


def test_s2i_version(s2i: upstream.S2i) -> None:
    """The suite speaks to the upstream release it was written against."""
    out = s2i("version").output
    assert re.search(r"\bv1\.3\.\d+", out), out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tool", ("s2i", "nbs2i"))
def test_starts_under_the_restricted_flags(
    request: pytest.FixtureRequest,
    engine: Engine,
    track: Tracker,
    sources: Sources,
    case: str,
    tool: str,
) -> None:
    """Random UID with GID 0, read-only root, tmpfs /tmp, no capabilities,
    no-new-privileges: the server answers with the course's notebooks, a
    course's run script ran (it is not hidden by the tmpfs), and no .s2i/
    reached the notebooks."""
    pair = request.getfixturevalue(case)
    built = pair[0] if tool == "s2i" else pair[1]
    server = serve(engine, track, built.image)
    assert server.api.names() == expected_listing(case, sources)
    facts = platform_facts(engine, server.cid)
    assert facts["uid"] == str(server.uid) and facts["gid"] == "0", facts
    assert facts["user"] == "jovyan", facts
    assert facts["root"] == "read-only" and facts["tmp"] == "tmpfs", facts
    assert facts["caps"] == "0000000000000000" and facts["no_new_privs"] == "1", facts
    assert facts["home_s2i"] == "absent", facts
    # Not a shell in the way: the run script exec'd the server.
    assert "jupyter-lab" in facts["server"], facts
    log = engine.logs(server.cid)
    if case in WITH_RUN_SCRIPT:
        assert RUN_LOG in log, log
        assert facts["course_run"] == "ran", facts
    else:
        assert RUN_LOG not in log and facts["course_run"] == "absent", facts


def not_passed(report: VerifyReport) -> list[str]:
    return [f"{c.id}={c.status.value}: {c.evidence}" for c in report.checks if c.status != "pass"]


def assert_consistent(report: VerifyReport) -> None:
    """The verdict on PID 1 never contradicts what the runtime checks saw."""
    init = report.get("init-pid1")
    runtime_ok = all(report.get(i).status is Status.PASS for i in ("reaps-orphans", "sigterm"))
    if runtime_ok:
        assert init.status in (Status.PASS, Status.WARN), init


@pytest.mark.parametrize(
    ("case", "tool"),
    [
        ("from_directory", "s2i"),
        ("from_git", "s2i"),
        ("from_directory", "nbs2i"),
        ("from_dockerfile", "s2i"),
        ("from_dockerfile", "nbs2i"),
    ],
)
def test_nbs2i_verify_passes(
    request: pytest.FixtureRequest, engine: Engine, case: str, tool: str
) -> None:
    pair = request.getfixturevalue(case)
    image = (pair[0] if tool == "s2i" else pair[1]).image
    report = verify(engine, image, VERIFY)
    assert report.ok, not_passed(report)
    assert_consistent(report)
    allowed = {"init-pid1"} if (case, tool) == ("from_dockerfile", "s2i") else set()
    assert {c.id for c in report.checks if c.status is Status.WARN} <= allowed, not_passed(report)
    if allowed:
        # s2i writes `CMD /tmp/scripts/run` (shell form): under tini -g a warning,
        # with the runtime evidence that signals and orphans are handled.
        init = report.get("init-pid1")
        assert init.status is Status.WARN and "process group" in init.evidence, init
        assert report.get("reaps-orphans").status is Status.PASS
        assert report.get("sigterm").status is Status.PASS


# -- the two tools give equivalent images ----------------------------------------------


NOTEBOOK_TREE = r"""
stat -c '%n %U:%G %a %F' /opt/app-root /opt/app-root/src
cd /opt/app-root/src && find . -mindepth 1 -printf '%P %U:%G %m %y %s\n' | sort
"""


def notebook_tree(engine: Engine, image: str) -> list[str]:
    code, out = run_in_image(engine, image, ["sh", "-c", NOTEBOOK_TREE])
    assert code == 0, out
    return out.splitlines()


def label_differences(
    s2i_labels: Mapping[str, str], nbs2i_labels: Mapping[str, str]
) -> dict[str, tuple[str | None, str | None]]:
    """Labels whose values differ, beyond the documented differences."""
    ours = {k: v for k, v in nbs2i_labels.items() if not k.startswith("nbs2i.test")}
    theirs = {k: v for k, v in s2i_labels.items() if not k.startswith("nbs2i.test")}
    expected = {*DESCRIBING, *NBS2I_ONLY, DISPLAY_NAME}
    return {
        key: (theirs.get(key), ours.get(key))
        for key in sorted(set(ours) | set(theirs))
        if key not in expected and theirs.get(key) != ours.get(key)
    }


@pytest.mark.parametrize("case", (*CASES, "incremental"))
def test_s2i_and_nbs2i_images_are_equivalent(
    request: pytest.FixtureRequest, engine: Engine, builder: str, case: str
) -> None:
    if case == "incremental":
        runs = request.getfixturevalue("incremental_builds")
        by_s2i, by_nbs2i = runs["s2i"].second.built, runs["nbs2i"].second.built
    else:
        by_s2i, by_nbs2i = request.getfixturevalue(case)
    theirs = engine.inspect_image(by_s2i.image).config
    ours = engine.inspect_image(by_nbs2i.image).config
    builder_labels = engine.inspect_image(builder).config.labels

    assert label_differences(theirs.labels, ours.labels) == {}
    assert theirs.labels["io.openshift.s2i.build.image"] == builder
    for key in PROVENANCE:
        assert theirs.labels.get(key) == ours.labels.get(key), key
    assert ours.labels.get(COMMIT_DATE) == theirs.labels.get(COMMIT_DATE)
    assert ours.labels[DISPLAY_NAME] == by_nbs2i.name
    assert theirs.labels[DISPLAY_NAME] == by_s2i.name
    # s2i copies the builder's description of itself; nbs2i describes the course.
    repository, _, version = by_nbs2i.name.rpartition(":")
    for key in DESCRIBING:
        assert theirs.labels.get(key) == builder_labels.get(key), key
        assert ours.labels.get(key) != builder_labels.get(key), key
    assert ours.labels["org.opencontainers.image.title"] == repository.rsplit("/", 1)[-1]
    assert ours.labels["org.opencontainers.image.version"] == version
    assert "builder" not in ours.labels["io.openshift.tags"].split(",")

    assert ours.entrypoint == theirs.entrypoint == builder_entrypoint(engine, builder)
    if case == "from_dockerfile":
        # s2i's Dockerfile: shell form, and /tmp/scripts (the builder's
        # entrypoint runs the copy assemble kept when a tmpfs hides it).
        assert theirs.cmd == ("/bin/sh", "-c", "/tmp/scripts/run")
        assert ours.cmd == ("/opt/app-root/s2i/scripts/run",)
    else:
        assert ours.cmd == theirs.cmd
    assert ours.user == theirs.user and ours.working_dir == theirs.working_dir
    assert ours.exposed_ports == theirs.exposed_ports

    tree = notebook_tree(engine, by_s2i.image)
    assert notebook_tree(engine, by_nbs2i.image) == tree
    assert not [line for line in tree if line.startswith(".s2i")]


def builder_entrypoint(engine: Engine, builder: str) -> tuple[str, ...]:
    return engine.inspect_image(builder).config.entrypoint


# -- incremental builds ----------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    built: Built
    image_id: str
    size: int
    top_layer: int  # bytes of the newest layer, as `docker history` shows it


@dataclass(frozen=True)
class Incremental:
    """A clean build, then two `--incremental` ones of the same source and tag."""

    first: Measured
    second: Measured
    third: Measured

    @property
    def figures(self) -> str:
        runs = (self.first, self.second, self.third)
        return (
            f"{' / '.join(f'{m.built.seconds:.2f}' for m in runs)} s, "
            f"image {' / '.join(f'{m.size / 1e6:.1f}' for m in runs)} MB, "
            f"top layer {' / '.join(f'{m.top_layer / 1e3:.1f}' for m in runs)} kB"
        )


def measure(engine: Engine, made: Tracker, built: Built, keep_as: str) -> Measured:
    """Size and top layer of a build; `keep_as` keeps the image under a second
    tag, so the next build under the same tag does not drop it."""
    info = engine.inspect_image(built.image)
    engine.tag(info.id, made.image(upstream.local_tag(keep_as)))
    kept = dataclasses.replace(built, image=upstream.local_tag(keep_as), built_as=built.image)
    return Measured(kept, info.id, info.size, engine.history(info.id)[0].size)


@pytest.fixture(scope="module")
def incremental_builds(
    engine: Engine, s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> dict[str, Incremental]:
    """`--incremental` three times with requirements.txt through the TLS proxy:
    with s2i (the CA mounted as the builder documents), with nbs2i
    (--ca-bundle; with its dependency layer, and without one: the artifacts
    path). The first build of each is a clean one: no previous image, no
    cache. s2i is told not to pull a previous image it does not have: it
    would retry for 30 s before building clean."""
    mount = f"{sources.ca_dir}:{CA_MOUNT}:ro"
    source = str(sources.with_deps)
    ca = ("--ca-bundle", str(sources.ca_bundle))
    s2i.own(upstream.local_tag("s2i-inc"))  # save-artifacts runs in the previous image
    plans = {
        "s2i": lambda: s2i_build(
            s2i, made, "s2i-inc", "--incremental", "--incremental-pull-policy", "never",
            "-v", mount, source, builder,
        ),
        "nbs2i": lambda: nbs2i_build(made, builder, "nbs2i-inc", source, "--incremental", *ca),
        "nbs2i-no-layer": lambda: nbs2i_build(
            made, builder, "nbs2i-inc-nl", source, "--incremental", "--no-dependency-layer", *ca
        ),
    }  # fmt: skip
    runs: dict[str, Incremental] = {}
    for name, build_once in plans.items():
        measured = [measure(engine, made, build_once(), f"{name}-inc-{n}") for n in range(3)]
        runs[name] = Incremental(*measured)
    return runs


@pytest.mark.parametrize("tool", ["s2i", "nbs2i", "nbs2i-no-layer"])
def test_incremental_build_is_no_larger_and_faster(
    incremental_builds: dict[str, Incremental], engine: Engine, tool: str
) -> None:
    """Incremental builds are no larger than the clean one (image and its new
    layer) and faster (the quicker of two, against one clean build: pip's
    network time is what they save, a second or so on this machine)."""
    runs = incremental_builds[tool]
    print(f"{tool}: clean / --incremental / --incremental: {runs.figures}")
    first, again = runs.first, (runs.second, runs.third)
    for measured in again:
        assert measured.size <= first.size, runs.figures
        assert measured.top_layer <= first.top_layer, runs.figures
    assert min(m.built.seconds for m in again) < first.built.seconds, runs.figures
    assert "Installing requirements.txt" in first.built.log, first.built.log
    for measured in again:
        assert "Installing requirements.txt" not in measured.built.log, measured.built.log
        if tool == "nbs2i":
            assert "Reusing the dependency layer" in measured.built.log, measured.built.log
        else:
            # The assemble container's log: the previous build's packages came back.
            assert "Reusing dependencies" in measured.built.log, measured.built.log
    show_version = f"import {PACKAGE}; print({PACKAGE}.__version__)"
    for measured in (first, *again):
        code, out = run_in_image(
            engine, measured.image_id, ["/opt/app-root/venv/bin/python", "-c", show_version]
        )
        assert (code, out.strip()) == (0, VERSION), out


@pytest.mark.parametrize("tool", ("s2i", "nbs2i"))
def test_ca_bundle_is_in_no_layer_and_no_variable(
    incremental_builds: dict[str, Incremental], engine: Engine, sources: Sources, tool: str
) -> None:
    """The CA reached pip during assemble (the package is installed) and left
    nothing: no copy of the bundle in any layer, no mount point or file under
    /run in the new layer, the mount point empty, no CA variable in ENV. For
    s2i both images (each ran its own assemble with the mount); for nbs2i the
    second holds the dependency layer pip wrote with the bundle mounted."""
    runs = incremental_builds[tool]
    images = (runs.first, runs.second) if tool == "s2i" else (runs.second,)
    for measured in images:
        found = scan(engine, measured.image_id, [sources.ca_marker])
        assert found.hits == (), found.hits
        assert not [e.name for e in found.top if e.name.startswith("run/")]
        config = engine.inspect_image(measured.image_id).config
        assert not set(config.env) & set(CA_VARIABLES), config.env
        assert not [v for v in config.env.values() if CA_MOUNT in v], config.env
        code, out = run_in_image(engine, measured.image_id, ["ls", "-A", CA_MOUNT])
        assert (code, out) == (0, ""), out


# -- s2i rebuild, s2i usage --------------------------------------------------------------


def test_s2i_rebuild_of_an_nbs2i_image(
    engine: Engine,
    track: Tracker,
    s2i: upstream.S2i,
    made: Tracker,
    from_git: tuple[Built, Built],
    sources: Sources,
) -> None:
    """s2i reads nbs2i's labels: the same builder, repository, ref and context
    dir, so the same commit and the same notebooks; the result starts under
    the restricted flags."""
    original = from_git[1].image
    rebuilt = made.image(upstream.local_tag("s2i-rebuilt"))
    s2i.own(original)
    s2i("rebuild", original, rebuilt).expect_ok()
    before = engine.inspect_image(original).config
    after = engine.inspect_image(rebuilt).config
    for key in PROVENANCE:
        assert after.labels.get(key) == before.labels.get(key), key
    assert after.cmd == before.cmd and after.entrypoint == before.entrypoint
    assert notebook_tree(engine, rebuilt) == notebook_tree(engine, original)
    server = serve(engine, track, rebuilt)
    assert server.api.names() == expected_listing("from_git", sources)


@dataclass(frozen=True)
class UsageRun:
    line: str  # as run: the example names replaced
    code: int
    output: str
    image: str
    left: tuple[str, ...] = ()  # what s2i left (containers, temp files)


def test_s2i_usage_shows_command_lines_that_work(
    engine: Engine, s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> None:
    """Every `s2i build` and `nbs2i build` line `s2i usage` prints runs as
    printed, with only the example names replaced by this test's (repository,
    builder, tag; nbs2i also gets --builder), in a directory holding
    `course-dir` and `ca/ca-bundle.crt` as the text says. The lines that pass
    the CA build a course with requirements.txt through the proxy. The
    `docker run` line asks for what the restricted platform is."""
    text = s2i("usage", builder).expect_ok().output
    s2i_lines = upstream.usage_commands(text, "s2i build")
    nbs2i_lines = upstream.usage_commands(text, "nbs2i build")
    assert any("--ref" in line and "--context-dir" in line for line in s2i_lines), s2i_lines
    assert any("--incremental" in line for line in s2i_lines), s2i_lines
    assert any(f":{CA_MOUNT}:ro" in line for line in s2i_lines), text
    assert any("--ca-bundle" in line for line in nbs2i_lines), nbs2i_lines

    work = Path(tempfile.mkdtemp(prefix="nbs2i-test-s2i-usage-"))
    try:
        plain = usage_directory(work / "plain", sources.notebooks, sources)
        deps = usage_directory(work / "deps", sources.with_deps, sources)
        runs = [
            run_usage_line(
                s2i, made, builder, sources, line, number, deps if passes_ca(line) else plain
            )
            for number, line in enumerate(s2i_lines + nbs2i_lines)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for run in runs:
        assert (run.code, run.left) == (0, ()), f"{run.line}\n{run.output}"
        assert engine.image_exists(run.image), run.line
        # No line makes s2i try to pull the tag it is about to build.
        assert "retrying in" not in run.output, run.output
        if passes_ca(run.line):
            assert "Installing requirements.txt" in run.output, run.output
            assert "CERTIFICATE_VERIFY_FAILED" not in run.output, run.output
            env = engine.inspect_image(run.image).config.env
            assert not set(env) & set(CA_VARIABLES), env

    docker_run = usage_docker_run(text)
    assert docker_run["--user"].endswith(f":{restricted.GID}")
    uid = int(docker_run["--user"].split(":")[0])
    assert restricted.UID_MIN <= uid <= restricted.UID_MAX
    assert docker_run["--read-only"] == "" and docker_run["--tmpfs"] == restricted.TMP
    assert docker_run["--cap-drop"] == ",".join(restricted.CAP_DROP)
    assert docker_run["--security-opt"] == restricted.NO_NEW_PRIVILEGES.removesuffix(":true")
    assert docker_run["-p"].startswith(f"{restricted.LOOPBACK}:")


def passes_ca(line: str) -> bool:
    """A usage line for a course that needs the proxy's CA: run with requirements.txt."""
    return f":{CA_MOUNT}:ro" in line or "--ca-bundle" in line


def usage_directory(path: Path, course: Path, sources: Sources) -> Path:
    """A working directory as the usage text expects it."""
    path.mkdir(parents=True)
    shutil.copytree(course, path / "course-dir")
    requirements = path / "course-dir" / "requirements.txt"
    if requirements.exists():
        # Its own dependency cache key: this test neither reuses nor spoils another's.
        requirements.write_text(requirements.read_text() + f"# {uuid.uuid4().hex}\n")
    shutil.copytree(sources.ca_dir, path / "ca")
    shutil.copy(sources.ca_bundle, path / "proxy-ca.pem")
    return path


def run_usage_line(
    s2i: upstream.S2i,
    made: Tracker,
    builder: str,
    sources: Sources,
    line: str,
    number: int,
    cwd: Path,
) -> UsageRun:
    image = made.image(upstream.local_tag(f"usage-{number}"))
    text = line.replace("https://example.org/course.git", sources.repo_url)
    text = re.sub(r"\bnbs2i/builder(-[a-z]+)?:latest\b", builder, text)
    text = text.replace("my/course:latest", image)
    if text.startswith("s2i "):
        result = s2i.line(text, cwd)
        return UsageRun(
            text, result.code, result.output, image, result.containers_left + result.temp_left
        )
    assert text.startswith("nbs2i "), text
    extra = ("--builder", builder, "--json", *label_args("--container-label"))
    done = nbs2i(*shlex.split(text.removeprefix("nbs2i ")), *extra, cwd=cwd)
    if done.code == 0:
        event = json.loads(done.stdout.strip().splitlines()[-1])
        if event.get("deps_image") and not event.get("deps_reused"):
            made.image(event["deps_image"])
    return UsageRun(text, done.code, done.stdout + done.stderr, image)


def usage_docker_run(text: str) -> dict[str, str]:
    """The options of the `docker run` line of the usage text."""
    line = upstream.usage_commands(text, "docker run")[0]
    words = shlex.split(line)
    options: dict[str, str] = {}
    i = 2
    while i < len(words) and words[i].startswith("-"):
        if words[i] in ("--rm", "--read-only"):
            options[words[i]] = ""
            i += 1
        else:
            options[words[i]] = words[i + 1]
            i += 2
    return options


# -- --inject --------------------------------------------------------------------------


def test_s2i_inject_leaves_a_world_writable_file_that_verify_fails(
    engine: Engine, s2i: upstream.S2i, made: Tracker, builder: str, sources: Sources
) -> None:
    """Upstream truncates an injected file in place after assemble: the name
    stays, empty. A pip.conf injected where pip reads a virtual environment's
    configuration stays as an empty, root-owned, world-writable file, which
    any UID could rewrite: `nbs2i verify` must fail that image."""
    conf = sources.root / "pip-conf"
    conf.mkdir(exist_ok=True)
    (conf / "pip.conf").write_text(f"[global]\ncert = {CA_MOUNT}/ca-bundle.crt\n")
    built = s2i_build(
        s2i, made, "s2i-inject", str(sources.notebooks), builder,
        "--inject", f"{conf}:/opt/app-root/venv",
    )  # fmt: skip
    code, out = run_in_image(
        engine, built.image, ["stat", "-c", "%s %a %U:%G", "/opt/app-root/venv/pip.conf"]
    )
    assert code == 0, out
    size, mode, owner = out.split()
    print(f"s2i --inject leaves /opt/app-root/venv/pip.conf: {size} bytes, {mode}, {owner}")
    assert size == "0"
    if int(mode, 8) & 0o002:
        report = verify(engine, built.image, dataclasses.replace(VERIFY, runtime=False))
        check = report.get("no-world-writable")
        assert check.status is Status.FAIL, check
        assert "/opt/app-root/venv/pip.conf" in check.evidence, check
        assert not report.ok


def test_nbs2i_inject_leaves_no_file(
    engine: Engine, made: Tracker, builder: str, sources: Sources
) -> None:
    """nbs2i mounts what it injects: the file is there while assemble runs (the
    repository's assemble prints it) and nowhere in the image."""
    conf = sources.root / "pip-conf-nbs2i"
    conf.mkdir(exist_ok=True)
    (conf / "pip.conf").write_text("[global]\ntimeout = 7\n")
    course = sources.root / "inject-course"
    shutil.copytree(sources.notebooks, course)
    executable(
        course / ".s2i" / "bin" / "assemble",
        "#!/bin/sh\ncat /run/course-secrets/pip.conf\nexec /usr/libexec/s2i/assemble\n",
    )
    built = nbs2i_build(
        made, builder, "nbs2i-inject", str(course), "--inject", f"{conf}:/run/course-secrets"
    )
    assert "timeout = 7" in built.log, built.log
    _, out = run_in_image(engine, built.image, ["sh", "-c", "ls -A /run/course-secrets 2>&1"])
    assert "pip.conf" not in out, out
    found = scan(engine, built.image, [b"timeout = 7"])
    assert found.hits == (), found.hits


def test_nbs2i_inject_into_an_existing_directory_keeps_it(
    engine: Engine, made: Tracker, builder: str, sources: Sources
) -> None:
    """As with s2i, an injected file joins the directory's content during
    assemble: a pip.conf next to the kernel environment's own files, which pip
    installs into. Afterwards the environment is whole and the file is gone."""
    conf = sources.root / "pip-conf-venv"
    conf.mkdir(exist_ok=True)
    (conf / "pip.conf").write_text("[global]\ntimeout = 31\n")
    built = nbs2i_build(
        made, builder, "nbs2i-inject-venv", str(sources.with_deps),
        "--inject", f"{conf}:/opt/app-root/venv", "--ca-bundle", str(sources.ca_bundle),
        "--no-dependency-layer",
    )  # fmt: skip
    show_version = f"import {PACKAGE}; print({PACKAGE}.__version__)"
    code, out = run_in_image(
        engine, built.image, ["/opt/app-root/venv/bin/python", "-c", show_version]
    )
    assert (code, out.strip()) == (0, VERSION), out
    _, out = run_in_image(engine, built.image, ["sh", "-c", "ls -A /opt/app-root/venv"])
    assert "pip.conf" not in out and "pyvenv.cfg" in out, out
    assert scan(engine, built.image, [b"timeout = 31"]).hits == ()
