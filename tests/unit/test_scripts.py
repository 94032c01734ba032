"""Script lookup order and the build environment (no engine needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nbs2i.errors import BuildError, SourceError, UsageError
from nbs2i.scripts import (
    ALLOWED,
    ENV_RULES,
    KERNELS,
    REFUSED,
    EnvRule,
    build_environment,
    check_environment,
    env_rule,
    parse_env_lines,
    parse_env_pairs,
    parse_scripts_url,
    resolve_scripts,
)

LABELS = {"io.openshift.s2i.scripts-url": "image:///usr/libexec/s2i"}
S2I_BIN = Path(__file__).resolve().parents[2] / "s2i" / "bin"


def script_file(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_label_only_gives_image_paths(tmp_path: Path) -> None:
    scripts = resolve_scripts(scripts_url="", source_root=tmp_path, image_labels=LABELS)
    assert scripts.require("assemble", "b").path == "/usr/libexec/s2i/assemble"
    assert scripts.require("run", "b").content is None
    assert scripts.destination == "/tmp"
    assert scripts.uploads() == []


def test_source_s2i_bin_beats_the_label(tmp_path: Path) -> None:
    script_file(tmp_path / ".s2i/bin/assemble", "#!/bin/sh\necho mine\n")
    scripts = resolve_scripts(scripts_url="", source_root=tmp_path, image_labels=LABELS)
    assemble = scripts.require("assemble", "b")
    assert (assemble.path, assemble.content) == ("/tmp/scripts/assemble", b"#!/bin/sh\necho mine\n")
    assert scripts.require("run", "b").path == "/usr/libexec/s2i/run"
    assert [u.name for u in scripts.uploads()] == ["scripts/assemble"]
    assert scripts.uploads()[0].mode == 0o755


def test_scripts_url_beats_source_and_label(tmp_path: Path) -> None:
    script_file(tmp_path / "src/.s2i/bin/assemble")
    url_dir = tmp_path / "url"
    script_file(url_dir / "assemble", "#!/bin/sh\necho url\n")
    scripts = resolve_scripts(
        scripts_url=f"file://{url_dir}", source_root=tmp_path / "src", image_labels=LABELS
    )
    assert scripts.require("assemble", "b").content == b"#!/bin/sh\necho url\n"
    # not in the URL dir: falls through to the label
    assert scripts.require("run", "b").path == "/usr/libexec/s2i/run"
    image = resolve_scripts(
        scripts_url="image:///opt/s2i/", source_root=tmp_path / "src", image_labels=LABELS
    )
    assert image.require("assemble", "b").path == "/opt/s2i/assemble"


def test_destination_label_moves_uploads(tmp_path: Path) -> None:
    script_file(tmp_path / ".s2i/bin/run")
    labels = {**LABELS, "io.openshift.s2i.destination": "/opt/s2i-dest/"}
    scripts = resolve_scripts(scripts_url="", source_root=tmp_path, image_labels=labels)
    assert scripts.require("run", "b").path == "/opt/s2i-dest/scripts/run"
    assert scripts.uploads()[0].name == "scripts/run"


def test_no_assemble_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    scripts = resolve_scripts(scripts_url="", source_root=tmp_path, image_labels={})
    with pytest.raises(BuildError, match="no assemble script: builder my/builder"):
        scripts.require("assemble", "my/builder")


@pytest.mark.parametrize(
    "url", ["https://example.org/s2i", "image://relative", "file:dir", "ftp:///x"]
)
def test_unsupported_scripts_urls(url: str) -> None:
    with pytest.raises(UsageError):
        parse_scripts_url(url)


def test_a_builder_label_may_not_point_at_this_machine(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        resolve_scripts(
            scripts_url="",
            source_root=tmp_path,
            image_labels={"io.openshift.s2i.scripts-url": f"file://{tmp_path}"},
        )


def test_missing_file_scripts_url_dir(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        resolve_scripts(scripts_url=f"file://{tmp_path}/nope", source_root=None, image_labels={})


def test_env_file_syntax() -> None:
    env = parse_env_lines(["# comment", "", "A=1", " B = two words ", "C=x=y", "D="], "f")
    assert env == {"A": "1", "B": " two words", "C": "x=y", "D": ""}
    with pytest.raises(UsageError, match="f:2: 'oops' is not KEY=VALUE"):
        parse_env_lines(["A=1", "oops"], "f")
    with pytest.raises(UsageError):
        parse_env_lines(["1A=x"], "f")


def test_env_pairs() -> None:
    assert parse_env_pairs(["A=1", "B=="]) == (("A", "1"), ("B", "="))
    for bad in ["novalue", "A B=x", "=x", "1A=x"]:
        with pytest.raises(UsageError, match="is not KEY=VALUE"):
            parse_env_pairs([bad])


def test_environment_precedence(tmp_path: Path) -> None:
    (tmp_path / ".s2i").mkdir()
    (tmp_path / ".s2i/environment").write_text("A=s2i\nB=s2i\nC=s2i\n")
    first = tmp_path / "one.env"
    first.write_text("B=one\nC=one\n")
    second = tmp_path / "two.env"
    second.write_text("C=two\n")
    env = build_environment(tmp_path, [first, second], {"D": "e"})
    assert env == {"A": "s2i", "B": "one", "C": "two", "D": "e"}
    assert build_environment(tmp_path, [], {"A": "e"})["A"] == "e"
    with pytest.raises(UsageError, match=r"missing\.env does not exist"):
        build_environment(tmp_path, [tmp_path / "missing.env"], {})


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("PATH=", "leaves out /usr/bin"),
        ("PATH=/opt/tools", "leaves out /usr/bin"),
        ("LD_PRELOAD=/tmp/x.so", "LD_PRELOAD"),
        ("LD_LIBRARY_PATH=/x", "LD_LIBRARY_PATH"),
        ("NSS_WRAPPER_PASSWD=/tmp/p", "NSS_WRAPPER_PASSWD"),
    ],
)
def test_environment_that_would_break_the_image_is_refused(
    tmp_path: Path, line: str, words: str
) -> None:
    (tmp_path / ".s2i").mkdir()
    (tmp_path / ".s2i/environment").write_text(f"A=1\n{line}\n")
    with pytest.raises(UsageError, match=words):
        build_environment(tmp_path, [], {})
    with pytest.raises(UsageError, match=words):
        build_environment(None, [], dict([line.split("=", 1)]))


def test_a_longer_path_is_fine(tmp_path: Path) -> None:
    env = build_environment(None, [], {"PATH": "/opt/tools:/usr/local/bin:/usr/bin:/bin"})
    assert env["PATH"].startswith("/opt/tools")


def test_a_repository_script_linking_out_of_the_source_is_refused(tmp_path: Path) -> None:
    secret = script_file(tmp_path / "host" / "secret", "token\n")
    src = tmp_path / "src"
    (src / ".s2i/bin").mkdir(parents=True)
    (src / ".s2i/bin/usage").symlink_to(secret)
    with pytest.raises(SourceError, match=r"\.s2i/bin/usage links outside the source"):
        resolve_scripts(scripts_url="", source_root=src, image_labels=LABELS)


# One name of each row of the table; a prefix row by a name it alone decides.
SAMPLES = {
    "JUPYTERHUB_*": "JUPYTERHUB_API_URL",
    "JUPYTER_GATEWAY_*": "JUPYTER_GATEWAY_URL",
    "JUPYTERLAB_*": "JUPYTERLAB_DIR",
    "JUPYTER_*": "JUPYTER_DEFAULT_PROVISIONER_NAME",
    "NBS2I_*": "NBS2I_PLATFORM",
    "LD_*": "LD_AUDIT",
    "NSS_WRAPPER_*": "NSS_WRAPPER_HOSTS",
    "PYTHON*": "PYTHONWARNINGS",
}


def sample_names(rule: EnvRule) -> list[str]:
    return [SAMPLES.get(name, name) for name in rule.names]


def rows(build: str) -> list[tuple[str, EnvRule]]:
    return [
        (name, rule) for rule in ENV_RULES if rule.build == build for name in sample_names(rule)
    ]


def test_every_sample_is_decided_by_its_own_row() -> None:
    for rule in ENV_RULES:
        for name in sample_names(rule):
            assert env_rule(name) is rule, name


@pytest.mark.parametrize(("name", "rule"), rows(REFUSED), ids=[n for n, _ in rows(REFUSED)])
def test_a_name_the_course_may_not_set_is_one_line(name: str, rule: EnvRule) -> None:
    with pytest.raises(UsageError) as caught:
        check_environment({"COURSE": "intro", name: "/opt/app-root/src/x"})
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{name} is not the course's to set: {rule.why}")
    assert f"leave {name} out of .s2i/environment" in line


@pytest.mark.parametrize("name", [n for n, _ in rows(KERNELS) + rows(ALLOWED) if n != "PATH"])
def test_what_kernels_may_use_stays_possible(name: str) -> None:
    check_environment({name: "/opt/app-root/src/lib", "IPYTHONDIR": "/x", "MPLBACKEND": "agg"})


def server_env(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """What of an image's environment the container's processes get
    (s2i/bin/server-env run by the system's sh, as the profile runs it at a
    start), and what it said."""
    script = f". {S2I_BIN / 'server-env'} && nbs2i_server_env && env -0"
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        check=True,
    )
    pairs = (item.partition("=") for item in done.stdout.decode().split("\0") if item)
    return {k: v for k, _, v in pairs}, done.stderr.decode()


def test_the_run_script_applies_the_table_to_any_image() -> None:
    # What the table says happens at run time is what server-env does to an
    # image's ENV that upstream s2i filled without nbs2i's checks.
    given = {
        name: f"/opt/app-root/src/{name.lower()}"
        for rule in ENV_RULES
        if rule.run.startswith(("used", "dropped", "set to", "ignored"))
        for name in sample_names(rule)
    }
    left, said = server_env(given)
    for rule in ENV_RULES:
        for name in sample_names(rule):
            if rule.run.startswith(("used", "ignored")):
                assert left.get(name) == given[name], name
            elif rule.run.startswith("dropped"):
                assert name not in left and name in said, name
            elif rule.run.startswith("set to"):
                assert left[name].startswith(("/opt/app-root/share/", "/etc/nbs2i/")), name
    assert said.count("\n") == 1 and said.startswith("nbs2i: warning: ignoring ")


def test_the_images_own_directories_are_kept_quietly() -> None:
    own = {
        "JUPYTER_CONFIG_DIR": "/etc/nbs2i/jupyter",
        "JUPYTER_PATH": "/opt/app-root/share/jupyter",
    }
    left, said = server_env(own)
    assert {k: left[k] for k in own} == own and not said
    # Anything else for them, or for the set-up's own directories, is not the
    # image's: the profile sets those after this.
    planted = {
        "JUPYTER_CONFIG_DIR": "/etc/nbs2i/jupyter/../../../opt/app-root/src/conf",
        "JUPYTER_DATA_DIR": "/tmp/.nbs2i/jupyter-data-5",
        "JUPYTER_RUNTIME_DIR": "/tmp/.nbs2i/runtime-5",
    }
    left, said = server_env(planted)
    assert left["JUPYTER_CONFIG_DIR"] == "/etc/nbs2i/jupyter"
    assert "JUPYTER_DATA_DIR" not in left and "JUPYTER_RUNTIME_DIR" not in left
    assert all(name in said for name in planted)


def test_a_value_cannot_pose_as_a_name() -> None:
    left, said = server_env({"COURSE": "x\nJUPYTER_CONFIG_PATH=/a", "JUPYTER_TOKEN": "t\nZ=1"})
    assert left["COURSE"] == "x\nJUPYTER_CONFIG_PATH=/a"
    assert left["JUPYTER_TOKEN"] == "t\nZ=1"
    assert not said


def test_the_readme_holds_the_same_table() -> None:
    head = (
        "| names | `nbs2i build` | in an image's ENV, at start "
        "| `nbs2i verify` fails it | why |\n| --- | --- | --- | --- | --- |\n"
    )
    table = head + "".join(
        f"| {', '.join(f'`{n}`' for n in r.names)} | {r.build} | {r.run} | {r.verify} | {r.why} |\n"
        for r in ENV_RULES
    )
    readme = (S2I_BIN.parents[1] / "README.md").read_text(encoding="utf-8")
    assert table in readme
