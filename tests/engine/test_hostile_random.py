"""Random source trees: the image holds exactly what it should, and nothing else.

Hypothesis draws trees with odd names (spaces, unicode, leading dashes,
newlines, glob characters), links in, dangling and out, FIFOs, set-id modes
and `.s2iignore` rules with `!` (tests/support/trees.py, which computes the
expected result from the documented rules, not from nbs2i's code). Most
examples are checked against the tar nbs2i streams into the build (cheap);
a few are built for real, on the path where nbs2i writes the layer and on
the container path, and the image's new layer is compared entry by entry.
A link out of the source fails with one line naming it, and the secret it
points at is in no byte that was streamed before.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings

from nbs2i.archive import DEFAULT_EXCLUDE, check_source, tar_stream
from nbs2i.engine import Docker
from nbs2i.errors import SourceError
from tests.support.hostile import Sentinel, layer_builder, one_error_line, sentinel
from tests.support.layers import top_layer
from tests.support.sandbox import Sandbox
from tests.support.session import tag
from tests.support.tracker import Tracker
from tests.support.trees import Expected, Node, Tree, expected, materialize, tar_mode, trees

UID = 1001
EPOCH = 1_700_000_000
NOTEBOOK_DIR = "opt/app-root/src"
DECLARED = {"opt": (0, 0o755), "opt/app-root": (UID, 0o775), NOTEBOOK_DIR: (UID, 0o775)}


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Sentinel:
    return sentinel(tmp_path_factory.mktemp("build-host"))


@pytest.fixture(scope="module")
def layered(engine: Docker, session_tracker: Tracker, tiny_builder: str) -> str:
    return layer_builder(engine, tiny_builder, session_tracker.image(tag("tiny-layer-random")))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trees")


def check_entry(name: str, info: tarfile.TarInfo, data: bytes | None, node: Node) -> None:
    assert (info.uid, info.gid) == (UID, 0), f"{name}: owner {info.uid}:{info.gid}"
    if node.kind == "dir":
        assert info.isdir(), name
        assert info.mode & 0o7777 == tar_mode(node.mode), f"{name}: {oct(info.mode)}"
    elif node.kind == "file":
        assert info.isfile(), name
        assert data == node.data, name
        assert info.mode & 0o7777 == tar_mode(node.mode), f"{name}: {oct(info.mode)}"
    else:
        assert info.issym(), name
        assert info.linkname == node.target, name


def compare(entries: dict[str, tuple[tarfile.TarInfo, bytes | None]], want: Expected) -> None:
    """`entries` by path relative to the source: exactly the kept ones, as kept."""
    assert set(entries) == set(want.kept), (
        f"extra: {sorted(set(entries) - set(want.kept))!r}, "
        f"missing: {sorted(set(want.kept) - set(entries))!r}"
    )
    for rel, (info, data) in entries.items():
        check_entry(rel, info, data, want.kept[rel])


def streamed(root: Path) -> tuple[dict[str, tuple[tarfile.TarInfo, bytes | None]], bytes]:
    raw = b"".join(tar_stream(root, uid=UID, epoch=EPOCH, excludes=(DEFAULT_EXCLUDE,)))
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar:
            assert info.mtime <= EPOCH, info.name
            handle = tar.extractfile(info) if info.isfile() else None
            entries[info.name] = (info, handle.read() if handle else None)
    src = entries.pop("src")[0]
    assert src.isdir() and (src.uid, src.gid) == (UID, 0)
    return {name.removeprefix("src/"): entry for name, entry in entries.items()}, raw


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees())
def test_the_streamed_tar_holds_exactly_the_expected_entries(
    tree: Tree, secret: Sentinel, scratch: Path
) -> None:
    root = Path(tempfile.mkdtemp(dir=scratch)) / "src"
    try:
        materialize(_aimed(tree, secret), root)
        want = expected(_aimed(tree, secret), root)
        _label(tree, want)
        if want.links_out:
            with pytest.raises(SourceError) as refused:
                check_source(root)
            assert any(f"symlink {rel} " in str(refused.value) for rel in want.links_out)
            sent = b""
            with pytest.raises(SourceError):
                for chunk in tar_stream(root, uid=UID, epoch=EPOCH):
                    sent += chunk
            assert secret.token not in sent
            return
        check_source(root)
        entries, raw = streamed(root)
        compare(entries, want)
        assert secret.token not in raw
    finally:
        shutil.rmtree(root.parent)


def _label(tree: Tree, want: Expected) -> None:
    """What this example exercises (`--hypothesis-show-statistics` counts them)."""
    event("a link out" if want.links_out else "no link out")
    if any(r.negate for r in tree.rules):
        event("a negated rule")
    if len(want.kept) < len(tree.nodes) + 1:
        event("something left out")
    if any("\n" in n.rel for n in want.kept.values()):
        event("a kept name with a newline")
    if any(n.kind == "link" and not n.leaves for n in want.kept.values()):
        event("a kept link inside")


def _aimed(tree: Tree, secret: Sentinel) -> Tree:
    """The tree with its links out aimed at this run's secret."""
    from dataclasses import replace

    absolute = str(secret.path)
    nodes = tuple(
        replace(
            n,
            target=n.target.replace("/outside/secret", absolute).replace(
                "outside/secret", absolute.lstrip("/")
            ),
        )
        if n.leaves
        else n
        for n in tree.nodes
    )
    return replace(tree, nodes=nodes)


def layer_entries(engine: Docker, image: str) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    found = {}
    for entry in top_layer(engine, image):
        name = entry.name.rstrip("/")
        if name in DECLARED:
            owner, mode = DECLARED[name]
            assert (entry.info.uid, entry.info.mode & 0o7777) == (owner, mode), name
            continue
        assert name.startswith(NOTEBOOK_DIR + "/"), f"outside the notebook dir: {name!r}"
        found[name.removeprefix(NOTEBOOK_DIR + "/")] = (entry.info, entry.data)
    return found


@contextlib.contextmanager
def _source_of(
    box: Sandbox, engine: Docker, tree: Tree, secret: Sentinel, name: str
) -> Iterator[tuple[Path, str, Expected]]:
    """`tree` on disk, aimed at the secret, with the image name to build it as and
    what the image must hold; both removed afterwards, and nothing left."""
    root = Path(tempfile.mkdtemp(dir=box.tmp.parent)) / "src"
    image = box.image(tag(name))
    try:
        aimed = _aimed(tree, secret)
        materialize(aimed, root)
        want = expected(aimed, root)
        _label(tree, want)
        yield root, image, want
    finally:
        shutil.rmtree(root.parent)
        engine.remove_image(image, force=True)
        left = box.left()
        assert left.empty, left


def build_and_compare(
    box: Sandbox, engine: Docker, builder: str, tree: Tree, secret: Sentinel, *options: str
) -> None:
    with _source_of(box, engine, tree, secret, "random") as (root, image, want):
        result = box.nbs2i(*box.build_args(str(root), image, builder, *options), timeout=120)
        assert secret.token.decode() not in result.stdout + result.stderr
        if want.links_out:
            assert result.code != 0
            line = one_error_line(result)
            assert any(rel in line for rel in want.links_out), line
            assert not engine.image_exists(image)
            return
        assert result.code == 0, result.stderr
        compare(layer_entries(engine, image), want)


ENGINE_SETTINGS = settings(
    max_examples=4,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@ENGINE_SETTINGS
@given(tree=trees(max_nodes=10))
def test_a_written_layer_holds_exactly_the_expected_files(
    tree: Tree, box: Sandbox, engine: Docker, layered: str, secret: Sentinel
) -> None:
    build_and_compare(box, engine, layered, tree, secret)


def _movable(tree: Tree) -> bool:
    # The tiny builder's assemble moves `/tmp/src/* /tmp/src/.[!.]*`: a name that
    # starts with ".." would stay behind (nbs2i's own assemble moves them all).
    return not any(n.path[0].startswith("..") for n in tree.nodes)


@ENGINE_SETTINGS
@given(tree=trees(max_nodes=10).filter(_movable))
def test_the_assemble_container_gets_exactly_the_expected_files(
    tree: Tree, box: Sandbox, engine: Docker, tiny_builder: str, secret: Sentinel
) -> None:
    _assemble_and_compare(box, engine, tiny_builder, tree, secret)


def _assemble_and_compare(
    box: Sandbox, engine: Docker, builder: str, tree: Tree, secret: Sentinel
) -> None:
    with _source_of(box, engine, tree, secret, "random-assemble") as (root, image, want):
        args = box.build_args(str(root), image, builder, "--always-assemble", "-q")
        result = box.nbs2i(*args, timeout=120)
        assert secret.token.decode() not in result.stdout + result.stderr
        if want.links_out:
            assert result.code != 0
            return
        assert result.code == 0, result.stderr
        # The commit also holds assemble's own changes elsewhere (its cache, /tmp).
        found = {
            e.name.removeprefix(NOTEBOOK_DIR + "/"): (e.info, e.data)
            for e in top_layer(engine, image)
            if e.name.startswith(NOTEBOOK_DIR + "/")
        }
        compare(found, want)
