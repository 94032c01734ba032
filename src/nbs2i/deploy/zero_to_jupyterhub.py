"""values.yaml for the zero-to-jupyterhub Helm chart: one server per student.

The chart's defaults would not run a restricted pod: its `cmd`
(jupyterhub-singleuser) replaces the image's run script, its uid 1000 and
fsGid 100 are not the image's group 0, and its cloud-metadata block is a
privileged init container with NET_ADMIN. These values undo each of those and
give KubeSpawner the security contexts of nbs2i.restricted.
"""

from __future__ import annotations

from typing import Any

from nbs2i import restricted
from nbs2i.deploy import pod
from nbs2i.deploy.options import DeployOptions, image_ref

# z2jh's image has a name and a tag, joined as name:tag; a digest rides on
# the tag (`name:tag@sha256:...` is a valid reference and pulls the digest).
DEFAULT_TAG = "latest"
# JupyterHub writes sizes with 1024-based K, M, G, T; Kubernetes' decimal ones
# become plain bytes.
_HUB_UNITS = {"Ki": "K", "Mi": "M", "Gi": "G", "Ti": "T"}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_BINARY = {"Pi": 2**50, "Ei": 2**60}


def hub_bytes(quantity: str) -> str | int:
    """A Kubernetes quantity (checked by options.check) as JupyterHub's ByteSpecification."""
    number = quantity.rstrip("KMGTPEikmgtpe")
    unit = quantity[len(number) :]
    if unit in _HUB_UNITS:
        return number + _HUB_UNITS[unit]
    return int(float(number) * (_DECIMAL.get(unit) or _BINARY.get(unit) or 1))


def image(options: DeployOptions) -> dict[str, str]:
    parsed = image_ref(options)
    tag = parsed.tag or DEFAULT_TAG
    if parsed.digest:
        tag = f"{tag}@{parsed.digest}"
    return {"name": parsed.repository, "tag": tag}


def values(options: DeployOptions) -> dict[str, Any]:
    return {
        "singleuser": {
            "image": image(options),
            # null: the image's CMD (the S2I run script), which starts
            # jupyterhub-singleuser itself when the hub's token is set.
            "cmd": None,
            "uid": options.uid,
            "fsGid": restricted.GID,
            "allowPrivilegeEscalation": False,
            # A NetworkPolicy (the chart's default) keeps pods off the
            # metadata server; the iptables way needs a privileged container.
            "cloudMetadata": {"blockWithIptables": False},
            "storage": {
                "capacity": options.storage,
                "homeMountPath": restricted.HOME,
                "extraVolumes": [{"name": pod.TMP_VOLUME, "emptyDir": {"sizeLimit": pod.TMP_SIZE}}],
                "extraVolumeMounts": [{"name": pod.TMP_VOLUME, "mountPath": restricted.TMP}],
            },
            "memory": {
                "limit": hub_bytes(options.memory),
                "guarantee": hub_bytes(options.memory),
            },
        },
        "hub": {
            "config": {
                "KubeSpawner": {
                    "container_security_context": restricted.container_security_context(
                        options.uid
                    ),
                    "pod_security_context": restricted.pod_security_context(),
                }
            }
        },
    }


HEADER = """\
zero-to-jupyterhub values written by nbs2i: a restricted pod per student.
  helm upgrade --install jhub jupyterhub/jupyterhub --values values.yaml
Use a chart whose JupyterHub has the same major version as the image's
jupyterhub-singleuser: the hub warns about a mismatch, and what changed
between majors (the OAuth flow, the API) may break spawns or logins."""
