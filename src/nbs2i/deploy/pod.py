"""The notebook server's pod, shared by the OpenShift and Kubernetes targets.

Every security and platform value comes from nbs2i.restricted, so that the
pod a cluster runs is the container `nbs2i run` and `nbs2i verify` rehearse.
"""

from __future__ import annotations

import math
from typing import Any

from nbs2i import labels, restricted

CONTAINER = "notebook"
PORT_NAME = "http"
WORKSPACE_VOLUME = "workspace"
TMP_VOLUME = "tmp"
# /tmp holds the user's name (nss_wrapper), the servers' runtime files and
# what kernels write there; disk-backed, so it does not eat the memory limit.
TMP_SIZE = "1Gi"
CPU_REQUEST = "100m"
TOKEN_KEY = "JUPYTER_TOKEN"
PASSWORD_HASH_KEY = "JUPYTER_PASSWORD_HASH"
# The first start seeds the workspace from the image's notebooks: allow it
# two minutes before liveness counts.
STARTUP_PERIOD = 2
STARTUP_FAILURES = 60
READY_PERIOD = 5
LIVE_PERIOD = 15
FAILURES = 3


def object_labels(name: str) -> dict[str, str]:
    return {
        labels.APP_NAME: name,
        labels.APP_COMPONENT: labels.COMPONENT_NOTEBOOK,
        labels.APP_MANAGED_BY: labels.MANAGED_BY_NBS2I,
    }


def selector_labels(name: str) -> dict[str, str]:
    """What the Deployment and Service select on: never changes for a name
    (a Deployment's selector is immutable)."""
    return {labels.APP_NAME: name, labels.APP_COMPONENT: labels.COMPONENT_NOTEBOOK}


def metadata(name: str, app: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": object_labels(app)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def probe(period: int, failures: int) -> dict[str, Any]:
    """An HTTP probe on the path that answers without credentials."""
    return {
        "httpGet": {"path": restricted.READINESS_PATH, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": math.ceil(restricted.HTTP_TIMEOUT),
        "failureThreshold": failures,
    }


def secret_env(secret: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in keys
    ]


def container(
    image: str, *, secret: str, secret_keys: tuple[str, ...], uid: int | None, memory: str
) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": image,
        "ports": [{"name": PORT_NAME, "containerPort": restricted.SERVER_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "JUPYTER_PORT", "value": str(restricted.SERVER_PORT)},
            *secret_env(secret, secret_keys),
        ],
        "securityContext": restricted.container_security_context(uid),
        "startupProbe": probe(STARTUP_PERIOD, STARTUP_FAILURES),
        "readinessProbe": probe(READY_PERIOD, FAILURES),
        "livenessProbe": probe(LIVE_PERIOD, FAILURES),
        "resources": {
            "requests": {"cpu": CPU_REQUEST, "memory": memory},
            "limits": {"memory": memory},
        },
        "volumeMounts": [
            {"name": WORKSPACE_VOLUME, "mountPath": restricted.HOME},
            {"name": TMP_VOLUME, "mountPath": restricted.TMP},
        ],
    }


def pod_spec(
    notebook: dict[str, Any], *, claim: str, security_context: dict[str, Any]
) -> dict[str, Any]:
    return {
        # A student's code has no business with the cluster's API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": security_context,
        "terminationGracePeriodSeconds": restricted.KILL_AFTER,
        "containers": [notebook],
        "volumes": [
            {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": claim}},
            {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE}},
        ],
    }


def deployment(
    name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, name, annotations),
        "spec": {
            "replicas": 1,
            # One ReadWriteOnce workspace: the old pod must let go of it
            # before the new one can mount it.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(name)},
            "template": {"metadata": {"labels": object_labels(name)}, "spec": spec},
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": restricted.SERVER_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def workspace_claim(claim: str, app: str, storage: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(claim, app),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage}},
        },
    }


def secret(name: str, app: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, app),
        "type": "Opaque",
        "stringData": data,
    }
