"""Dependency files: which count, what they ask for, and the cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i.building import deps
from nbs2i.errors import SourceError


def test_no_dependency_files(tmp_path: Path) -> None:
    (tmp_path / "a.ipynb").write_text("{}")
    assert deps.find(tmp_path) is None


def test_requirements_and_their_includes(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\n-r extra/more.txt\n-c constraints.txt\n")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra/more.txt").write_text("pandas\n")
    (tmp_path / "constraints.txt").write_text("numpy<3\n")
    found = deps.find(tmp_path)
    assert found is not None and not found.one_step
    assert [rel for rel, _ in found.files] == [
        "constraints.txt",
        "extra/more.txt",
        "requirements.txt",
    ]


def test_requirements_from_the_tree_get_no_layer_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-e .\n")
    found = deps.find(tmp_path)
    assert found is not None and found.one_step


@pytest.mark.parametrize("include", ["../outside.txt", "/etc/passwd"])
def test_an_include_leaving_the_source_is_refused(tmp_path: Path, include: str) -> None:
    (tmp_path / "requirements.txt").write_text(f"-r {include}\n")
    with pytest.raises(SourceError, match="outside the source"):
        deps.find(tmp_path)


def test_an_include_linking_out_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("token\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("-r more.txt\n")
    (src / "more.txt").symlink_to(secret)
    with pytest.raises(SourceError, match=r"more\.txt links outside the source"):
        deps.find(src)


def test_binder_directory_wins(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("ignored\n")
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "requirements.txt").write_text("numpy\n")
    (tmp_path / "binder" / "apt.txt").write_text("graphviz\n")
    found = deps.find(tmp_path)
    assert found is not None
    assert [rel for rel, _ in found.files] == ["binder/apt.txt", "binder/requirements.txt"]
    assert found.apt_packages == ("graphviz",)


def test_extra_kernels(tmp_path: Path) -> None:
    kernel = tmp_path / ".s2i" / "kernels" / "old-pandas"
    kernel.mkdir(parents=True)
    (kernel / "requirements.txt").write_text("pandas==1.5.3\n")
    (kernel / "display-name").write_text("Python (pandas 1.5)\n")
    found = deps.find(tmp_path)
    assert found is not None
    assert [rel for rel, _ in found.files] == [
        ".s2i/kernels/old-pandas/display-name",
        ".s2i/kernels/old-pandas/requirements.txt",
    ]
    (tmp_path / ".s2i" / "kernels" / "Bad Name").mkdir()
    with pytest.raises(SourceError, match="not a kernel name"):
        deps.find(tmp_path)


@pytest.mark.parametrize("name", sorted(deps.UNSUPPORTED))
def test_files_nbs2i_does_not_support_are_named(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("x\n")
    with pytest.raises(SourceError, match=f"{name} is not supported"):
        deps.find(tmp_path)


def test_apt_packages() -> None:
    text = b"# tools\ngraphviz  libgl1\n\ngraphviz # again\n"
    assert deps.apt_packages(text, "apt.txt") == ("graphviz", "libgl1")


@pytest.mark.parametrize(
    "line",
    ["-o APT::x=1", "/tmp/evil.deb", "../x.deb", "vim;reboot", "$(id)", "pkg=1.0", "Upper", "a"],
)
def test_apt_refuses_anything_but_package_names(line: str) -> None:
    with pytest.raises(SourceError, match=r"apt\.txt:2: .* is not a Debian package name"):
        deps.apt_packages(f"graphviz\n{line}\n".encode(), "apt.txt")


def test_key_changes_with_every_input() -> None:
    files = (("requirements.txt", b"numpy\n"),)
    base = deps.key({"base": "sha256:1", "assemble": "/a"}, files)
    assert len(base) == 20
    assert base == deps.key({"assemble": "/a", "base": "sha256:1"}, files)
    assert base != deps.key({"base": "sha256:2", "assemble": "/a"}, files)
    assert base != deps.key({"base": "sha256:1", "assemble": "/b"}, files)
    assert base != deps.key({"base": "sha256:1", "assemble": "/a"}, (("requirements.txt", b"x"),))
