"""An OpenShift Template: the notebooks built in the cluster with the S2I
builder, served behind a TLS route.

`oc new-app -f template.yaml -p REPOSITORY_URL=...` builds the repository on
the builder (the Source strategy: the cluster runs the builder's assemble, as
`s2i build` would) and rolls the result out. The pod names no UID and no
fsGroup: restricted-v2 picks both from the namespace's range, and the image
runs as any UID with GID 0.
"""

from __future__ import annotations

import json
from typing import Any

from nbs2i import restricted
from nbs2i.deploy import pod
from nbs2i.deploy.options import DeployOptions

# Parameters: what `oc process -p NAME=value` sets.
APPLICATION_NAME = "APPLICATION_NAME"
REPOSITORY_URL = "REPOSITORY_URL"
REPOSITORY_REF = "REPOSITORY_REF"
CONTEXT_DIR = "CONTEXT_DIR"
BUILDER_IMAGE = "BUILDER_IMAGE"
ROUTE_HOSTNAME = "ROUTE_HOSTNAME"
VOLUME_CAPACITY = "VOLUME_CAPACITY"
MEMORY_LIMIT = "MEMORY_LIMIT"
JUPYTER_TOKEN = "JUPYTER_TOKEN"
JUPYTER_PASSWORD_HASH = "JUPYTER_PASSWORD_HASH"
# What OpenShift generates when the token is not given.
TOKEN_EXPRESSION = "[a-zA-Z0-9]{32}"

# The annotation that rolls the Deployment out whenever a build pushes a new image.
TRIGGERS = "image.openshift.io/triggers"
TAG = "latest"


def ref(parameter: str) -> str:
    return "${" + parameter + "}"


APP = ref(APPLICATION_NAME)


def parameter(
    name: str, display: str, description: str, value: str = "", *, required: bool = True
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "displayName": display,
        "description": description,
        "required": required,
    }
    if value:
        entry["value"] = value
    return entry


def parameters(options: DeployOptions, builder: str) -> list[dict[str, Any]]:
    """The template's parameters: (name, display name, description, value, required)."""
    table = (
        (APPLICATION_NAME, "Name",
         "Names every object of this application (lower-case letters, digits, '-').",
         options.name, True),
        (REPOSITORY_URL, "Git repository URL",
         "The repository of notebooks (and requirements.txt) to build.",
         options.repository_url, True),
        (REPOSITORY_REF, "Git reference",
         "Branch, tag or commit to build; empty: the default branch.", options.ref, False),
        (CONTEXT_DIR, "Context directory",
         "Directory of the repository that holds the notebooks; empty: its root.",
         options.context_dir, False),
        (BUILDER_IMAGE, "Builder image",
         "The nbs2i S2I builder, as the cluster can pull it.", builder, True),
        (ROUTE_HOSTNAME, "Hostname",
         "Public hostname of the route; empty: the router generates one.",
         options.hostname, False),
        (VOLUME_CAPACITY, "Workspace size",
         "Size of the volume that keeps the students' work (HOME).", options.storage, True),
        (MEMORY_LIMIT, "Memory",
         "Memory requested for and available to the notebook server and its kernels.",
         options.memory, True),
        (JUPYTER_TOKEN, "Access token",
         "The token that opens the notebooks; generated when not given.", options.token, True),
        (JUPYTER_PASSWORD_HASH, "Password hash",
         "Optional: a password hash in Jupyter's algorithm:salt:hexdigest form.",
         options.password_hash, False),
    )  # fmt: skip
    found = [
        parameter(name, shown, about, value, required=required)
        for name, shown, about, value, required in table
    ]
    for item in found:
        if item["name"] == JUPYTER_TOKEN:
            item.update({"generate": "expression", "from": TOKEN_EXPRESSION})
    return found


def image_stream(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": pod.metadata(name, APP),
        "spec": spec,
    }


def builder_stream(name: str) -> dict[str, Any]:
    return image_stream(
        name,
        {
            "lookupPolicy": {"local": False},
            "tags": [
                {
                    "name": TAG,
                    "from": {"kind": "DockerImage", "name": ref(BUILDER_IMAGE)},
                    "importPolicy": {"scheduled": False},
                    "referencePolicy": {"type": "Local"},
                }
            ],
        },
    )


def build_config(builder: str) -> dict[str, Any]:
    return {
        "apiVersion": "build.openshift.io/v1",
        "kind": "BuildConfig",
        "metadata": pod.metadata(APP, APP),
        "spec": {
            "runPolicy": "Serial",
            "source": {
                "type": "Git",
                "git": {"uri": ref(REPOSITORY_URL), "ref": ref(REPOSITORY_REF)},
                "contextDir": ref(CONTEXT_DIR),
            },
            "strategy": {
                "type": "Source",
                "sourceStrategy": {
                    "from": {"kind": "ImageStreamTag", "name": f"{builder}:{TAG}"},
                },
            },
            "output": {"to": {"kind": "ImageStreamTag", "name": f"{APP}:{TAG}"}},
            "triggers": [
                {"type": "ConfigChange"},
                {"type": "ImageChange", "imageChange": {}},
            ],
        },
    }


def image_trigger() -> str:
    """Sets the notebook container's image to each new build of the stream."""
    return json.dumps(
        [
            {
                "from": {"kind": "ImageStreamTag", "name": f"{APP}:{TAG}"},
                "fieldPath": f'spec.template.spec.containers[?(@.name=="{pod.CONTAINER}")].image',
            }
        ],
        separators=(",", ":"),
    )


def route() -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": pod.metadata(APP, APP),
        "spec": {
            "host": ref(ROUTE_HOSTNAME),
            "to": {"kind": "Service", "name": APP, "weight": 100},
            "port": {"targetPort": pod.PORT_NAME},
            "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
        },
    }


def objects() -> list[dict[str, Any]]:
    secret = f"{APP}-auth"
    claim = f"{APP}-workspace"
    builder = f"{APP}-builder"
    notebook = pod.container(
        # Resolved through the image stream (lookupPolicy local), then kept
        # current by the trigger.
        f"{APP}:{TAG}",
        secret=secret,
        secret_keys=(pod.TOKEN_KEY, pod.PASSWORD_HASH_KEY),
        uid=None,
        memory=ref(MEMORY_LIMIT),
    )
    spec = pod.pod_spec(notebook, claim=claim, security_context=restricted.pod_security_context())
    return [
        builder_stream(builder),
        image_stream(APP, {"lookupPolicy": {"local": True}}),
        build_config(builder),
        pod.secret(
            secret,
            APP,
            {
                pod.TOKEN_KEY: ref(JUPYTER_TOKEN),
                pod.PASSWORD_HASH_KEY: ref(JUPYTER_PASSWORD_HASH),
            },
        ),
        pod.workspace_claim(claim, APP, ref(VOLUME_CAPACITY)),
        pod.deployment(APP, spec, {TRIGGERS: image_trigger()}),
        pod.service(APP),
        route(),
    ]


def template(options: DeployOptions, builder: str) -> dict[str, Any]:
    return {
        "apiVersion": "template.openshift.io/v1",
        "kind": "Template",
        "metadata": {
            "name": f"{options.name}-nbs2i",
            "annotations": {
                "openshift.io/display-name": "Jupyter notebooks (nbs2i)",
                "description": (
                    "Builds a Git repository of Jupyter notebooks with the nbs2i S2I builder "
                    "and serves it over HTTPS, with a persistent workspace, under restricted-v2."
                ),
                "iconClass": "icon-python",
                "tags": "jupyter,python,notebook,nbs2i",
            },
        },
        "message": (
            f"The notebooks are being built from {ref(REPOSITORY_URL)}. Once the route "
            f"answers, open it and log in with the token {ref(JUPYTER_TOKEN)} (also in the "
            f"secret {APP}-auth)."
        ),
        "parameters": parameters(options, builder),
        "objects": objects(),
    }
