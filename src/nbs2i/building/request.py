"""What a build is asked to do, and what it made: the values that travel.

`check()` refuses every bad input before anything slow happens (no clone, no
engine call): the source URL's credentials, the tag's format, the UID range,
the pull policy, environment names and values (the -E files read), the
--scripts-url, inject destinations, the CA bundle, exclude patterns, the ref
and context dir syntax.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from nbs2i import defaults
from nbs2i.archive import compile_excludes
from nbs2i.ca import check_bundle
from nbs2i.errors import UsageError
from nbs2i.image import parse_uid_range
from nbs2i.reference import ImageRef, check_tag
from nbs2i.registry import access
from nbs2i.scripts import check_environment, given_scripts, host_environment
from nbs2i.source import check_location, check_ref_syntax, clean_context_dir

if TYPE_CHECKING:
    from nbs2i.nbtest.options import NotebookTestOptions

DEFAULT_EXCLUDES = (defaults.EXCLUDE,)
# An injection must not cover what makes the container a container.
_SYSTEM_DIRS = ("/proc", "/sys", "/dev")


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
        bad = clean == "/" or ".." in PurePosixPath(dest).parts
        if bad or any(clean == d or clean.startswith(d + "/") for d in _SYSTEM_DIRS):
            raise UsageError(
                f"--inject destination {dest!r} is not allowed",
                "give a directory of its own, e.g. /run/secrets/course",
            )
        return cls(path.resolve(), clean)


@dataclass(frozen=True)
class BuildRequest:
    source: str
    tag: str
    builder: str = ""  # "" = nbs2i/builder:<version>, built on first use
    ref: str = ""
    context_dir: str = ""
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    scripts_url: str = ""
    env: tuple[tuple[str, str], ...] = ()
    env_files: tuple[Path, ...] = ()
    injections: tuple[Injection, ...] = ()
    ca_bundle: Path | None = None
    assemble_user: str = ""
    allowed_uids: str = defaults.ALLOWED_UIDS
    pull_policy: str = defaults.PULL_POLICY
    network: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    incremental: bool = False
    dependency_layer: bool = True
    # Run assemble even when it would only move the files into place.
    always_assemble: bool = False
    push: bool = False
    # Labels put on every container and volume the build creates (CI and test
    # clean-up find them by these). The engine copies a container's labels into
    # its commit, so the images carry them too.
    container_labels: tuple[tuple[str, str], ...] = ()
    # --test: run the notebooks in the new image before the push; one that
    # does not pass fails the build (the tag stays, for a look inside).
    test: NotebookTestOptions | None = None
    # --run: the image is started here once built, so it must be in the engine.
    then_run: bool = False
    # Registry repositories that hold dependency layers (looked in, in order),
    # and the one the layers this build makes are pushed to.
    cache_from: tuple[str, ...] = ()
    cache_to: str = ""
    # More tags of TAG's repository the pushed image gets (a moving `latest`).
    also_tags: tuple[str, ...] = ()
    registry_access: access.Access = field(default_factory=access.Access)


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    builder: str
    labels: Mapping[str, str] = field(default_factory=dict)
    deps_image: str = ""  # the dependency layer's tag, "" when none
    deps_reused: bool = False
    caches_made: tuple[str, ...] = ()  # cache images this build created (apt, deps layers)
    incremental: bool = False  # artifacts from the previous image were used
    method: str = ""  # "layer": nbs2i wrote the notebook layer; "assemble": a container ran
    pushed: str = ""  # after --push: the reference pinned by digest
    seconds: float = 0.0


def check(request: BuildRequest) -> None:
    """Refuse bad input before any slow step; see the module docstring."""
    check_location(request.source)
    check_tag(request.tag, "TAG")
    if request.builder:
        check_tag(request.builder, "--builder")
    if request.pull_policy not in defaults.PULL_POLICIES:
        raise UsageError(
            f"--pull-policy {request.pull_policy!r}",
            f"give one of {', '.join(defaults.PULL_POLICIES)}",
        )
    parse_uid_range(request.allowed_uids)
    # The user's own files: read now, so a mistake costs no fetch.
    check_environment({**host_environment(request.env_files), **dict(request.env)})
    given_scripts(request.scripts_url)
    compile_excludes(request.excludes)
    clean_context_dir(request.context_dir)
    if request.ref:
        check_ref_syntax(request.ref)
    if request.ca_bundle is not None:
        check_bundle(Path(request.ca_bundle))
    if request.test is not None:
        from nbs2i.nbtest.options import check_options

        check_options(request.test)
    for repository in request.cache_from:
        check_cache_repository(repository, "--cache-from")
    if request.cache_to:
        check_cache_repository(request.cache_to, "--cache-to")
    access.check(request.registry_access)
    if request.also_tags and not request.push:
        raise UsageError("--also-tag tags what is pushed", "add --push")
    also_refs(request)


def also_refs(request: BuildRequest) -> tuple[str, ...]:
    """The references --also-tag names: TAG's repository with each tag, checked."""
    repository = ImageRef.parse(request.tag).repository
    return tuple(str(check_tag(f"{repository}:{tag}", "--also-tag")) for tag in request.also_tags)


def check_cache_repository(repository: str, option: str) -> None:
    """A cache is a repository: no tag, no digest (nbs2i names the tags)."""
    parsed = ImageRef.parse(repository)
    if parsed.tag or parsed.digest:
        raise UsageError(
            f"{option} {repository!r} names an image, not a repository",
            "give REGISTRY/NAME without a tag, e.g. registry.example.org/course/cache",
        )
