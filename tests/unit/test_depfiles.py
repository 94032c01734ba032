"""The definition of a course's dependency files (nbs2i.depfiles): precedence,
what happens to every file repo2docker knows, and the one-line refusals. Pure:
small trees in tmp_path, no engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbs2i import depfiles
from nbs2i.depfiles import Builder, Refused, Tree, decide

NBS2I = Builder(python="3.11", r=False)


def tree(root: Path, files: dict[str, str]) -> Tree:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Tree(root)


def steps(decision: depfiles.Decision) -> list[tuple[str, str]]:
    return [(a.kind, a.path) for a in decision.actions]


def refused(root: Path, files: dict[str, str], builder: Builder = NBS2I) -> str:
    with pytest.raises(Refused) as caught:
        decide(tree(root, files), builder)
    line = str(caught.value)
    assert "\n" not in line and caught.value.fix
    return line


def test_a_notebook_only_course_installs_nothing_and_says_nothing(tmp_path: Path) -> None:
    decision = decide(tree(tmp_path, {"a.ipynb": "{}"}), NBS2I)
    assert decision.actions == () and decision.notices == () and decision.files == ()


# -- precedence -------------------------------------------------------------------


@pytest.mark.parametrize("place", ["binder", ".binder"])
def test_a_binder_directory_holds_the_configuration(tmp_path: Path, place: str) -> None:
    decision = decide(
        tree(
            tmp_path,
            {
                "requirements.txt": "top\n",
                "apt.txt": "vim\n",
                f"{place}/requirements.txt": "numpy\n",
                "setup.py": "",
            },
        ),
        NBS2I,
    )
    assert decision.base == place
    assert steps(decision) == [("requirements", f"{place}/requirements.txt")]
    ignored = [text for kind, text in decision.notices if kind == "ignored"]
    assert ignored == [
        f"{name} at the top is not used: {place}/ holds the configuration"
        for name in ("requirements.txt", "apt.txt", "setup.py")
    ]


def test_both_binder_directories_are_refused(tmp_path: Path) -> None:
    line = refused(tmp_path, {"binder/requirements.txt": "a\n", ".binder/requirements.txt": "b\n"})
    assert line == (
        "the repository has both binder/ and .binder/: keep one (repo2docker refuses both)"
    )


def test_a_binder_file_is_no_configuration_directory(tmp_path: Path) -> None:
    decision = decide(tree(tmp_path, {"binder": "x", "requirements.txt": "six\n"}), NBS2I)
    assert decision.base == "" and steps(decision) == [("requirements", "requirements.txt")]


def test_the_steps_run_in_one_order_the_package_last(tmp_path: Path) -> None:
    files = {
        "setup.py": "from setuptools import setup\nsetup(name='course')\n",
        "requirements.txt": "six\n",
        "apt.txt": "graphviz\n",
        "install.R": "1\n",
        ".s2i/kernels/old/requirements.txt": "six==1.16.0\n",
    }
    decision = decide(tree(tmp_path, files), Builder("3.11", r=True))
    assert steps(decision) == [
        ("apt", "apt.txt"),
        ("requirements", "requirements.txt"),
        ("install.R", "install.R"),
        ("kernel", ".s2i/kernels/old"),
        ("package", "."),
    ]
    assert decision.whole_source and decision.actions[0].detail == "graphviz"


# -- requirements.txt ------------------------------------------------------------


def test_requirements_with_includes_are_read_and_digested(tmp_path: Path) -> None:
    files = {
        "binder/requirements.txt": "numpy\n-r ../extra/more.txt\n--constraint=pins.txt\n",
        "extra/more.txt": "pandas\n",
        "binder/pins.txt": "numpy<3\n",
    }
    decision = decide(tree(tmp_path, files), NBS2I)
    assert [rel for rel, _ in decision.files] == [
        "binder/pins.txt",
        "binder/requirements.txt",
        "extra/more.txt",
    ]
    before = decision.actions[0].digest
    (tmp_path / "extra/more.txt").write_text("pandas==2.2\n")
    assert decide(Tree(tmp_path), NBS2I).actions[0].digest != before
    assert not decision.local


@pytest.mark.parametrize("line", ["-e .", ".", "./pkg", "--editable=.", "file:///x"])
def test_requirements_from_the_source_tree_are_noted(tmp_path: Path, line: str) -> None:
    decision = decide(tree(tmp_path, {"requirements.txt": f"{line}\n"}), NBS2I)
    assert decision.local == "requirements.txt installs from the source tree"


@pytest.mark.parametrize("include", ["../outside.txt", "/etc/passwd"])
def test_an_include_leaving_the_source_is_refused(tmp_path: Path, include: str) -> None:
    line = refused(tmp_path, {"requirements.txt": f"-r {include}\n"})
    assert line.startswith(f"requirements.txt includes {include}, outside the source")


def test_a_missing_include_is_refused(tmp_path: Path) -> None:
    line = refused(tmp_path, {"requirements.txt": "-c pins.txt\n"})
    assert line == "pins.txt, included by requirements.txt, does not exist: add pins.txt"


def test_a_link_out_of_the_source_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("token\n")
    course = tmp_path / "course"
    course.mkdir()
    (course / "requirements.txt").symlink_to(tmp_path / "secret")
    line = refused(course, {})
    assert line.startswith("requirements.txt links outside the source") and "token" not in line


def test_a_link_inside_the_source_is_followed(tmp_path: Path) -> None:
    files = {"deps/requirements.txt": "six\n"}
    tree(tmp_path, files)
    (tmp_path / "binder").symlink_to("deps")
    decision = decide(Tree(tmp_path), NBS2I)
    assert steps(decision) == [("requirements", "binder/requirements.txt")]


def test_special_and_large_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "requirements.txt")
    assert "requirements.txt is not a regular file" in refused(tmp_path, {})
    os.unlink(tmp_path / "requirements.txt")
    line = refused(tmp_path, {"requirements.txt": "x" * (depfiles.tree.LIMIT + 1)})
    assert line.startswith("requirements.txt is larger than 1024 KiB")


# -- runtime.txt -------------------------------------------------------------------


@pytest.mark.parametrize("asked", ["python-3.11", "python-3.11.4", "python-3"])
def test_the_builders_python_in_runtime_txt_is_accepted(tmp_path: Path, asked: str) -> None:
    decision = decide(tree(tmp_path, {"runtime.txt": f"{asked}\n"}), NBS2I)
    assert decision.notices == (
        ("info", f"runtime.txt asks for {asked}: Python 3.11 runs, the builder's"),
    )
    assert decision.actions == ()


@pytest.mark.parametrize("asked", ["python-3.10", "python-2.7", "python-3.12.1", "pypy-3.9", ""])
def test_another_python_is_refused_naming_the_builders(tmp_path: Path, asked: str) -> None:
    line = refused(tmp_path, {"runtime.txt": f"{asked}\n"})
    shown = asked or "nothing"
    assert line == (
        f"runtime.txt asks for {shown}, and the builder runs Python 3.11: "
        "write python-3.11 in it or remove it"
    )


@pytest.mark.parametrize("asked", ["r-2023-01-01", "r-4.1-2022-05-01"])
def test_an_r_snapshot_is_refused(tmp_path: Path, asked: str) -> None:
    line = refused(tmp_path, {"runtime.txt": f"{asked}\n"}, Builder("3.11", r=True))
    assert line.startswith(f"runtime.txt asks for {asked}, and the builder runs Python 3.11")


def test_a_builder_that_does_not_say_its_python_leaves_runtime_txt_unchecked(
    tmp_path: Path,
) -> None:
    decision = decide(tree(tmp_path, {"runtime.txt": "python-3.8\n"}), Builder())
    assert decision.notices == (
        ("ignored", "runtime.txt asks for python-3.8; the builder does not say its Python: "
         "not checked"),
    )  # fmt: skip


# -- every other file repo2docker knows ----------------------------------------------


@pytest.mark.parametrize("name", sorted(depfiles.REFUSED))
@pytest.mark.parametrize("place", ["", "binder/"])
def test_files_nbs2i_cannot_honour_are_refused_with_a_fix(
    tmp_path: Path, name: str, place: str
) -> None:
    problem, fix = depfiles.REFUSED[name]
    line = refused(tmp_path, {f"{place}{name}": "x\n"})
    assert line == f"{place}{name} is not supported ({problem}): {fix}"


def test_an_r_package_description_is_refused_at_the_top(tmp_path: Path) -> None:
    line = refused(tmp_path, {"DESCRIPTION": "Package: x\n"})
    assert line.startswith("DESCRIPTION (an R package) is not supported: list the R packages")


@pytest.mark.parametrize("name", sorted(depfiles.NOT_RUN))
def test_files_for_other_builds_are_ignored_with_a_reason(tmp_path: Path, name: str) -> None:
    decision = decide(tree(tmp_path, {name: "x\n", "requirements.txt": "six\n"}), NBS2I)
    assert decision.notices == (("ignored", f"{name}: {depfiles.NOT_RUN[name]}"),)
    assert steps(decision) == [("requirements", "requirements.txt")]


def test_install_r_on_a_builder_without_r_is_refused(tmp_path: Path) -> None:
    line = refused(tmp_path, {"install.R": "1\n"})
    assert line.startswith("install.R needs R, which this builder does not have: build with an R")
    decision = decide(Tree(tmp_path), Builder("3.11", r=None))
    assert steps(decision) == [("install.R", "install.R")]


@pytest.mark.parametrize(
    "line",
    ["-o APT::x=1", "/tmp/evil.deb", "../x.deb", "vim;reboot", "$(id)", "pkg=1.0", "Upper", "a"],
)
def test_apt_refuses_anything_but_package_names(line: str) -> None:
    with pytest.raises(Refused, match=r"apt\.txt:2: .* is not a Debian package name"):
        depfiles.apt_packages(f"graphviz\n{line}\n".encode(), "apt.txt")


def test_apt_packages() -> None:
    text = b"# tools\ngraphviz  libgl1\n\ngraphviz # again\n"
    assert depfiles.apt_packages(text, "apt.txt") == ("graphviz", "libgl1")


# -- extra kernels ------------------------------------------------------------------


def test_an_extra_kernel_and_its_display_name(tmp_path: Path) -> None:
    files = {
        ".s2i/kernels/old-pandas/requirements.txt": "pandas==1.5.3\n",
        ".s2i/kernels/old-pandas/display-name": "Python (pandas\t1.5)\nsecond line\n",
    }
    (action,) = decide(tree(tmp_path, files), NBS2I).actions
    assert (action.kind, action.path, action.detail) == (
        "kernel",
        ".s2i/kernels/old-pandas",
        "Python (pandas?1.5)",
    )


@pytest.mark.parametrize("name", ["Bad Name", "python3", "ir", "-x"])
def test_a_kernel_name_is_checked(tmp_path: Path, name: str) -> None:
    line = refused(tmp_path, {f".s2i/kernels/{name}/requirements.txt": "six\n"})
    assert line.startswith(f".s2i/kernels/{name} is not a kernel name")


def test_a_kernel_needs_its_requirements(tmp_path: Path) -> None:
    line = refused(tmp_path, {".s2i/kernels/old/display-name": "Old\n"})
    assert line == (
        ".s2i/kernels/old has no requirements.txt: add .s2i/kernels/old/requirements.txt"
    )


# -- the repository as a package -------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "what"),
    [
        ({"setup.py": "from setuptools import setup\nsetup()\n"}, "setup.py"),
        ({"setup.py": "", "setup.cfg": "[metadata]\nname = c\n"}, "setup.py"),
        ({"pyproject.toml": '[build-system]\nrequires = ["hatchling"]\n'}, "pyproject.toml"),
    ],
)
def test_a_package_at_the_top_is_installed_last(
    tmp_path: Path, files: dict[str, str], what: str
) -> None:
    decision = decide(tree(tmp_path, {**files, "requirements.txt": "six\n"}), NBS2I)
    assert steps(decision) == [("requirements", "requirements.txt"), ("package", ".")]
    assert {rel for rel, _ in decision.files} == {"requirements.txt", *files}
    assert decision.notices[0][1].startswith(f"{what}: the repository is installed")


def test_a_pyproject_without_build_system_is_said_not_installed(tmp_path: Path) -> None:
    decision = decide(tree(tmp_path, {"pyproject.toml": '[project]\nname = "c"\n'}), NBS2I)
    assert decision.actions == ()
    assert decision.notices == (
        ("ignored", "pyproject.toml has no [build-system] table: not installed as a package"),
    )


def test_a_broken_pyproject_is_refused_only_where_it_counts(tmp_path: Path) -> None:
    assert refused(tmp_path, {"pyproject.toml": "[build-system\n"}).startswith(
        "pyproject.toml is not valid TOML"
    )
    (tmp_path / "binder").mkdir()
    assert decide(Tree(tmp_path), NBS2I).notices == ()


def test_the_package_key_files_change_its_digest(tmp_path: Path) -> None:
    tree(tmp_path, {"setup.py": "setup()\n", "course/code.py": "A = 1\n"})
    first = decide(Tree(tmp_path), NBS2I).actions[0].digest
    (tmp_path / "course/code.py").write_text("A = 2\n")
    assert decide(Tree(tmp_path), NBS2I).actions[0].digest == first
    (tmp_path / "setup.cfg").write_text("[options]\ninstall_requires = six\n")
    assert decide(Tree(tmp_path), NBS2I).actions[0].digest != first


# -- what assemble reads --------------------------------------------------------------


def test_plan_lines_are_one_tab_separated_line_each(tmp_path: Path) -> None:
    files = {
        "environment.yml": "dependencies:\n  - numpy=1.26\n  - pip:\n    - six\n",
        "Dockerfile": "FROM x\n",
        ".s2i/kernels/k/requirements.txt": "six\n",
    }
    decision = decide(tree(tmp_path, files), NBS2I)
    lines = depfiles.plan_lines(decision)
    assert lines[:2] == [
        f"ignored\tDockerfile: {depfiles.NOT_RUN['Dockerfile']}",
        "info\tenvironment.yml installed with pip; conda is not used",
    ]
    env, kernel = decision.actions
    assert lines[2:] == [
        f"environment\tenvironment.yml\t{env.digest}",
        "requirement\tnumpy==1.26.*",
        "requirement\tsix",
        f"kernel\t.s2i/kernels/k\t{kernel.digest}\tPython (k)",
    ]


def test_main_prints_the_plan_or_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(tmp_path, {"requirements.txt": "six\n"})
    assert depfiles.main(["plan", str(tmp_path), "--python", "3.11", "--r", "no"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("requirements\trequirements.txt\t")
    (tmp_path / "Pipfile").write_text("[packages]\n")
    assert depfiles.main(["plan", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "assemble: error: Pipfile is not supported (pipenv is not used): "
        f"{depfiles.REFUSED['Pipfile'][1]}\n"
    )
