"""The command around assemble, run by the real /bin/sh: injected files are
linked into a directory for the script's run only, and never over a file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from nbs2i.building.assemble import _command


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "pip.conf").write_text("[global]\n")
    (staged / ".netrc").write_text("machine x\n")
    (staged / "a name").write_text("spaces\n")
    dest = tmp_path / "venv"
    dest.mkdir()
    (dest / "pyvenv.cfg").write_text("home = /usr\n")
    script = tmp_path / "assemble"
    script.write_text(f'#!/bin/sh\nls -A "{dest}"\ncat "{dest}/pip.conf"\nexit "${{CODE:-0}}"\n')
    script.chmod(0o755)
    return staged, dest, script


def test_the_files_are_there_for_the_run_and_gone_after(tmp_path: Path) -> None:
    staged, dest, script = layout(tmp_path)
    done = run(_command(str(script), {"CODE": "3"}, [(str(staged), str(dest))]))
    assert done.returncode == 3, done.stderr
    assert done.stdout.split("\n")[:4] == [".netrc", "a name", "pip.conf", "pyvenv.cfg"]
    assert "[global]" in done.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["pyvenv.cfg"]


def test_a_file_the_directory_has_is_never_replaced(tmp_path: Path) -> None:
    staged, dest, script = layout(tmp_path)
    (staged / "pyvenv.cfg").write_text("home = /evil\n")
    done = run(_command(str(script), {}, [(str(staged), str(dest))]))
    assert done.returncode == 1
    assert f"the builder already has {dest}/pyvenv.cfg" in done.stderr
    assert (dest / "pyvenv.cfg").read_text() == "home = /usr\n"
    assert sorted(p.name for p in dest.iterdir()) == ["pyvenv.cfg"], "links were left"


def test_without_links_or_variables_the_script_runs_alone() -> None:
    assert _command("/usr/libexec/s2i/assemble", {}) == ["/usr/libexec/s2i/assemble"]
