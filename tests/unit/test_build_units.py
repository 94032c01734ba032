"""The build's small pure parts: tags, --inject, dependency files, build-only env."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nbs2i.build import Injection, _command, dependency_files, deps_key, split_tag
from nbs2i.errors import UsageError


def test_split_tag() -> None:
    assert split_tag("course") == ("course", "latest")
    assert split_tag("course:3") == ("course", "3")
    assert split_tag("registry:5000/org/course") == ("registry:5000/org/course", "latest")
    assert split_tag("registry:5000/org/course:v1") == ("registry:5000/org/course", "v1")
    with pytest.raises(UsageError):
        split_tag("course@sha256:abc")


def test_inject_parse(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("x")
    assert Injection.parse(f"{f}:/run/secrets/") == Injection(f, "/run/secrets")
    for bad in [f"{f}", f"{f}:relative", f"{f}:/", f"{f}:/a/../b", ":/x"]:
        with pytest.raises(UsageError):
            Injection.parse(bad)
    with pytest.raises(UsageError, match="does not exist"):
        Injection.parse(f"{tmp_path}/missing:/run/x")


def test_dependency_files(tmp_path: Path) -> None:
    assert dependency_files(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("numpy\n-r extra/more.txt\n-c constraints.txt\n")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra/more.txt").write_text("pandas\n")
    (tmp_path / "constraints.txt").write_text("numpy<3\n")
    assert dependency_files(tmp_path) == ["constraints.txt", "extra/more.txt", "requirements.txt"]
    # Installs from the tree itself, or includes something missing: no separate layer.
    (tmp_path / "requirements.txt").write_text("-e .\n")
    assert dependency_files(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("-r ../outside.txt\n")
    assert dependency_files(tmp_path) is None


def test_deps_key_changes_with_every_input(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\n")
    files = ["requirements.txt"]
    base = deps_key("sha256:1", "/a", {}, tmp_path, files)
    assert len(base) == 20
    assert base == deps_key("sha256:1", "/a", {}, tmp_path, files)
    assert base != deps_key("sha256:2", "/a", {}, tmp_path, files)
    assert base != deps_key("sha256:1", "/b", {}, tmp_path, files)
    assert base != deps_key("sha256:1", "/a", {"PIP_INDEX_URL": "x"}, tmp_path, files)
    (tmp_path / "requirements.txt").write_text("numpy==2\n")
    assert base != deps_key("sha256:1", "/a", {}, tmp_path, files)


def test_build_only_variables_are_exported_by_the_command(tmp_path: Path) -> None:
    assert _command("/s2i/assemble", {}) == ["/s2i/assemble"]
    script = tmp_path / "assemble"
    script.write_text('#!/bin/sh\necho "$PIP_CERT|$NBS2I_ASSEMBLE_PHASE"\n')
    script.chmod(0o755)
    cmd = _command(str(script), {"PIP_CERT": "/run/ca dir/x'$.pem", "NBS2I_ASSEMBLE_PHASE": "deps"})
    assert cmd[:2] == ["/bin/sh", "-c"] and cmd[-1] == str(script)
    # the same command, run for real: values arrive intact, quoting included
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env={})
    assert done.stdout.strip() == "/run/ca dir/x'$.pem|deps"
