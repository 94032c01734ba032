"""nbs2i.builder without an engine: options, the build context, build events."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbs2i import builder
from nbs2i.ca import default_ca_bundle
from nbs2i.cli import cli, run_guarded
from nbs2i.engine import BuildEvent
from nbs2i.errors import BuildError, UsageError
from nbs2i.progress import Event


def test_ca_bundle_default_follows_pip_then_requests_then_ssl(tmp_path: Path) -> None:
    a, b, c = (tmp_path / name for name in "abc")
    for path in (a, b, c):
        path.write_text("pem")
    env = {"SSL_CERT_FILE": str(c), "REQUESTS_CA_BUNDLE": str(b), "PIP_CERT": str(a)}
    assert default_ca_bundle(env) == a
    del env["PIP_CERT"]
    assert default_ca_bundle(env) == b
    del env["REQUESTS_CA_BUNDLE"]
    assert default_ca_bundle(env) == c
    assert default_ca_bundle({"PIP_CERT": ""}) is None
    assert default_ca_bundle({}) is None


def test_a_stale_ca_variable_is_one_error_for_every_command(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\$SSL_CERT_FILE names .*gone.pem, which is not a file"):
        default_ca_bundle({"SSL_CERT_FILE": str(tmp_path / "gone.pem")})


def test_default_tags_are_version_and_latest() -> None:
    assert builder.default_tags("0.1.0") == ("nbs2i/builder:0.1.0", "nbs2i/builder:latest")
    assert builder.default_tags("0.1.0", "scipy") == (
        "nbs2i/builder-scipy:0.1.0",
        "nbs2i/builder-scipy:latest",
    )
    assert builder.default_tags("0.1.0", "r", "5") == (
        "nbs2i/builder-r:0.1.0-jupyterhub5",
        "nbs2i/builder-r:latest-jupyterhub5",
    )
    # A local version (0.1.0+dirty) is not a valid Docker tag.
    assert builder.default_tags("0.1.0+g1234")[0] == "nbs2i/builder:0.1.0-g1234"


def test_s2i_dir_is_found_in_the_source_tree() -> None:
    found = builder.s2i_dir()
    assert (found / "Dockerfile").is_file()
    assert (found / "locks" / "kernel.lock").is_file()
    assert (found / "bin" / "assemble").is_file()


def _members(context: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_context_holds_s2i_with_fixed_modes_and_no_bundle_by_default() -> None:
    members = _members(builder.build_context(builder.s2i_dir()))
    assert {"Dockerfile", "locks/kernel.lock", "bin/run", "bin/assemble"} <= set(members)
    assert members["bin/run"].mode == 0o755 and members["bin/save-artifacts"].mode == 0o755
    assert members["Dockerfile"].mode == 0o644
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert builder.CA_BUNDLE_NAME not in members
    assert not any("__pycache__" in name for name in members)


def test_context_carries_the_dependency_file_definition_nbs2i_decides_with() -> None:
    import nbs2i.depfiles

    package = Path(nbs2i.depfiles.__file__).parent
    context = builder.build_context(builder.s2i_dir())
    members = _members(context)
    assert members["bin/depfiles"].mode == 0o755
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        for source in sorted(package.glob("*.py")):
            name = f"{builder.DEPFILES_DIR}/{source.name}"
            assert members[name].mode == 0o644
            assert tar.extractfile(name).read() == source.read_bytes()  # type: ignore[union-attr]
    # The label that lets nbs2i write the notebook layer covers what assemble asks.
    parts = [builder.s2i_dir() / "bin" / n for n in ("assemble", "depfiles")]
    parts += sorted(package.glob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    assert builder.shipped_assemble_digest() == digest


def test_context_carries_the_bundle_with_its_marker(tmp_path: Path) -> None:
    bundle = tmp_path / "corp.pem"
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
    context = builder.build_context(builder.s2i_dir(), bundle)
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        data = tar.extractfile(builder.CA_BUNDLE_NAME).read()  # type: ignore[union-attr]
    assert data.startswith(bundle.read_bytes())
    assert data.endswith(builder.CA_BUNDLE_MARKER)


@pytest.mark.parametrize(
    ("request_kwargs", "words"),
    [
        ({"tags": ()}, "no tag"),
        ({"tags": ("bad tag",)}, "is not an image tag"),
        ({"ca_bundle": Path("/nonexistent/ca.pem")}, "is not a file"),
        ({"pip_index_url": "pypi.internal/simple"}, "is not a URL"),
        ({"variant": "julia"}, "--variant"),
        ({"jupyterhub_major": "4"}, "--jupyterhub"),
    ],
)
def test_bad_requests_are_refused(request_kwargs: dict, words: str) -> None:
    kwargs = {"tags": ("x/y:1",), **request_kwargs}
    with pytest.raises(UsageError, match=words):
        builder.check_request(builder.BuilderRequest(**kwargs))


def test_follow_reports_steps_and_output_and_finds_the_image() -> None:
    events: list[Event] = []
    stream = iter(
        [
            BuildEvent(stream="Step 1/2 : FROM debian:bookworm-slim\n"),
            BuildEvent(stream=" ---> 2599450c7d49\n"),
            BuildEvent(image_id="sha256:abc"),
            BuildEvent(stream="Successfully built abc\n"),
        ]
    )
    assert builder._follow(stream, events.append) == "sha256:abc"
    assert [e.kind for e in events] == ["step", "output", "output"]


def test_follow_turns_a_build_error_into_one_line_with_the_tail() -> None:
    stream = iter(
        [
            BuildEvent(stream="Step 6/21 : RUN pip install\n"),
            BuildEvent(stream="SSL: CERTIFICATE_VERIFY_FAILED\n"),
            BuildEvent(error="The command returned a non-zero code: 1"),
        ]
    )
    with pytest.raises(BuildError) as info:
        builder._follow(stream, lambda _e: None)
    assert "--ca-bundle" in str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.details
    assert "\n" not in str(info.value)


def test_follow_without_an_image_fails() -> None:
    with pytest.raises(BuildError, match="without an image"):
        builder._follow(iter([BuildEvent(stream="Step 1/1 : FROM x\n")]), lambda _e: None)


def test_cli_refuses_a_missing_bundle_before_asking_the_engine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("nbs2i.cli.output.connect", lambda: pytest.fail("must not connect"))
    code = run_guarded(
        lambda: cli.main(
            ["builder", "build", "--ca-bundle", "/nonexistent/ca.pem"], standalone_mode=False
        )
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith("nbs2i: error: --ca-bundle")


def test_cli_help_lists_the_options() -> None:
    result = CliRunner().invoke(cli, ["builder", "build", "--help"])
    assert result.exit_code == 0
    for option in ("--from", "--tag", "--ca-bundle", "--pip-index-url"):
        assert option in result.output


def test_build_args_carry_base_version_and_index() -> None:
    request = builder.BuilderRequest(
        tags=("x/y:1",), base_image="my/debian:12", pip_index_url="https://pypi.corp/simple"
    )
    args = builder._build_args(request)
    assert args["BASE_IMAGE"] == "my/debian:12"
    assert args["PIP_INDEX_URL"] == "https://pypi.corp/simple"
    assert args["NBS2I_VERSION"]
    assert args["NBS2I_ASSEMBLE_SHA256"] == builder.shipped_assemble_digest()
    assert (args["NBS2I_VARIANT"], args["JUPYTERHUB_MAJOR"]) == ("minimal", "6")
    assert len(args["NBS2I_ASSEMBLE_SHA256"]) == 64
    assert "PIP_INDEX_URL" not in builder._build_args(builder.BuilderRequest(tags=("x/y:1",)))
