"""environment.yml and environment.yaml, installed with pip: conda's version
specs in pip's words, the small name table, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i.depfiles import Builder, Refused, Tree, conda, decide

NBS2I = Builder(python="3.11", r=False)


def requirements(text: str, python: str | None = "3.11") -> list[str]:
    return conda.environment_requirements(text.encode(), "environment.yml", python)[0]


def refusal(text: str) -> str:
    with pytest.raises(Refused) as caught:
        requirements(text)
    return str(caught.value)


@pytest.mark.parametrize(
    ("spec", "pip"),
    [
        ("numpy", ("numpy", "")),
        ("numpy=1.26", ("numpy", "==1.26.*")),
        ("numpy=1.26.4", ("numpy", "==1.26.4.*")),
        ("numpy=1.26.*", ("numpy", "==1.26.*")),
        ("numpy==1.26.4", ("numpy", "==1.26.4")),
        ("numpy==1.26.*", ("numpy", "==1.26.*")),
        ("numpy 1.26", ("numpy", "==1.26")),
        ("numpy 1.26.*", ("numpy", "==1.26.*")),
        ("numpy 1.26*", ("numpy", "==1.26.*")),
        ("numpy>=1.2", ("numpy", ">=1.2")),
        ("numpy >= 1.2 , < 2", ("numpy", ">=1.2,<2")),
        ("numpy>=1.2,<2.0", ("numpy", ">=1.2,<2.0")),
        ("numpy!=1.25.0", ("numpy", "!=1.25.0")),
        ("numpy~=1.26", ("numpy", "~=1.26")),
        ("numpy *", ("numpy", "")),
        ("numpy>=1.2.*", ("numpy", ">=1.2")),
        ("scikit-learn=1.4", ("scikit-learn", "==1.4.*")),
        ("ruamel.yaml", ("ruamel.yaml", "")),
    ],
)
def test_conda_specs_become_pip_specifiers(spec: str, pip: tuple[str, str]) -> None:
    assert conda.pip_requirement(spec) == pip


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("conda-forge::numpy", "from a channel"),
        ("numpy=1.26=py311h64a7726_0", "a conda build"),
        ("numpy 1.26 py311h64a7726_0", "a conda build"),
        ("numpy>=1.2|<1.0", "an 'or' pip cannot express"),
        ("numpy[version='>=1.2']", "is not a package pip can read"),
        ("numpy>=1.2;rm", "a version pip cannot read"),
    ],
)
def test_what_pip_cannot_say_is_refused(spec: str, words: str) -> None:
    with pytest.raises(Refused, match=words.replace("(", r"\(")):
        conda.pip_requirement(spec)


@pytest.mark.parametrize(("name", "pip"), sorted(conda.PIP_NAMES.items()))
def test_known_renames(name: str, pip: str) -> None:
    assert requirements(f"dependencies: [{name}=1.0]") == [f"{pip}==1.0.*"]


def test_a_typical_course_environment(tmp_path: Path) -> None:
    text = (
        "name: course\n"
        "channels: [conda-forge, defaults]\n"
        "dependencies:\n"
        "  - python=3.11\n"
        "  - pip\n"
        "  - numpy=1.26\n"
        "  - pandas>=2\n"
        "  - matplotlib-base\n"
        "  - pytorch\n"
        "  - pip:\n"
        "    - requests==2.31.0\n"
        "    - -r extra.txt\n"
    )
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder/environment.yml").write_text(text)
    (tmp_path / "binder/extra.txt").write_text("six\n")
    (tmp_path / "binder/requirements.txt").write_text("ignored\n")
    decision = decide(Tree(tmp_path), NBS2I)
    (action,) = decision.actions
    assert (action.kind, action.path) == ("environment", "binder/environment.yml")
    assert action.requirements == (
        "numpy==1.26.*",
        "pandas>=2",
        "matplotlib",
        "torch",
        "requests==2.31.0",
        "-r extra.txt",
    )
    assert [rel for rel, _ in decision.files] == ["binder/environment.yml", "binder/extra.txt"]
    assert decision.notices == (
        ("ignored", "binder/requirements.txt is not used: binder/environment.yml is "
         "(as repo2docker does)"),
        ("info", "binder/environment.yml installed with pip (matplotlib-base as matplotlib, "
         "pytorch as torch); conda is not used"),
    )  # fmt: skip


@pytest.mark.parametrize("name", ["environment.yml", "environment.yaml"])
def test_both_spellings_are_one_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("dependencies: [six]\n")
    (action,) = decide(Tree(tmp_path), NBS2I).actions
    assert (action.path, action.requirements) == (name, ("six",))


def test_both_spellings_at_once_are_refused(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("dependencies: [six]\n")
    (tmp_path / "environment.yaml").write_text("dependencies: [six]\n")
    with pytest.raises(Refused, match=r"environment\.yml and environment\.yaml both exist"):
        decide(Tree(tmp_path), NBS2I)


def test_with_an_environment_the_package_is_not_installed(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("dependencies: [six]\n")
    (tmp_path / "setup.py").write_text("")
    decision = decide(Tree(tmp_path), NBS2I)
    assert [a.kind for a in decision.actions] == ["environment"]
    assert (
        "ignored",
        "setup.py is not installed: environment.yml is used (as repo2docker does)",
    ) in decision.notices


def test_a_pip_list_from_the_source_tree_is_noted(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("dependencies:\n  - pip:\n    - -e .\n")
    assert decide(Tree(tmp_path), NBS2I).local == "environment.yml installs from the source tree"


@pytest.mark.parametrize(
    ("dependency", "words"),
    [
        ("r-base=4.3", "asks for r-base, a conda package pip cannot install: R comes from"),
        ("r-ggplot2", "asks for r-ggplot2, a conda package"),
        ("cudatoolkit=11.8", "asks for cudatoolkit, a conda package pip cannot install: list"),
        ("_libgcc_mutex=0.1", "asks for _libgcc_mutex, a conda package"),
        ("libgcc-ng", "asks for libgcc-ng, a conda package"),
        ("graphviz", "asks for graphviz, a conda package"),
        ("conda-forge::numpy", "asks for conda-forge::numpy from a channel"),
        ("numpy=1.26=py311h64a7726_0", "asks for numpy=1.26=py311h64a7726_0, a conda build"),
        ("python=3.10", "asks for python=3.10, and the builder runs Python 3.11: ask for"),
        ("python<3.11", "asks for python<3.11, and the builder runs Python 3.11"),
    ],
)
def test_the_first_dependency_pip_cannot_install_is_refused(dependency: str, words: str) -> None:
    line = refusal(f"dependencies:\n  - six\n  - {dependency}\n  - r-base\n")
    assert line.startswith(f"environment.yml {words}"), line


@pytest.mark.parametrize(
    "python", ["python", "python=3.11", "python=3", "python>=3.9", "python 3.11.4", "python~=3.10"]
)
def test_the_builders_python_is_accepted(python: str) -> None:
    assert requirements(f"dependencies: [{python}, six]") == ["six"]


def test_an_unknown_builder_python_is_not_checked() -> None:
    assert requirements("dependencies: [python=2.7, six]", python=None) == ["six"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("dependencies: [six\n", "is not valid YAML (line 2)"),
        ("- six\n", "is not a conda environment"),
        ("dependencies: six\n", "dependencies is not a list"),
        (
            "dependencies: [six]\nvariables: {A: 1}\n",
            "sets variables: set them in .s2i/environment",
        ),
        ("dependencies: [[six]]\n", "a dependency is neither a name nor a pip: list"),
        ("dependencies: [{pip: six}]\n", "pip is not a list"),
        ('dependencies: [{pip: ["six\\nrm"]}]\n', "a pip entry is not one requirement line"),
    ],
)
def test_what_is_no_environment_is_refused(text: str, words: str) -> None:
    assert words in refusal(text)


def test_an_empty_environment_installs_nothing_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("name: x\ndependencies: [python=3.11, pip]\n")
    decision = decide(Tree(tmp_path), NBS2I)
    assert decision.actions == ()
    assert decision.notices == (
        ("info", "environment.yml asks for nothing pip installs; conda is not used"),
    )


def test_a_yaml_bomb_is_read_in_linear_time() -> None:
    levels = ["a0: &a0 [six, six, six, six, six, six, six, six, six]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    text = "\n".join(levels) + "\ndependencies: [six]\n"
    assert requirements(text) == ["six"]
    assert "neither a name" in refusal(text.replace("dependencies: [six]", "dependencies: [*a11]"))


@pytest.mark.parametrize(
    ("spec", "have", "ok"),
    [
        ("", "3.11", True),
        ("==3.11.*", "3.11", True),
        ("==3.11", "3.11", True),
        ("==3.*", "3.11", True),
        ("==3.10.*", "3.11", False),
        (">=3.9", "3.11", True),
        (">=3.12", "3.11", False),
        ("<3.12", "3.11", True),
        ("<3.11", "3.11", False),
        (">=3.8,<3.11", "3.11", False),
        ("==3.11.4", "3.11", True),
        ("~=3.10", "3.11", True),
        ("~=3.10.0", "3.11", False),
        ("!=3.11", "3.11", False),
    ],
)
def test_python_versions_are_compared_on_major_minor(spec: str, have: str, ok: bool) -> None:
    assert conda.python_satisfies(spec, have) is ok
