"""The dependency files as `nbs2i build` takes them: the layer's input, the
builder's labels, refusals as one SourceError, and the cache key. What each
file means is tested with its definition (test_depfiles*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.building import deps
from nbs2i.errors import SourceError

NBS2I_BUILDER = {labels.KERNEL_PYTHON: "3.11", labels.VARIANT: "minimal"}


def test_no_dependency_files(tmp_path: Path) -> None:
    (tmp_path / "a.ipynb").write_text("{}")
    assert deps.find(tmp_path) == deps.Found(None, ())


def test_requirements_and_their_includes(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\n-r extra/more.txt\n-c constraints.txt\n")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra/more.txt").write_text("pandas\n")
    (tmp_path / "constraints.txt").write_text("numpy<3\n")
    found = deps.find(tmp_path).deps
    assert found is not None and not found.one_step and not found.whole_source
    assert [rel for rel, _ in found.files] == [
        "constraints.txt",
        "extra/more.txt",
        "requirements.txt",
    ]


def test_requirements_from_the_tree_get_no_layer_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-e .\n")
    found = deps.find(tmp_path).deps
    assert found is not None and found.one_step


def test_binder_directory_wins_and_apt_packages_are_listed(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("ignored\n")
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "requirements.txt").write_text("numpy\n")
    (tmp_path / "binder" / "apt.txt").write_text("graphviz\n")
    found = deps.find(tmp_path)
    assert found.deps is not None
    assert [rel for rel, _ in found.deps.files] == ["binder/apt.txt", "binder/requirements.txt"]
    assert found.deps.apt_packages == ("graphviz",)
    assert found.notices == (
        ("ignored", "requirements.txt at the top is not used: binder/ holds the configuration"),
    )


def test_a_package_course_needs_its_whole_source(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "__init__.py").write_text("")
    found = deps.find(tmp_path).deps
    assert found is not None and found.whole_source
    assert [rel for rel, _ in found.files] == ["setup.py"]


def test_only_notices_make_no_layer(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    found = deps.find(tmp_path)
    assert found.deps is None and [kind for kind, _ in found.notices] == ["ignored"]


def test_a_refusal_is_one_source_error(tmp_path: Path) -> None:
    (tmp_path / "Pipfile").write_text("[packages]\n")
    with pytest.raises(SourceError) as caught:
        deps.find(tmp_path)
    assert caught.value.problem == "Pipfile is not supported (pipenv is not used)"
    assert caught.value.fix


@pytest.mark.parametrize(
    ("builder_labels", "python", "r"),
    [
        (NBS2I_BUILDER, "3.11", False),
        ({labels.KERNEL_PYTHON: "3.11", labels.VARIANT: "datascience"}, "3.11", True),
        ({labels.VARIANT: "r"}, None, True),
        ({}, None, None),
    ],
)
def test_the_builder_says_its_python_and_r(
    builder_labels: dict[str, str], python: str | None, r: bool | None
) -> None:
    facts = deps.builder_facts(builder_labels)
    assert (facts.python, facts.r) == (python, r)


def test_the_builders_labels_decide_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "runtime.txt").write_text("python-3.10\n")
    with pytest.raises(SourceError, match=r"the builder runs Python 3\.11"):
        deps.find(tmp_path, NBS2I_BUILDER)
    (tmp_path / "runtime.txt").unlink()
    (tmp_path / "install.R").write_text("1\n")
    with pytest.raises(SourceError, match="needs R, which this builder does not have"):
        deps.find(tmp_path, NBS2I_BUILDER)
    assert deps.find(tmp_path, {**NBS2I_BUILDER, labels.VARIANT: "r"}).deps is not None


def test_key_changes_with_every_input() -> None:
    files = (("requirements.txt", b"numpy\n"),)
    base = deps.key({"base": "sha256:1", "assemble": "/a"}, files)
    assert len(base) == 20
    assert base == deps.key({"assemble": "/a", "base": "sha256:1"}, files)
    assert base != deps.key({"base": "sha256:2", "assemble": "/a"}, files)
    assert base != deps.key({"base": "sha256:1", "assemble": "/b"}, files)
    assert base != deps.key({"base": "sha256:1", "assemble": "/a"}, (("requirements.txt", b"x"),))
