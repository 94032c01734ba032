"""The plan is decided before anything runs: a pure function of values."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.building.deps import Dependencies
from nbs2i.building.plan import Facts, notebook_dirs, plan
from nbs2i.building.request import BuildRequest, Injection
from nbs2i.engine import ImageConfig, ImageInfo
from nbs2i.errors import BuildError, SecurityError
from nbs2i.scripts import Script, Scripts
from nbs2i.source import Source

SHIPPED = "ab" * 32
DIRS = "/opt 0:0 0755;/opt/app-root 1001:0 0775;/opt/app-root/src 1001:0 0775"
BUILDER = ImageInfo(
    id="sha256:builder",
    tags=("nbs2i/builder:1",),
    config=ImageConfig(
        user="1001",
        entrypoint=("tini", "-g", "--"),
        cmd=("/usr/libexec/s2i/run",),
        env={"HOME": "/home/jovyan", "NOTEBOOK_DIR": "/opt/app-root/src"},
        labels={
            labels.SCRIPTS_URL: "image:///usr/libexec/s2i",
            labels.DESTINATION: "/tmp",
            labels.OCI_TITLE: labels.BUILDER_TITLE,
            labels.OCI_VERSION: "0.2.0",
            labels.OPENSHIFT_TAGS: "builder,jupyter",
            labels.ASSEMBLE_DIGEST: SHIPPED,
            labels.NOTEBOOK_DIRS: DIRS,
        },
    ),
)
SCRIPTS = Scripts(
    (
        Script("assemble", "/usr/libexec/s2i/assemble"),
        Script("run", "/usr/libexec/s2i/run"),
    ),
    "/tmp",
)
SOURCE = Source(
    "/course", "", "c0ffee", "T <t@x>", "2024-01-01", "m", "", Path("/course"), 1704067200
)


def facts(**changes: object) -> Facts:
    return replace(Facts(SOURCE, SCRIPTS, {}, None), **changes)  # type: ignore[arg-type]


def request(**changes: object) -> BuildRequest:
    return replace(BuildRequest(source="/course", tag="class/week1:3"), **changes)  # type: ignore[arg-type]


def test_notebooks_only_nbs2i_writes_the_layer() -> None:
    result = plan(request(), "nbs2i/builder:1", BUILDER, facts(), SHIPPED)
    assert result.layer is not None and result.why_assemble == ""
    assert result.layer.notebook_dir == "/opt/app-root/src"
    assert [(d.name, d.uid, d.mode) for d in result.layer.dirs] == [
        ("opt", 0, 0o755),
        ("opt/app-root", 1001, 0o775),
        ("opt/app-root/src", 1001, 0o775),
    ]
    assert r"^\.s2i(/|$)" in result.layer.excludes
    assert result.deps is None and result.uid == 1001


@pytest.mark.parametrize(
    ("changes", "fact_changes", "shipped", "why"),
    [
        ({"always_assemble": True}, {}, SHIPPED, "--always-assemble"),
        ({"incremental": True}, {}, SHIPPED, "--incremental"),
        ({"injections": (Injection(Path("/x"), "/run/x"),)}, {}, SHIPPED, "--inject"),
        (
            {},
            {
                "scripts": Scripts(
                    (*SCRIPTS.found, Script("run", "/tmp/scripts/run", b"#!/bin/sh\n")), "/tmp"
                )
            },
            SHIPPED,
            "own scripts",
        ),
        ({}, {}, "", "does not know its own assemble"),
        ({}, {}, "cd" * 32, "not the one this nbs2i ships"),
        ({}, {"env": {"NOTEBOOK_DIR": "/elsewhere"}}, SHIPPED, "NOTEBOOK_DIR is changed"),
        (
            {"dependency_layer": False},
            {"deps": Dependencies((("requirements.txt", b"numpy\n"),))},
            SHIPPED,
            "installed with the notebooks",
        ),
    ],
)
def test_when_assemble_must_run(
    changes: dict[str, object], fact_changes: dict[str, object], shipped: str, why: str
) -> None:
    result = plan(request(**changes), "nbs2i/builder:1", BUILDER, facts(**fact_changes), shipped)
    assert result.layer is None and why in result.why_assemble


def test_incremental_has_nothing_to_add_to_a_dependency_layer() -> None:
    deps = Dependencies((("requirements.txt", b"numpy\n"),))
    with_layer = plan(request(incremental=True), "b", BUILDER, facts(deps=deps), SHIPPED)
    assert with_layer.deps is not None and not with_layer.incremental
    assert with_layer.layer is not None, "the notebooks alone need no assemble"
    without = plan(
        request(incremental=True, dependency_layer=False), "b", BUILDER, facts(deps=deps), SHIPPED
    )
    assert without.deps is None and without.incremental


def test_a_builder_that_does_not_declare_its_directories_runs_assemble() -> None:
    config = replace(BUILDER.config, labels={**BUILDER.config.labels, labels.NOTEBOOK_DIRS: ""})
    result = plan(request(), "b", replace(BUILDER, config=config), facts(), SHIPPED)
    assert result.layer is None and labels.NOTEBOOK_DIRS in result.why_assemble


def test_declared_directories_must_be_the_whole_chain() -> None:
    assert notebook_dirs(DIRS, "/opt/app-root/src") is not None
    assert notebook_dirs("/opt/app-root/src 1001:0 0775", "/opt/app-root/src") is None
    assert notebook_dirs(DIRS.replace("0775", "07x5"), "/opt/app-root/src") is None
    assert notebook_dirs(DIRS, "/home/jovyan") is None


def test_dependencies_get_a_layer_keyed_by_what_they_install() -> None:
    files = (("requirements.txt", b"numpy\n"),)
    first = plan(request(), "b", BUILDER, facts(deps=Dependencies(files)), SHIPPED)
    assert first.deps is not None and first.deps.tag.startswith("nbs2i-cache/deps:")
    assert first.deps.apt is None and first.deps.builder_knows_phase
    assert first.layer is not None, "the notebooks still go in a layer nbs2i writes"
    assert first.base == first.deps.tag
    other = plan(
        request(), "b", BUILDER, facts(deps=Dependencies((("requirements.txt", b"x\n"),))), SHIPPED
    )
    assert other.deps is not None and other.deps.key != first.deps.key
    with_env = plan(
        request(), "b", BUILDER, facts(deps=Dependencies(files), env={"A": "1"}), SHIPPED
    )
    assert with_env.deps is not None and with_env.deps.key != first.deps.key


def test_a_package_course_layer_gets_the_whole_source_and_is_keyed_by_its_files() -> None:
    """The layer is made from the whole source but keyed by the package files:
    the code and the notebooks arrive with the layer nbs2i writes."""
    from nbs2i.building.dockerfile import dockerfile_lines

    files = (("setup.py", b"setup()\n"),)
    package = plan(
        request(), "b", BUILDER, facts(deps=Dependencies(files, whole_source=True)), SHIPPED
    )
    plain = plan(request(), "b", BUILDER, facts(deps=Dependencies(files)), SHIPPED)
    assert package.deps is not None and package.deps.whole_source
    assert plain.deps is not None and package.deps.key == plain.deps.key
    assert package.layer is not None
    lines = dockerfile_lines(package, has_scripts=False)
    copy = lines.index("COPY --chown=1001:0 upload/src/ /tmp/src/")
    assert lines[copy + 1] == "RUN NBS2I_ASSEMBLE_PHASE=deps /usr/libexec/s2i/assemble"


def test_apt_packages_get_a_layer_below() -> None:
    found = Dependencies((("apt.txt", b"graphviz\n"),), apt_packages=("graphviz",))
    result = plan(request(), "b", BUILDER, facts(deps=found), SHIPPED)
    assert result.deps is not None and result.deps.apt is not None
    assert result.deps.apt.tag.startswith("nbs2i-cache/apt:")
    assert result.deps.apt.packages == ("graphviz",)
    with pytest.raises(BuildError, match=r"apt\.txt needs the dependency layer"):
        plan(request(dependency_layer=False), "b", BUILDER, facts(deps=found), SHIPPED)


def test_labels_describe_the_image_not_its_builder() -> None:
    result = plan(
        request(labels=(("course", "phys"),)), "nbs2i/builder:1", BUILDER, facts(), SHIPPED
    )
    image = result.config.labels
    assert image[labels.OCI_TITLE] == "week1" and image[labels.OCI_VERSION] == "3"
    assert image[labels.OPENSHIFT_TAGS] == "jupyter,notebooks"
    assert image[labels.BUILD_IMAGE] == "nbs2i/builder:1"
    assert image[labels.SCRIPTS_URL] == "image:///usr/libexec/s2i"  # still buildable upon
    assert image["course"] == "phys" and image[labels.ROLE] == labels.ROLE_IMAGE
    assert result.config.cmd == ("/usr/libexec/s2i/run",)
    assert result.config.entrypoint == ("tini", "-g", "--")


@pytest.mark.parametrize(
    ("user", "assemble_user", "allowed"),
    [("0", "", "1-"), ("root", "", "1-"), ("1001", "0", "1-"), ("1001", "1500", "1001,2000-3000")],
)
def test_users_outside_the_allowed_range_are_refused(
    user: str, assemble_user: str, allowed: str
) -> None:
    config = replace(BUILDER.config, user=user)
    with pytest.raises(SecurityError, match="numeric and within the range"):
        plan(
            request(assemble_user=assemble_user, allowed_uids=allowed),
            "b",
            replace(BUILDER, config=config),
            facts(),
            SHIPPED,
        )


def test_assemble_and_run_are_required() -> None:
    only_run = Scripts((Script("run", "/usr/libexec/s2i/run"),), "/tmp")
    with pytest.raises(BuildError, match="no assemble script"):
        plan(request(), "b", BUILDER, facts(scripts=only_run), SHIPPED)
