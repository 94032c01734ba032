"""One notebook server for a namespace that enforces Pod Security "restricted".

Plain Kubernetes assigns no UID: the pod runs as the image's numeric USER, or
as `uid`, always with GID 0. The workspace volume gets fsGroup 0, so the
kubelet makes it group 0, group-writable, setgid: the contract the image
keeps for everything it writes, and what `nbs2i run` gives a volume.
"""

from __future__ import annotations

from typing import Any

from nbs2i import restricted
from nbs2i.deploy import pod
from nbs2i.deploy.options import DeployOptions, image_ref


def names(app: str) -> dict[str, str]:
    return {"secret": f"{app}-auth", "claim": f"{app}-workspace"}


def credentials(options: DeployOptions) -> dict[str, str]:
    data = {}
    if options.token:
        data[pod.TOKEN_KEY] = options.token
    if options.password_hash:
        data[pod.PASSWORD_HASH_KEY] = options.password_hash
    if not data:
        raise ValueError("a Kubernetes deployment needs a token or a password hash")
    return data


def objects(options: DeployOptions) -> dict[str, dict[str, Any]]:
    """The objects by kind, in the order they are best applied."""
    app = options.name
    named = names(app)
    data = credentials(options)
    notebook = pod.container(
        str(image_ref(options)),
        secret=named["secret"],
        secret_keys=tuple(data),
        uid=options.uid,
        memory=options.memory,
    )
    spec = pod.pod_spec(
        notebook,
        claim=named["claim"],
        security_context=restricted.pod_security_context(options.uid, fs_group=restricted.GID),
    )
    return {
        "Secret": pod.secret(named["secret"], app, data),
        "PersistentVolumeClaim": pod.workspace_claim(named["claim"], app, options.storage),
        "Service": pod.service(app),
        "Deployment": pod.deployment(app, spec),
    }
