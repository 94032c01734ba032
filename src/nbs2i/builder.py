"""Build the hardened builder image from the s2i/ directory shipped with nbs2i.

The build goes through the engine seam (no `docker` CLI): the context is a
small in-memory tar of s2i/, the definition of the course dependency files
(`nbs2i.depfiles`, as `lib/depfiles/`: assemble asks it what to install, so
both build paths decide alike) and, when given, a CA bundle named
`ca-bundle.pem` that only the Dockerfile's build stage copies (so pip can
reach PyPI behind a TLS-intercepting proxy); the final stage never sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nbs2i import __version__, defaults
from nbs2i.ca import check_bundle, default_ca_bundle
from nbs2i.engine import BuildEvent, BuildSpec, Docker, ImageInfo
from nbs2i.errors import BuildError, NotFound, UsageError
from nbs2i.progress import Event, Reporter, silent

# The name the Dockerfile's build stage COPYs the bundle from.
CA_BUNDLE_NAME = "ca-bundle.pem"
# Appended to the bundle in the context (PEM readers skip text outside
# certificates): lets a test prove that no layer of the final image holds it.
CA_BUNDLE_MARKER = b"# nbs2i: CA bundle of the builder's build stage; never in the final image\n"
# Where the context (and the builder, under /usr/libexec/s2i) has nbs2i.depfiles.
DEPFILES_DIR = "lib/depfiles"
# Lines of build output kept for the error message of a failed build.
TAIL_LINES = 20


@dataclass(frozen=True)
class BuilderRequest:
    """What to build: the base image, the tags, how pip reaches its index."""

    tags: tuple[str, ...]
    base_image: str = defaults.BASE_IMAGE
    ca_bundle: Path | None = None
    pip_index_url: str = ""
    nocache: bool = False
    variant: str = defaults.VARIANT
    jupyterhub_major: str = defaults.JUPYTERHUB_MAJOR


@dataclass(frozen=True)
class BuilderResult:
    image_id: str
    tags: tuple[str, ...]
    seconds: float


def default_tags(
    version: str = __version__,
    variant: str = defaults.VARIANT,
    jupyterhub_major: str = defaults.JUPYTERHUB_MAJOR,
) -> tuple[str, ...]:
    """`nbs2i/builder[-VARIANT]:<version>` and `:latest`; a builder for an older
    JupyterHub gets `-jupyterhubN` after both, so it never replaces the default."""
    repository = defaults.BUILDER_REPOSITORY
    if variant != defaults.VARIANT:
        repository += f"-{variant}"
    suffix = (
        "" if jupyterhub_major == defaults.JUPYTERHUB_MAJOR else f"-jupyterhub{jupyterhub_major}"
    )
    # A local version such as 0.1.0+dirty is not a valid tag.
    safe = version.replace("+", "-")
    return (f"{repository}:{safe}{suffix}", f"{repository}:latest{suffix}")


def s2i_dir() -> Path:
    """The builder's sources: the installed package's nbs2i/s2i, else the
    source tree's s2i/ (an editable install or a checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "s2i", here.parent.parent / "s2i"):
        if (candidate / "Dockerfile").is_file():
            return candidate
    raise NotFound(
        "the builder sources (s2i/Dockerfile) are not in this nbs2i installation",
        "reinstall nbs2i, or run from a source checkout",
    )


def depfiles_files() -> list[tuple[str, Path]]:
    """The dependency-file definition as the builder carries it: (name in the
    context, file), sorted by name."""
    package = Path(__file__).resolve().parent / "depfiles"
    return [(f"{DEPFILES_DIR}/{p.name}", p) for p in sorted(package.glob("*.py"))]


def shipped_assemble_digest() -> str:
    """The sha256 of what decides what assemble does, as this nbs2i ships it:
    bin/assemble, bin/depfiles and lib/depfiles/*.py, one after the other (""
    when they cannot be read). A builder built from them carries the same value
    in a label; then nbs2i knows what its assemble does."""
    try:
        bin_dir = s2i_dir() / "bin"
        paths = [bin_dir / "assemble", bin_dir / "depfiles", *(p for _, p in depfiles_files())]
        return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()
    except (NotFound, OSError):
        return ""


def check_request(request: BuilderRequest) -> None:
    """Refuse bad input before anything is sent to the engine."""
    if not request.tags:
        raise UsageError("no tag for the builder image", "pass --tag NAME:TAG")
    for tag in request.tags:
        if not tag or any(ch.isspace() for ch in tag) or tag.endswith(":"):
            raise UsageError(f"{tag!r} is not an image tag", "use NAME[:TAG], e.g. my/builder:1")
    if request.ca_bundle is not None:
        check_bundle(request.ca_bundle)
    if request.variant not in defaults.VARIANTS:
        raise UsageError(
            f"--variant {request.variant!r}", f"give one of {', '.join(defaults.VARIANTS)}"
        )
    if request.jupyterhub_major not in defaults.JUPYTERHUB_MAJORS:
        raise UsageError(
            f"--jupyterhub {request.jupyterhub_major!r}",
            f"give one of {', '.join(defaults.JUPYTERHUB_MAJORS)}",
        )
    url = request.pip_index_url
    if url and not url.startswith(("http://", "https://", "file://")):
        raise UsageError(f"--pip-index-url {url!r} is not a URL", "use https://HOST/simple")


def build_context(source: Path, ca_bundle: Path | None = None) -> bytes:
    """The docker build context: s2i/ (minus caches), nbs2i.depfiles and the
    optional bundle.

    Modes are fixed here, not taken from disk: scripts 0755, the rest 0644,
    owned by root. A wheel install that lost the x bits still builds right.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if "__pycache__" in rel.parts or path.suffix == ".pyc" or rel.name == CA_BUNDLE_NAME:
                continue
            info = tar.gettarinfo(str(path), arcname=rel.as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isdir():
                info.mode = 0o755
            elif info.isfile():
                executable = rel.parts[0] == "bin" and rel.name != "profile"
                info.mode = 0o755 if executable else 0o644
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
        for name, path in depfiles_files():
            _add_file(tar, name, path.read_bytes())
        if ca_bundle is not None:
            data = ca_bundle.read_bytes().rstrip(b"\n") + b"\n" + CA_BUNDLE_MARKER
            _add_file(tar, CA_BUNDLE_NAME, data)
    return buffer.getvalue()


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def build_builder(
    engine: Docker, request: BuilderRequest, report: Reporter = silent
) -> BuilderResult:
    """Build the builder image and tag it; progress goes to `report`."""
    check_request(request)
    if not engine.image_exists(request.base_image):
        raise NotFound(
            f"the base image {request.base_image} is not in the engine",
            "pull or import it first (scripts/ensure-base-image makes debian:bookworm-slim "
            "offline), or pass --from IMAGE",
        )
    source = s2i_dir()
    report(Event("step", f"Building the builder image {request.tags[0]} from {source}"))
    if request.ca_bundle is not None:
        report(Event("step", f"Using the CA bundle {request.ca_bundle} (build stage only)"))
    context = build_context(source, request.ca_bundle)
    started = time.monotonic()
    stream = engine.build(
        BuildSpec(
            context=context,
            tag=request.tags[0],
            buildargs=_build_args(request),
            nocache=request.nocache,
        )
    )
    image_id = _follow(stream, report)
    for tag in request.tags[1:]:
        engine.tag(image_id, tag)
    seconds = time.monotonic() - started
    report(
        Event(
            "done",
            f"Built {image_id[:19]} as {', '.join(request.tags)} in {seconds:.0f}s",
            {"image_id": image_id, "tags": list(request.tags), "seconds": round(seconds, 1)},
        )
    )
    return BuilderResult(image_id, request.tags, seconds)


def _build_args(request: BuilderRequest) -> dict[str, str]:
    args = {
        "BASE_IMAGE": request.base_image,
        "NBS2I_VERSION": __version__,
        "NBS2I_ASSEMBLE_SHA256": shipped_assemble_digest(),
        "NBS2I_VARIANT": request.variant,
        "JUPYTERHUB_MAJOR": request.jupyterhub_major,
    }
    if request.pip_index_url:
        args["PIP_INDEX_URL"] = request.pip_index_url
    return args


def _follow(stream: Iterator[BuildEvent], report: Reporter) -> str:
    """Turn the engine's build events into progress events; the image id."""
    tail: list[str] = []
    image_id = ""
    for event in stream:
        if event.error:
            raise BuildError(
                f"the builder image build failed: {event.error[:300]}",
                "read the build output above; behind a TLS-intercepting proxy pass --ca-bundle",
                details="\n".join(tail[-TAIL_LINES:]),
            )
        image_id = event.image_id or image_id
        for line in event.stream.splitlines():
            line = line.rstrip()
            if not line:
                continue
            tail.append(line)
            del tail[:-TAIL_LINES]
            if line.startswith("Step "):
                report(Event("step", line))
            else:
                report(Event("output", line))
            if line.startswith("Successfully built ") and not image_id:
                image_id = line.split()[-1]
    if not image_id:
        raise BuildError(
            "the builder image build ended without an image",
            "rerun; if it repeats, check the engine's log",
            details="\n".join(tail[-TAIL_LINES:]),
        )
    return image_id


# -- finding the builder a build needs ------------------------------------------------


def ensure_builder(
    engine: Docker, ref: str, policy: str, *, is_default: bool, report: Reporter = silent
) -> ImageInfo:
    """The builder, pulled or built as the pull policy says: `always` pulls,
    `if-not-present` pulls (or, for nbs2i's own default builder, builds it) when
    absent, `never` only looks."""
    hint = (
        "`nbs2i builder build`"
        if is_default
        else f"`docker pull {ref}` (or `nbs2i builder build` for nbs2i's own builder)"
    )
    if policy == "always" and not is_default:
        report(Event("step", f"Pulling {ref}"))
        engine.pull(ref)
    with contextlib.suppress(NotFound):
        return engine.inspect_image(ref)
    if policy == "never":
        raise NotFound(
            f"builder image {ref} is not in the engine (--pull-policy never)", f"run {hint} first"
        )
    if is_default:
        report(Event("step", f"Building the builder image {ref} (first use)"))
        request = BuilderRequest(tags=default_tags(), ca_bundle=default_ca_bundle())
        build_builder(engine, request, report)
    else:
        report(Event("step", f"Pulling {ref}"))
        engine.pull(ref)
    return engine.inspect_image(ref)
