"""`nbs2i deploy openshift`: a Template that `oc process` accepts, whose
objects pass the schemas of Kubernetes (its own kinds) and of the OpenShift
API (Template, ImageStream, BuildConfig, Route), strictly, and whose pod
restricted-v2 admits without being told a UID."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from nbs2i import deploy, restricted
from nbs2i.deploy import openshift as template_module
from nbs2i.deploy import pod
from tests.support import k8s_schema, openshift, pod_security

REPO = "https://git.example.org/course/lectures.git"
OPENSHIFT_KINDS = {"Template", "ImageStream", "BuildConfig", "Route"}
KUBERNETES_KINDS = {"Deployment", "Service", "PersistentVolumeClaim", "Secret"}


def template(**given: Any) -> dict[str, Any]:
    (manifest,) = deploy.render(deploy.options("openshift", **given))
    assert manifest.filename == "template.yaml"
    return yaml.safe_load(manifest.text)


def processed(values: dict[str, str] | None = None, seed: int = 0, **given: Any) -> list[Any]:
    return openshift.process(template(**given), {"REPOSITORY_URL": REPO, **(values or {})}, seed)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def test_parameters_are_the_ones_users_know() -> None:
    params = {p["name"]: p for p in template()["parameters"]}
    for name in (
        "APPLICATION_NAME",
        "REPOSITORY_URL",
        "REPOSITORY_REF",
        "CONTEXT_DIR",
        "BUILDER_IMAGE",
        "ROUTE_HOSTNAME",
        "JUPYTER_TOKEN",
    ):
        assert name in params
    assert params["REPOSITORY_URL"]["required"] is True
    assert params["ROUTE_HOSTNAME"]["required"] is False
    assert params["JUPYTER_TOKEN"]["generate"] == "expression"
    assert params["BUILDER_IMAGE"]["value"].startswith("nbs2i/builder:")


def test_every_reference_is_declared_and_every_parameter_used() -> None:
    doc = template()
    declared = {p["name"] for p in doc["parameters"]}
    assert openshift.referenced(doc["objects"]) == declared
    assert openshift.referenced(doc["message"]) <= declared


def test_options_become_parameter_defaults() -> None:
    doc = template(
        image="quay.example.org/nbs2i/builder:1",
        name="physics",
        repository_url=REPO,
        ref="2026",
        context_dir="week1",
        hostname="lab.example.org",
        storage="5Gi",
    )
    values = {p["name"]: p.get("value") for p in doc["parameters"]}
    assert values["APPLICATION_NAME"] == "physics"
    assert values["REPOSITORY_URL"] == REPO
    assert values["REPOSITORY_REF"] == "2026"
    assert values["CONTEXT_DIR"] == "week1"
    assert values["BUILDER_IMAGE"] == "quay.example.org/nbs2i/builder:1"
    assert values["ROUTE_HOSTNAME"] == "lab.example.org"
    assert values["VOLUME_CAPACITY"] == "5Gi"


def test_processing_needs_the_repository() -> None:
    with pytest.raises(openshift.TemplateError, match="REPOSITORY_URL"):
        openshift.process(template())


def test_the_objects_after_processing() -> None:
    kinds = by_kind(processed())
    assert {k: len(v) for k, v in kinds.items()} == {
        "ImageStream": 2,
        "BuildConfig": 1,
        "Secret": 1,
        "PersistentVolumeClaim": 1,
        "Deployment": 1,
        "Service": 1,
        "Route": 1,
    }
    assert "${" not in json.dumps(processed())


def test_kubernetes_kinds_pass_kubernetes_validate_strict() -> None:
    objects = [o for o in processed() if o["kind"] in KUBERNETES_KINDS]
    assert {o["kind"] for o in objects} == KUBERNETES_KINDS
    for obj in objects:
        assert k8s_schema.validate(obj) == k8s_schema.MINOR


def test_openshift_kinds_pass_the_openshift_schemas_strictly() -> None:
    objects = [o for o in processed() if o["kind"] not in KUBERNETES_KINDS]
    assert {o["kind"] for o in objects} == OPENSHIFT_KINDS - {"Template"}
    for obj in objects:
        assert not k8s_schema.knows(obj), "Kubernetes has no schema for OpenShift's kinds"
        openshift.validate(obj)
    openshift.validate(template())


def test_the_openshift_schemas_can_fail() -> None:
    route = by_kind(processed())["Route"][0]
    route["spec"]["tls"]["terminaton"] = "edge"
    with pytest.raises(Exception, match="terminaton"):
        openshift.validate(route)
    build = by_kind(processed())["BuildConfig"][0]
    build["spec"]["strategy"]["sourceStrategy"]["from"] = "not an object"
    with pytest.raises(Exception, match="sourceStrategy"):
        openshift.validate(build)


def test_the_build_is_s2i_on_the_builder_and_feeds_the_deployment() -> None:
    kinds = by_kind(processed({"APPLICATION_NAME": "physics", "BUILDER_IMAGE": "q.io/b:1"}))
    streams = {s["metadata"]["name"]: s["spec"] for s in kinds["ImageStream"]}
    builder_tag = streams["physics-builder"]["tags"][0]
    assert builder_tag["from"] == {"kind": "DockerImage", "name": "q.io/b:1"}
    assert streams["physics"]["lookupPolicy"] == {"local": True}

    (build,) = kinds["BuildConfig"]
    strategy = build["spec"]["strategy"]
    assert strategy["type"] == "Source"
    assert strategy["sourceStrategy"]["from"] == {
        "kind": "ImageStreamTag",
        "name": f"physics-builder:{builder_tag['name']}",
    }
    assert build["spec"]["source"]["git"]["uri"] == REPO
    output = build["spec"]["output"]["to"]
    assert output["kind"] == "ImageStreamTag"

    (deployment,) = kinds["Deployment"]
    (trigger,) = json.loads(deployment["metadata"]["annotations"][template_module.TRIGGERS])
    assert trigger["from"] == output
    (notebook,) = deployment["spec"]["template"]["spec"]["containers"]
    assert f'@.name=="{notebook["name"]}"' in trigger["fieldPath"]
    assert notebook["image"] == output["name"]


def test_the_route_is_tls_edge_with_redirect() -> None:
    kinds = by_kind(processed({"ROUTE_HOSTNAME": "lab.example.org"}))
    (route,) = kinds["Route"]
    (service,) = kinds["Service"]
    assert route["spec"]["host"] == "lab.example.org"
    assert route["spec"]["tls"] == {
        "termination": "edge",
        "insecureEdgeTerminationPolicy": "Redirect",
    }
    assert route["spec"]["to"]["name"] == service["metadata"]["name"]
    assert route["spec"]["port"]["targetPort"] == service["spec"]["ports"][0]["name"]


def test_the_pod_is_admitted_by_restricted_v2_without_a_uid() -> None:
    (deployment,) = by_kind(processed())["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    assert pod_security.restricted(spec) == []
    assert pod_security.restricted_v2(spec) == []
    (notebook,) = spec["containers"]
    assert notebook["securityContext"] == restricted.container_security_context()
    assert spec["securityContext"] == restricted.pod_security_context()
    mounts = {m["mountPath"] for m in notebook["volumeMounts"]}
    assert mounts == {restricted.HOME, restricted.TMP}


def test_a_token_is_generated_per_instantiation() -> None:
    tokens = set()
    for seed in (1, 2):
        (secret,) = by_kind(processed(seed=seed))["Secret"]
        token = secret["stringData"][pod.TOKEN_KEY]
        assert re.fullmatch(r"[a-zA-Z0-9]{32}", token)
        tokens.add(token)
    assert len(tokens) == 2
    (secret,) = by_kind(processed({"JUPYTER_TOKEN": "given-token-0123456789"}))["Secret"]
    assert secret["stringData"][pod.TOKEN_KEY] == "given-token-0123456789"


def test_the_schema_document_is_named() -> None:
    assert "OpenShift" in openshift.describe()
