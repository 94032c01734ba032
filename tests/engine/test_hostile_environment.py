"""Environment that would break the image or switch off its own mechanisms is refused.

An empty PATH or one without /usr/bin (nothing starts), the loader's
variables (LD_PRELOAD carries nss_wrapper, which names any UID) and
nss_wrapper's own: refused with one line naming the variable, whether they
come from the repository's .s2i/environment (served over git://), an -E file
or -e. Invalid names are refused too. What comes from the command line is
refused before the source is fetched: the source here would hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i.engine import Docker
from tests.support.gitserver import GitDaemon, HangingServer
from tests.support.hostile import (
    APT_HOOK_ENVIRONMENT,
    APT_HOOK_RAN,
    notebook_tree,
    one_error_line,
    publish,
    write,
)
from tests.support.inside import run_in_image
from tests.support.sandbox import Sandbox
from tests.support.session import tag

FAIL_FAST = 30

REFUSED = {
    "empty-path": ("PATH", ""),
    "path-without-usr-bin": ("PATH", "/opt/tools:/usr/local/bin"),
    "ld-preload": ("LD_PRELOAD", "/tmp/evil.so"),
    "ld-library-path": ("LD_LIBRARY_PATH", "/tmp/lib"),
    "ld-audit": ("LD_AUDIT", "/tmp/audit.so"),
    "nss-wrapper-passwd": ("NSS_WRAPPER_PASSWD", "/tmp/passwd"),
    "nss-wrapper-group": ("NSS_WRAPPER_GROUP", "/tmp/group"),
}
BAD_NAMES = ["A B=x", "1A=x", "A-B=x", "=x", "A", "A.B=x", "é=x"]


@pytest.mark.parametrize(("name", "value"), list(REFUSED.values()), ids=list(REFUSED))
def test_the_repository_environment_file_cannot_disable_the_image(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    tmp_path: Path,
    name: str,
    value: str,
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    write(tree, ".s2i/environment", f"# course settings\nCOURSE=intro\n{name}={value}\n")
    repo = f"env-{name.lower()}-{len(value)}.git"
    publish(tree, daemon.base, repo)
    image = box.image(tag("hostile-env"))
    result = box.nbs2i(*box.build_args(daemon.url(repo), image, tiny_builder), timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, name)
    assert not engine.image_exists(image)


@pytest.mark.parametrize(("name", "value"), list(REFUSED.values()), ids=list(REFUSED))
def test_an_environment_file_cannot_disable_the_image(
    box: Sandbox, tiny_builder: str, tmp_path: Path, name: str, value: str
) -> None:
    src = notebook_tree(tmp_path / "src")
    env_file = write(tmp_path, "build.env", f"{name}={value}\n")
    args = box.build_args(str(src), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, "-E", str(env_file), timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, name)


@pytest.mark.parametrize(("name", "value"), list(REFUSED.values()), ids=list(REFUSED))
def test_an_env_option_that_disables_the_image_fails_before_the_fetch(
    box: Sandbox, hanging: HangingServer, tiny_builder: str, name: str, value: str
) -> None:
    args = box.build_args(hanging.url(), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, "-e", f"{name}={value}", timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, name)
    assert hanging.connections == 0


@pytest.mark.parametrize("pair", BAD_NAMES)
def test_an_invalid_env_name_fails_before_the_fetch(
    box: Sandbox, hanging: HangingServer, tiny_builder: str, pair: str
) -> None:
    args = box.build_args(hanging.url(), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, "-e", pair, timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, repr(pair))
    assert hanging.connections == 0


@pytest.mark.parametrize("line", ["A B=x", "export A=x", "-A=x", "A"])
def test_an_invalid_line_in_the_repository_environment_is_refused_naming_it(
    box: Sandbox, tiny_builder: str, tmp_path: Path, line: str
) -> None:
    src = notebook_tree(tmp_path / "src")
    write(src, ".s2i/environment", f"COURSE=intro\n{line}\n")
    args = box.build_args(str(src), box.image(tag("hostile-env")), tiny_builder)
    result = box.nbs2i(*args, timeout=FAIL_FAST)
    assert result.code != 0, result.stderr
    one_error_line(result, ".s2i/environment:2")


def test_an_extended_path_and_odd_values_still_build_exactly(
    box: Sandbox, tiny_builder: str, engine: Docker, tmp_path: Path
) -> None:
    # The refusals above are not a blanket: PATH may be extended, values may
    # hold '=', spaces and a newline, and nothing more than the names given
    # reaches the image.
    src = notebook_tree(tmp_path / "src")
    path = "/opt/tools:/usr/local/bin:/usr/bin:/bin"
    write(src, ".s2i/environment", f"PATH={path}\nGREETING=a b=c\n")
    image = box.image(tag("env-ok"))
    args = box.build_args(str(src), image, tiny_builder)
    result = box.nbs2i(*args, "-e", "NOTE=x\nLD_PRELOAD=/tmp/evil.so", timeout=120)
    assert result.code == 0, result.stderr
    env = engine.inspect_image(image).config.env
    assert env["PATH"] == path
    assert env["GREETING"] == "a b=c"
    assert env["NOTE"] == "x\nLD_PRELOAD=/tmp/evil.so"
    assert not [k for k in env if k.startswith(("LD_", "NSS_WRAPPER_"))], env


def test_the_root_step_of_the_engine_path_never_sees_the_repository_environment(
    box: Sandbox, tiny_builder: str, engine: Docker, tmp_path: Path
) -> None:
    # apt.txt names a package the builder has, so the root step runs offline.
    src = notebook_tree(tmp_path / "src")
    write(src, "apt.txt", "bash\n")
    write(src, ".s2i/environment", APT_HOOK_ENVIRONMENT)
    image = box.image(tag("hostile-apt"))
    args = box.build_args(str(src), image, tiny_builder, "--network", "none")
    result = box.nbs2i(*args, timeout=300)
    assert result.code == 0, result.stderr
    assert "Installing Debian packages bash" in result.stderr
    assert not APT_HOOK_RAN.search(result.stderr + result.stdout), result.stderr
    code, mode = run_in_image(engine, image, ["stat", "-c", "%a", "/etc/passwd"])
    assert (code, mode.strip()) == (0, "644")
