"""The Pod Security checker itself: it admits a restricted pod and catches
each rule broken on its own, so a green manifest test means something."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from nbs2i import restricted
from tests.support import pod_security

Spec = dict[str, Any]


def good_pod() -> Spec:
    return {
        "securityContext": restricted.pod_security_context(),
        "containers": [
            {
                "name": "notebook",
                "image": "x",
                "ports": [{"containerPort": restricted.SERVER_PORT}],
                "securityContext": restricted.container_security_context(),
            }
        ],
        "volumes": [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "w"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def container_ctx(spec: Spec) -> Spec:
    return spec["containers"][0]["securityContext"]


def _drop(path: tuple[str, ...]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        node: Any = spec
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


def _no_non_root(spec: Spec) -> None:
    del spec["securityContext"]["runAsNonRoot"]
    del container_ctx(spec)["runAsNonRoot"]


def _no_seccomp(spec: Spec) -> None:
    del spec["securityContext"]["seccompProfile"]
    del container_ctx(spec)["seccompProfile"]


def _init_container(spec: Spec) -> None:
    spec["initContainers"] = [{"name": "init", "image": "x"}]


MUTATIONS: dict[str, tuple[Callable[[Spec], None], str]] = {
    "host network": (lambda s: s.update(hostNetwork=True), "Host namespaces"),
    "host pid": (lambda s: s.update(hostPID=True), "Host namespaces"),
    "privileged": (lambda s: container_ctx(s).update(privileged=True), "Privileged"),
    "adds SYS_ADMIN": (
        lambda s: container_ctx(s)["capabilities"].update(add=["SYS_ADMIN"]),
        "Capabilities",
    ),
    "adds NET_RAW": (
        lambda s: container_ctx(s)["capabilities"].update(add=["NET_RAW"]),
        "Capabilities",
    ),
    "adds CHOWN": (
        lambda s: container_ctx(s)["capabilities"].update(add=["CHOWN"]),
        "Capabilities",
    ),
    "drops less than ALL": (
        lambda s: container_ctx(s)["capabilities"].update(drop=["NET_RAW"]),
        "drop ALL",
    ),
    "hostPath": (
        lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "HostPath",
    ),
    "nfs volume": (
        lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
        "Volume types",
    ),
    "hostPort": (lambda s: s["containers"][0]["ports"][0].update(hostPort=80), "Host ports"),
    "SELinux type": (
        lambda s: container_ctx(s).update(seLinuxOptions={"type": "spc_t"}),
        "SELinux",
    ),
    "SELinux user": (
        lambda s: s["securityContext"].update(seLinuxOptions={"user": "root"}),
        "SELinux",
    ),
    "procMount": (lambda s: container_ctx(s).update(procMount="Unmasked"), "/proc mount"),
    "unconfined seccomp on the pod": (
        lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "Seccomp",
    ),
    "no seccomp anywhere": (_no_seccomp, "Seccomp"),
    "AppArmor unconfined": (
        lambda s: container_ctx(s).update(appArmorProfile={"type": "Unconfined"}),
        "AppArmor",
    ),
    "unsafe sysctl": (
        lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "Sysctls",
    ),
    "windows host process": (
        lambda s: s["securityContext"].update(windowsOptions={"hostProcess": True}),
        "HostProcess",
    ),
    "privilege escalation unset": (
        _drop(("containers", 0, "securityContext", "allowPrivilegeEscalation")),  # type: ignore[arg-type]
        "Privilege escalation",
    ),
    "privilege escalation true": (
        lambda s: container_ctx(s).update(allowPrivilegeEscalation=True),
        "Privilege escalation",
    ),
    "runAsNonRoot unset": (_no_non_root, "non-root"),
    "container overrides runAsNonRoot": (
        lambda s: container_ctx(s).update(runAsNonRoot=False),
        "non-root",
    ),
    "runAsUser 0": (lambda s: container_ctx(s).update(runAsUser=0), "runAsUser 0"),
    "an init container without the rules": (_init_container, "initContainers[init]"),
}


def test_a_restricted_pod_is_admitted() -> None:
    assert pod_security.restricted(good_pod()) == []
    assert pod_security.restricted_v2(good_pod()) == []


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_broken_rule_is_caught(mutation: str) -> None:
    change, expected = MUTATIONS[mutation]
    spec = copy.deepcopy(good_pod())
    change(spec)
    violations = pod_security.restricted(spec)
    assert any(expected in v for v in violations), violations


def test_apparmor_annotation_is_checked() -> None:
    key = "container.apparmor.security.beta.kubernetes.io/notebook"
    assert pod_security.restricted(good_pod(), {key: "unconfined"})
    assert pod_security.restricted(good_pod(), {key: "runtime/default"}) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: container_ctx(s).update(runAsUser=1001), "runAsUser"),
        (lambda s: s["securityContext"].update(fsGroup=0), "fsGroup"),
        (lambda s: s["securityContext"].update(supplementalGroups=[5]), "supplementalGroups"),
        (lambda s: s["volumes"].append({"name": "i", "image": {"reference": "x"}}), "image"),
    ],
)
def test_restricted_v2_refuses_what_the_scc_assigns(
    change: Callable[[Spec], None], expected: str
) -> None:
    spec = copy.deepcopy(good_pod())
    change(spec)
    assert any(expected in v for v in pod_security.restricted_v2(spec))


def test_pod_spec_is_found_in_workloads() -> None:
    spec = good_pod()
    assert pod_security.pod_spec_of({"kind": "Pod", "spec": spec}) is spec
    deployment = {"kind": "Deployment", "spec": {"template": {"spec": spec}}}
    assert pod_security.pod_spec_of(deployment) is spec
    assert pod_security.pod_spec_of({"kind": "Service", "spec": {}}) is None
