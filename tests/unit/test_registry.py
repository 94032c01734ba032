"""The registry seam's pure parts: which hosts may hear plain HTTP, which CA
is trusted, credentials from a Docker config, manifests read and written, and
the decision whether a build can go without an engine."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from nbs2i import labels, registry
from nbs2i.building import direct, dockerfile, layer
from nbs2i.building.deps import Dependencies
from nbs2i.building.plan import plan
from nbs2i.building.request import also_refs, check
from nbs2i.engine import HistoryEntry
from nbs2i.errors import NeedsEngine, RegistryError, UsageError
from nbs2i.registry import access, manifest
from tests.unit.test_build_plan import BUILDER, SHIPPED, facts, request

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:5000", True),
        ("127.8.9.10", True),
        ("[::1]:5000", True),
        ("localhost:5000", True),
        ("10.0.0.1:5000", False),
        ("registry.example.org", False),
        ("lan.example:5000", True),  # named with --insecure-registry
    ],
)
def test_plain_http_only_for_loopback_and_named_hosts(host: str, allowed: bool) -> None:
    assert access.plain_http_allowed(host, access.Access(insecure=("lan.example:5000",))) is allowed


def test_the_ca_is_the_option_then_dockers_certs_d_then_the_default(tmp_path: Path) -> None:
    (tmp_path / "reg.example:443").mkdir()
    (tmp_path / "reg.example:443" / "ca.crt").write_text("pem")
    options = access.Access(certs_dir=tmp_path)
    assert access.ca_for("reg.example:443", options) == str(tmp_path / "reg.example:443/ca.crt")
    assert access.ca_for("other.example", options) is True
    given = replace(options, ca_bundle=tmp_path / "mine.pem")
    assert access.ca_for("reg.example:443", given) == str(tmp_path / "mine.pem")


def test_credentials_come_from_the_docker_config_and_are_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = base64.b64encode(b"teacher:s3cret").decode()
    config = {"auths": {"reg.example:5000": {"auth": auth}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    found = access.credentials("reg.example:5000")
    assert found == access.Credentials("teacher", "s3cret")
    assert "s3cret" not in repr(found)
    assert access.credentials("elsewhere.example") is None


def test_a_credential_helper_answers_for_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "bin" / "docker-credential-nbs2itest"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread host\necho "{\\"Username\\": \\"ci\\", \\"Secret\\": \\"tok-$host\\"}"\n'
    )
    helper.chmod(0o755)
    config = {"credHelpers": {"reg.example": "nbs2itest"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    assert access.credentials("reg.example") == access.Credentials("ci", "tok-reg.example")


def test_bad_registry_options_are_refused() -> None:
    with pytest.raises(UsageError, match="--insecure-registry"):
        access.check(access.Access(insecure=("http://x/y",)))
    with pytest.raises(UsageError, match="names an image, not a repository"):
        check(request(cache_from=("reg.example/cache:v1",)))
    with pytest.raises(UsageError, match="--registry-ca"):
        check(request(registry_access=access.Access(ca_bundle=Path("/nonexistent/ca.pem"))))


@pytest.mark.parametrize(
    ("name", "located"),
    [
        ("reg.example:5000/course/cache", ("reg.example:5000", "course/cache")),
        ("localhost/cache", ("localhost", "cache")),
        ("course/cache", ("docker.io", "course/cache")),
        ("cache", ("docker.io", "library/cache")),
    ],
)
def test_a_repository_is_located_as_docker_reads_it(name: str, located: tuple[str, str]) -> None:
    assert registry.locate(name) == located


# -- manifests ---------------------------------------------------------------------


def _manifest(kind: str, layer_kind: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": kind,
            "config": {"mediaType": "c", "size": 7, "digest": DIGEST},
            "layers": [{"mediaType": layer_kind, "size": 3, "digest": OTHER, "urls": []}],
        }
    ).encode()


@pytest.mark.parametrize(
    ("kind", "config_kind", "layer_kind"),
    [
        (manifest.DOCKER_MANIFEST, manifest.DOCKER_CONFIG, manifest.DOCKER_LAYER_GZIP),
        (manifest.OCI_MANIFEST, manifest.OCI_CONFIG, manifest.OCI_LAYER_GZIP),
    ],
)
def test_a_new_manifest_keeps_the_base_format_and_its_layers(
    kind: str, config_kind: str, layer_kind: str
) -> None:
    base = manifest.parse_manifest(_manifest(kind, layer_kind), DIGEST, kind)
    config = manifest.new_descriptor(config_kind, DIGEST, 10)
    new = manifest.new_descriptor(layer_kind, OTHER, 20)
    written = json.loads(manifest.compose(base, config, new))
    assert written["mediaType"] == kind
    assert written["config"] == {"mediaType": config_kind, "size": 10, "digest": DIGEST}
    assert written["layers"][0] == dict(base.layers[0].raw)  # byte for byte, urls kept
    assert written["layers"][1]["mediaType"] == layer_kind
    assert manifest.FORMATS[kind] == (config_kind, layer_kind)


def test_an_index_gives_this_platforms_image() -> None:
    index = {
        "manifests": [
            {"digest": DIGEST, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": OTHER, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    }
    assert manifest.pick_platform(json.dumps(index).encode(), ("linux", "amd64")) == OTHER
    with pytest.raises(RegistryError, match="no image for linux/s390x"):
        manifest.pick_platform(json.dumps(index).encode(), ("linux", "s390x"))


@pytest.mark.parametrize(
    "bad",
    [b"not json", b"[]", json.dumps({"config": {"digest": "md5:x", "size": 1}}).encode()],
)
def test_a_broken_manifest_is_one_error(bad: bytes) -> None:
    with pytest.raises(RegistryError):
        manifest.parse_manifest(bad, DIGEST, manifest.OCI_MANIFEST)


def test_the_history_reads_as_an_engine_reports_it() -> None:
    config = {
        "history": [
            {"created": "2024-01-01T00:00:00.999999999Z", "created_by": "ADD rootfs"},
            {"created": "2024-01-01T01:00:00+01:00", "created_by": "ENV A=1", "empty_layer": True},
            {"created_by": "no time", "comment": "c"},
        ]
    }
    found = manifest.history(json.dumps(config).encode())
    assert found == [
        HistoryEntry(-62135596800, "no time", "c", 1),
        HistoryEntry(1704067200, "ENV A=1", "", 0),
        HistoryEntry(1704067200, "ADD rootfs", "", 1),
    ]
    # what layer.py writes back from it: the base's history, oldest first
    written = layer.history(found)
    assert written[1] == {
        "created": "2024-01-01T00:00:00Z",
        "created_by": "ENV A=1",
        "empty_layer": True,
    }


def test_image_info_from_a_config_is_what_the_engine_shows() -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "1001", "Env": ["A=1"], "Labels": {"x": "y"}},
        "rootfs": {"type": "layers", "diff_ids": [DIGEST, OTHER]},
    }
    info = manifest.image_info(json.dumps(config).encode(), DIGEST)
    assert info.id == DIGEST and info.layers == (DIGEST, OTHER)
    assert info.config.user == "1001" and dict(info.config.env) == {"A": "1"}


# -- with no engine: what can be built ----------------------------------------------


def test_a_request_that_needs_a_container_is_refused_before_anything_is_read() -> None:
    assert direct.request_needs_engine(request(builder="r.example/b:1", push=True)) == ""
    assert "default builder" in direct.request_needs_engine(request(push=True))
    for change, word in (
        ({"always_assemble": True}, "--always-assemble"),
        ({"incremental": True}, "--incremental"),
        ({"pull_policy": "never"}, "--pull-policy never"),
    ):
        req = request(builder="r.example/b:1", push=True, **change)
        assert word in direct.request_needs_engine(req)


def test_a_notebook_only_build_goes_on_the_builder() -> None:
    the_plan = plan(request(builder="r.example/b:1"), "r.example/b:1", BUILDER, facts(), SHIPPED)
    assert direct.decide(the_plan, "") == "r.example/b:1"


def test_a_dependency_layer_must_be_in_the_cache() -> None:
    deps = Dependencies(files=(("requirements.txt", b"numpy\n"),))
    req = request(builder="r.example/b:1", cache_from=("r.example/cache",))
    the_plan = plan(req, "r.example/b:1", BUILDER, facts(deps=deps), SHIPPED)
    assert the_plan.deps is not None
    hit = f"r.example/cache:deps-{the_plan.deps.key}"
    assert direct.decide(the_plan, hit) == hit
    with pytest.raises(NeedsEngine, match=r"deps-\w+ \(pip, apt\) is not in the cache") as exc:
        direct.decide(the_plan, "")
    assert "--as-dockerfile" in exc.value.fix


@pytest.mark.parametrize(
    ("change", "local", "cache_to", "built_there"),
    [
        ({}, False, "", True),
        ({}, False, "r.example/cache", True),  # the entry is where --cache-to puts it
        ({}, False, "r.example/other", False),  # --cache-to needs it pulled, then pushed
        ({}, True, "", False),  # the engine has the layer: no download to save
        ({"push": False}, False, "", False),
        ({"then_run": True}, False, "", False),  # --run needs the image here
        ({"always_assemble": True}, False, "", False),
    ],
)
def test_a_push_on_a_cached_layer_is_built_in_the_registry(
    change: dict[str, object], local: bool, cache_to: str, built_there: bool
) -> None:
    deps = Dependencies(files=(("requirements.txt", b"numpy\n"),))
    options: dict[str, object] = {"push": True, "cache_from": ("r.example/cache",), **change}
    req = request(builder="r.example/b:1", cache_to=cache_to, **options)
    the_plan = plan(req, "r.example/b:1", BUILDER, facts(deps=deps), SHIPPED)
    assert the_plan.deps is not None
    hit = f"r.example/cache:deps-{the_plan.deps.key}"
    assert direct.onto_cache_entry(the_plan, local, hit) is built_there
    assert direct.onto_cache_entry(the_plan, local, "") is False


def test_a_build_that_runs_assemble_needs_an_engine() -> None:
    builder = replace(
        BUILDER,
        config=replace(
            BUILDER.config, labels={**BUILDER.config.labels, labels.ASSEMBLE_DIGEST: "other"}
        ),
    )
    the_plan = plan(request(builder="r.example/b:1"), "r.example/b:1", builder, facts(), SHIPPED)
    with pytest.raises(NeedsEngine, match="assemble is not the one this nbs2i ships"):
        direct.decide(the_plan, "")


# -- with no engine: the order of the requests ----------------------------------------


class FakeRepository:
    """Records the requests the push makes, in order (a fake only for the order)."""

    def __init__(self, name: str, has: set[str], log: list[str], mounts: bool = True) -> None:
        self.name, self.has, self.log, self.mounts = name, has, log, mounts
        self.registry = object()

    def has_blob(self, digest: str) -> bool:
        self.log.append(f"HEAD {self.name} {digest[7:8]}")
        return digest in self.has

    def mount(self, digest: str, source: str) -> bool:
        self.log.append(f"MOUNT {self.name} {digest[7:8]} from {source}")
        return self.mounts

    def upload(self, digest: str, data: object) -> None:
        self.log.append(f"PUT {self.name} {digest[7:8]}")

    def stream(self, digest: str) -> list[bytes]:
        self.log.append(f"GET {self.name} {digest[7:8]}")
        return [b""]


def test_base_layers_are_looked_for_then_mounted_or_copied() -> None:
    log: list[str] = []
    layers = [manifest.new_descriptor("l", f"sha256:{c * 64}", 1) for c in "abc"]
    base_manifest = manifest.Manifest("m", DIGEST, layers[0], tuple(layers))
    source = FakeRepository("base", set(), log)
    target = FakeRepository("target", {layers[0].digest}, log)
    target.registry = source.registry
    image = direct.RemoteImage("r/base:1", source, base_manifest, b"{}")  # type: ignore[arg-type]
    counts = direct._base_layers(target, image, lambda event: None)  # type: ignore[arg-type]
    assert log == [
        "HEAD target a",
        "HEAD target b",
        "MOUNT target b from base",
        "HEAD target c",
        "MOUNT target c from base",
    ]
    assert counts == "1 base layers present, 2 base layers mounted"
    log.clear()
    target.registry = object()  # another registry: copied, never mounted
    direct._base_layers(target, image, lambda event: None)  # type: ignore[arg-type]
    assert log[1:4] == ["HEAD target b", "GET base b", "PUT target b"]


def test_also_tags_are_tags_of_the_same_repository_and_need_push() -> None:
    req = request(tag="reg.example:5000/c/l:abc", push=True, also_tags=("latest", "week-1"))
    assert also_refs(req) == ("reg.example:5000/c/l:latest", "reg.example:5000/c/l:week-1")
    with pytest.raises(UsageError, match="add --push"):
        check(replace(req, push=False))
    with pytest.raises(UsageError, match="not a valid tag"):
        check(replace(req, also_tags=("bad tag",)))


# -- --as-dockerfile on a Python without tar extraction filters ----------------------


def _tar(*members: tuple[str, str]) -> list[bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
            info.mode = 0o664
            tar.addfile(info, io.BytesIO(b""))
    return [buffer.getvalue()]


def test_the_context_is_unpacked_safely_without_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "tar_filter")
    dockerfile._unpack(_tar(("src/a.ipynb", ""), ("src/link", "a.ipynb")), tmp_path / "ok")
    assert (tmp_path / "ok/src/a.ipynb").stat().st_mode & 0o777 == 0o664
    for bad in (("../x", ""), ("/abs", ""), ("src/out", "../../etc/passwd"), ("l", "/etc")):
        with pytest.raises(UsageError, match="cannot be written safely"):
            dockerfile._unpack(_tar(bad), tmp_path / "bad")
