"""`nbs2i deploy zero-to-jupyterhub`: the values, fed to KubeSpawner's own pod
builder the way the chart configures it, give a pod that Pod Security
"restricted" admits and that runs the image's own CMD with HOME on the
student's volume. The chart's defaults alone do not: the values matter."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from nbs2i import deploy, restricted
from nbs2i.deploy import zero_to_jupyterhub
from tests.support import k8s_schema, pod_security, z2jh

IMAGE = "registry.example.org/course/lectures:2026"
DIGEST = "sha256:" + "5" * 64


def values(**given: Any) -> dict[str, Any]:
    (manifest,) = deploy.render(deploy.options("zero-to-jupyterhub", IMAGE, **given))
    assert manifest.filename == "values.yaml"
    return yaml.safe_load(manifest.text)


def notebook(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


@pytest.mark.parametrize("given", [{}, {"uid": 1000680000}, {"digest": DIGEST}])
def test_kubespawner_makes_a_restricted_pod(given: dict[str, Any]) -> None:
    pod = z2jh.pod_for(values(**given))
    assert pod_security.restricted(pod["spec"], pod["metadata"].get("annotations")) == []
    assert k8s_schema.validate(pod) == k8s_schema.MINOR


def test_the_pod_runs_the_image_cmd_as_the_image_expects() -> None:
    uid = 1000680000
    pod = z2jh.pod_for(values(uid=uid, digest=DIGEST))
    container = notebook(pod)
    # No command or args: tini and the S2I run script, which starts
    # jupyterhub-singleuser because the hub's token is in the environment.
    assert "command" not in container and "args" not in container
    assert "JUPYTERHUB_API_TOKEN" in {e["name"] for e in container["env"]}
    assert container["image"] == f"{IMAGE}@{DIGEST}"
    assert container["securityContext"] == restricted.container_security_context(uid)
    assert pod["spec"]["securityContext"]["fsGroup"] == restricted.GID
    assert container["ports"][0]["containerPort"] == restricted.SERVER_PORT

    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "persistentVolumeClaim" in mounts[restricted.HOME]
    assert "emptyDir" in mounts[restricted.TMP]


def test_the_chart_defaults_alone_are_not_restricted() -> None:
    pod = z2jh.pod_for({"singleuser": {"image": {"name": "x/y", "tag": "1"}}})
    violations = pod_security.restricted(pod["spec"])
    assert any("Privileged: initContainers[block-cloud-metadata]" in v for v in violations)
    assert any("containers[notebook] does not drop ALL" in v for v in violations)
    assert notebook(pod)["args"] == ["jupyterhub-singleuser"]


def test_the_iptables_blocker_alone_breaks_it() -> None:
    broken = values()
    broken["singleuser"]["cloudMetadata"]["blockWithIptables"] = True
    violations = pod_security.restricted(z2jh.pod_for(broken)["spec"])
    assert violations
    assert all("block-cloud-metadata" in v for v in violations)


def test_the_values_use_the_chart_names() -> None:
    doc = values(digest=DIGEST)
    single = doc["singleuser"]
    assert single["cmd"] is None
    assert single["image"] == {"name": IMAGE.rsplit(":", 1)[0], "tag": f"2026@{DIGEST}"}
    assert single["storage"]["homeMountPath"] == restricted.HOME
    assert single["fsGid"] == restricted.GID
    assert set(doc["hub"]["config"]["KubeSpawner"]) == {
        "container_security_context",
        "pod_security_context",
    }


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("1Gi", "1G"),
        ("512Mi", "512M"),
        ("2Ti", "2T"),
        ("1G", 10**9),
        ("1500M", 15 * 10**8),
        ("1073741824", 1073741824),
        ("1Pi", 2**50),
    ],
)
def test_memory_sizes_in_jupyterhubs_units(quantity: str, expected: str | int) -> None:
    assert zero_to_jupyterhub.hub_bytes(quantity) == expected


def test_a_digest_without_a_tag_still_makes_a_valid_reference() -> None:
    doc = yaml.safe_load(
        deploy.render(deploy.options("zero-to-jupyterhub", f"reg.example.org/a@{DIGEST}"))[0].text
    )
    image = doc["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == f"reg.example.org/a:latest@{DIGEST}"
