"""The pod zero-to-jupyterhub would start for a values.yaml, without a cluster.

`pod_for(values)` merges the values over the chart's defaults the way Helm
does (a null removes the default), configures KubeSpawner from them the way
the chart's jupyterhub_config.py does, and asks KubeSpawner's own
get_pod_manifest() (which calls kubespawner.objects.make_pod) for the pod.
Only the connection to a Kubernetes API is stubbed out; nothing is contacted.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from unittest import mock

from traitlets.config import Config

# The chart's defaults that decide the user pod's shape (jupyterhub/values.yaml
# of zero-to-jupyterhub-k8s): its own command, uid and group, the privileged
# iptables init container, dynamic storage on /home/jovyan.
CHART_DEFAULTS: dict[str, Any] = {
    "singleuser": {
        "image": {"name": "quay.io/jupyterhub/k8s-singleuser-sample", "tag": "4.0.0"},
        "cmd": "jupyterhub-singleuser",
        "uid": 1000,
        "fsGid": 100,
        "allowPrivilegeEscalation": False,
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "networkTools": {"image": {"name": "quay.io/jupyterhub/k8s-network-tools", "tag": "4"}},
        "storage": {
            "type": "dynamic",
            "capacity": "10Gi",
            "homeMountPath": "/home/jovyan",
            "extraVolumes": None,
            "extraVolumeMounts": None,
            "dynamic": {
                "volumeNameTemplate": "volume-{user_server}",
                "storageAccessModes": ["ReadWriteOnce"],
                "subPath": None,
            },
            "static": {"pvcName": None, "subPath": "{username}"},
        },
        "memory": {"limit": None, "guarantee": "1G"},
        "extraEnv": {},
        "extraPodConfig": {},
        "defaultUrl": None,
    },
    "hub": {"config": {}},
}


def merge(defaults: Any, values: Any) -> Any:
    """Helm's merge of user values over a chart's: maps merge, a null deletes."""
    if not (isinstance(defaults, dict) and isinstance(values, dict)):
        return copy.deepcopy(values)
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def get(values: dict[str, Any], path: str, default: Any = None) -> Any:
    """z2jh's get_config: a dotted path, `default` when any level is missing."""
    node: Any = values
    for level in path.split("."):
        if not isinstance(node, dict) or level not in node:
            return default
        node = node[level]
    return node


def spawner_config(values: dict[str, Any]) -> Config:
    """KubeSpawner's configuration, as the chart's jupyterhub_config.py builds it."""
    c = Config()
    su = "singleuser."
    for trait, key in (
        ("uid", "uid"),
        ("fs_gid", "fsGid"),
        ("environment", "extraEnv"),
        ("extra_pod_config", "extraPodConfig"),
        ("mem_limit", "memory.limit"),
        ("mem_guarantee", "memory.guarantee"),
    ):
        value = get(values, su + key)
        if value is not None:
            setattr(c.KubeSpawner, trait, value)
    image = get(values, su + "image.name")
    if image:
        tag = get(values, su + "image.tag")
        c.KubeSpawner.image = f"{image}:{tag}" if tag else image
    c.KubeSpawner.allow_privilege_escalation = get(values, su + "allowPrivilegeEscalation")
    missing = object()
    cmd = get(values, su + "cmd", missing)
    if cmd is not missing:
        c.Spawner.cmd = cmd
    volumes, mounts = _storage(values)
    c.KubeSpawner.volumes = volumes
    c.KubeSpawner.volume_mounts = mounts
    if get(values, su + "cloudMetadata.blockWithIptables") is True:
        c.KubeSpawner.init_containers = [_iptables_container(values)]
    for section, settings in (get(values, "hub.config") or {}).items():
        c[section].update(settings)
    return c


def _storage(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    su = "singleuser.storage."
    volumes: dict[str, Any] = {}
    mounts: dict[str, Any] = {}
    if get(values, su + "type") == "dynamic":
        name = get(values, su + "dynamic.volumeNameTemplate")
        volumes[name] = {"name": name, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
        mounts[name] = {
            "mountPath": get(values, su + "homeMountPath"),
            "name": name,
            "subPath": get(values, su + "dynamic.subPath"),
        }
    for volume in get(values, su + "extraVolumes") or ():
        volumes[volume["name"]] = volume
    for index, mount in enumerate(get(values, su + "extraVolumeMounts") or ()):
        mounts[f"{index}-{mount['name']}"] = mount
    return volumes, mounts


def _iptables_container(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's cloud-metadata blocker: privileged, root, NET_ADMIN."""
    image = get(values, "singleuser.networkTools.image")
    return {
        "name": "block-cloud-metadata",
        "image": f"{image['name']}:{image['tag']}",
        "command": ["iptables", "--append", "OUTPUT", "--jump", "DROP"],
        "securityContext": {
            "privileged": True,
            "runAsUser": 0,
            "capabilities": {"add": ["NET_ADMIN"]},
        },
    }


def pod_for(values: dict[str, Any]) -> dict[str, Any]:
    """The user pod KubeSpawner makes for these values (merged over the
    chart's defaults), as the API server would receive it."""
    merged = merge(CHART_DEFAULTS, values)
    return asyncio.run(_manifest(spawner_config(merged)))


async def _manifest(config: Config) -> dict[str, Any]:
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    with (
        mock.patch("kubespawner.spawner.load_config"),
        mock.patch("kubespawner.spawner.shared_client"),
    ):
        spawner = KubeSpawner(config=config, _mock=True)
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as api:
        return api.sanitize_for_serialization(pod)
