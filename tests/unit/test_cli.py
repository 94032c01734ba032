"""The command line: version, help, and one-line errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nbs2i import __version__


def nbs2i(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbs2i", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_version() -> None:
    result = nbs2i("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_commands() -> None:
    result = nbs2i("--help")
    assert result.returncode == 0
    assert "engine" in result.stdout


def test_unreachable_engine_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    env = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:1"}
    env.pop("NBS2I_DEBUG", None)
    result = nbs2i("engine", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nbs2i: error: no Docker engine answers at tcp://127.0.0.1:1")
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = nbs2i("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_output_cannot_rewrite_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from nbs2i.cli import human_reporter
    from nbs2i.progress import Event

    report = human_reporter()
    report(Event("output", "a\x1b]0;title\x07b\rc\x9bd\te"))
    report(Event("warning", "two\nlines"))
    assert capsys.readouterr().err == "a?]0;title?b?c?d\te\nwarning: two\nlines\n"


def test_an_interrupt_is_an_error_event_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from nbs2i.cli.output import json_errors

    with pytest.raises(KeyboardInterrupt), json_errors(True):
        raise KeyboardInterrupt
    event = json.loads(capsys.readouterr().out)
    assert event["event"] == "error" and event["problem"] == "interrupted"


@pytest.mark.parametrize(
    ("command", "args", "positional"),
    [
        ("build", "nbs2i.cli.build:BuildArgs", {"source", "tag"}),
        ("verify", "nbs2i.cli.examine:VerifyArgs", {"image"}),
        ("test", "nbs2i.cli.examine:TestArgs", {"image", "patterns"}),
        (
            "deploy",
            "nbs2i.cli.admin:DeployArgs",
            {"target", "image", "out_dir", "ask_password", "force"},
        ),
    ],
)
def test_each_option_object_has_a_field_for_every_option(
    command: str, args: str, positional: set[str]
) -> None:
    import dataclasses
    import importlib

    from nbs2i.cli import cli

    module, name = args.split(":")
    fields = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    params = {p.name for p in cli.commands[command].params}
    assert fields == params - positional
