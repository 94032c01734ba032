"""`nbs2i deploy kubernetes`: every object passes Kubernetes' own schemas,
strictly, and the pod is one that Pod Security "restricted" admits, built
from nbs2i.restricted's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nbs2i import deploy, labels, restricted
from nbs2i.deploy import kubernetes, pod
from tests.support import k8s_schema, pod_security

IMAGE = "registry.example.org/course/lectures:2026"
DIGEST = "sha256:" + "9" * 64
TOKEN = "t0ken-for-the-tests-only"
CASES = {
    "platform uid": {"token": TOKEN},
    "fixed uid": {"token": TOKEN, "uid": 1000680000},
    "password and digest": {"password_hash": "sha512:salt:" + "a" * 128, "digest": DIGEST},
}


def written(tmp_path: Path, **given: Any) -> dict[str, dict[str, Any]]:
    result = deploy.write(deploy.options("kubernetes", IMAGE, **given), tmp_path)
    return {p.name: yaml.safe_load(p.read_text()) for p in result.files}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_file_passes_kubernetes_validate_strict(tmp_path: Path, case: str) -> None:
    result = deploy.write(deploy.options("kubernetes", IMAGE, **CASES[case]), tmp_path)
    run = k8s_schema.cli(result.files)
    assert run.returncode == 0, run.stdout + run.stderr
    output = run.stdout + run.stderr
    passed = [line for line in output.splitlines() if "passed" in line]
    assert len(passed) == len(result.files) == 4, output
    assert f"against version {k8s_schema.MINOR}" in output


def test_the_validator_can_fail(tmp_path: Path) -> None:
    result = deploy.write(deploy.options("kubernetes", IMAGE, token=TOKEN), tmp_path)
    deployment = tmp_path / "deployment.yaml"
    text = deployment.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem")
    deployment.write_text(text)
    run = k8s_schema.cli(result.files)
    assert run.returncode != 0
    assert "readOnlyRootFileSystem" in run.stdout + run.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_pod_is_admitted_by_pod_security_restricted(tmp_path: Path, case: str) -> None:
    objects = written(tmp_path, **CASES[case])
    specs = [s for o in objects.values() if (s := pod_security.pod_spec_of(o)) is not None]
    assert len(specs) == 1
    assert pod_security.restricted(specs[0]) == []


def test_the_pod_is_the_one_nbs2i_restricted_describes(tmp_path: Path) -> None:
    uid = 1000680000
    objects = written(tmp_path, token=TOKEN, uid=uid)
    spec = objects["deployment.yaml"]["spec"]["template"]["spec"]
    (notebook,) = spec["containers"]
    assert notebook["securityContext"] == restricted.container_security_context(uid)
    assert spec["securityContext"] == restricted.pod_security_context(uid, restricted.GID)
    assert notebook["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["terminationGracePeriodSeconds"] == restricted.KILL_AFTER
    assert spec["automountServiceAccountToken"] is False

    ports = {p["name"]: p["containerPort"] for p in notebook["ports"]}
    assert ports == {pod.PORT_NAME: restricted.SERVER_PORT}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = notebook[kind]["httpGet"]
        assert get["path"] == restricted.READINESS_PATH
        assert ports[get["port"]] == restricted.SERVER_PORT

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in notebook["volumeMounts"]}
    claim = objects["persistentvolumeclaim.yaml"]["metadata"]["name"]
    assert mounts[restricted.HOME] == {
        "name": pod.WORKSPACE_VOLUME,
        "persistentVolumeClaim": {"claimName": claim},
    }
    assert "emptyDir" in mounts[restricted.TMP]


def test_the_token_comes_from_the_secret(tmp_path: Path) -> None:
    objects = written(tmp_path, token=TOKEN)
    secret = objects["secret.yaml"]
    (notebook,) = objects["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in notebook["env"] if "valueFrom" in e}
    assert refs == {pod.TOKEN_KEY: {"name": secret["metadata"]["name"], "key": pod.TOKEN_KEY}}
    assert secret["stringData"] == {pod.TOKEN_KEY: TOKEN}
    assert TOKEN not in (tmp_path / "deployment.yaml").read_text()


def test_a_password_hash_replaces_the_token(tmp_path: Path) -> None:
    objects = written(tmp_path, password_hash="sha512:salt:abc")
    assert objects["secret.yaml"]["stringData"] == {pod.PASSWORD_HASH_KEY: "sha512:salt:abc"}


def test_service_and_deployment_find_the_pod(tmp_path: Path) -> None:
    objects = written(tmp_path, token=TOKEN)
    deployment, service = objects["deployment.yaml"], objects["service.yaml"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        assert selector.items() <= template_labels.items()
    assert template_labels[labels.APP_MANAGED_BY] == labels.MANAGED_BY_NBS2I
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (restricted.SERVER_PORT, pod.PORT_NAME)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_image_is_pinned_by_digest(tmp_path: Path) -> None:
    objects = written(tmp_path, token=TOKEN, digest=DIGEST)
    (notebook,) = objects["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert notebook["image"] == f"{IMAGE}@{DIGEST}"


def test_objects_need_credentials() -> None:
    with pytest.raises(ValueError, match="token or a password hash"):
        kubernetes.objects(deploy.options("kubernetes", IMAGE))
