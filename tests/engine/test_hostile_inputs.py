"""Inputs are checked before slow work, and what the engine would say raw becomes one line.

The source here is a server that accepts connections and never answers: a
check that comes after the fetch would hang (bounded by the test), and the
server counts whoever came. An input the engine refuses at container start
(an --inject destination that is a file in the builder) must come back as one
line with a fix, without the engine's internals (its paths, runc's words).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i.engine import Docker
from tests.support.cli import ERROR_PREFIX, Result
from tests.support.gitserver import HangingServer
from tests.support.hostile import notebook_tree, one_error_line, write
from tests.support.sandbox import Sandbox
from tests.support.session import tag

FAIL_FAST = 20
ENGINE_WORDS = ("/var/lib/docker", "overlay2", "runc", "OCI runtime", "rootfs", "containerd")


def one_line(result: Result) -> str:
    """The last line: nbs2i's one error line, or click's for a malformed option."""
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith((ERROR_PREFIX, "Error: ")), result.stderr
    return last


BAD_TAGS = ["Bad Tag", "UPPER/case:1", "course:", "course@sha256:" + "0" * 64, "a//b", "x" * 300]


@pytest.mark.parametrize("bad", BAD_TAGS)
def test_an_invalid_tag_fails_before_the_source_is_fetched(
    box: Sandbox, hanging: HangingServer, tiny_builder: str, bad: str
) -> None:
    result = box.nbs2i(*box.build_args(hanging.url(), bad, tiny_builder), timeout=FAIL_FAST)
    assert result.code != 0
    assert repr(bad) in one_line(result) or bad in one_line(result)
    assert hanging.connections == 0, "the source was fetched before the tag was checked"


def test_an_invalid_tag_is_named_before_a_missing_directory(
    box: Sandbox, tiny_builder: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-course")
    result = box.nbs2i(*box.build_args(missing, "Bad Tag", tiny_builder), timeout=FAIL_FAST)
    line = one_error_line(result, "Bad Tag")
    assert "no-such-course" not in line


def bad_options(tmp_path: Path) -> dict[str, list[str]]:
    existing = write(tmp_path, "ca.txt", "not a bundle")
    return {
        "builder": ["--builder", "Not A Builder"],
        "pull-policy": ["--pull-policy", "sometimes"],
        "allowed-uids": ["--allowed-uids", "lots"],
        "exclude": ["--exclude", "(unclosed"],
        "context-dir-up": ["--context-dir", "../other-course"],
        "context-dir-absolute": ["--context-dir", "/etc"],
        "ref": ["--ref", "main..evil"],
        "ca-bundle-missing": ["--ca-bundle", str(tmp_path / "none.pem")],
        "inject-missing": ["--inject", f"{tmp_path / 'none'}:/run/secrets/x"],
        "inject-proc": ["--inject", f"{existing}:/proc/self"],
        "inject-root": ["--inject", f"{existing}:/"],
        "inject-relative": ["--inject", f"{existing}:run/secrets"],
        "inject-dotdot": ["--inject", f"{existing}:/run/../proc"],
        "label": ["--label", "novalue"],
        "scripts-url-http": ["--scripts-url", "http://127.0.0.1:9/scripts"],
        "env-file-missing": ["-E", str(tmp_path / "none.env")],
    }


OPTION_IDS = list(bad_options(Path("/x")))


@pytest.mark.parametrize("which", OPTION_IDS)
def test_a_bad_option_fails_before_the_source_is_fetched(
    box: Sandbox, hanging: HangingServer, tiny_builder: str, tmp_path: Path, which: str
) -> None:
    option = bad_options(tmp_path)[which]
    args = box.build_args(hanging.url(), box.image(tag("inputs")), tiny_builder, *option)
    result = box.nbs2i(*args, timeout=FAIL_FAST)
    assert result.code != 0
    one_line(result)
    assert hanging.connections == 0, f"{which} was checked after the fetch: {result.stderr}"


@pytest.mark.parametrize("dest", ["/etc/passwd", "/usr/libexec/s2i/assemble"])
def test_an_inject_destination_that_is_a_file_is_one_line_without_engine_internals(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path, dest: str
) -> None:
    src = notebook_tree(tmp_path / "src")
    secret = write(tmp_path, "token.txt", "course-token")
    image = box.image(tag("inject-file"))
    args = box.build_args(str(src), image, tiny_builder, "--inject", f"{secret}:{dest}")
    result = box.nbs2i(*args, timeout=120)
    assert result.code != 0
    line = one_error_line(result, dest)
    for word in ENGINE_WORDS:
        assert word not in result.stderr, f"the engine's {word!r} shown: {result.stderr}"
    assert "--inject" in line
    assert not engine.image_exists(image)
