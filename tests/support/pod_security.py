"""What a cluster's admission would say about a pod spec, without a cluster.

`restricted(spec)` applies Kubernetes' Pod Security Standards, profile
"restricted" (which contains "baseline"), as the API server's PodSecurity
admission does for the latest policy version; `restricted_v2(spec)` adds what
OpenShift's restricted-v2 SCC refuses on top of that. Each returns the
violations, one line each; an empty list is an admitted pod.

Written from the published rules (kubernetes.io, "Pod Security Standards";
OpenShift's restricted-v2 SCC), one function per control.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Spec = dict[str, Any]

# Baseline: capabilities a container may add; restricted: only this one.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# restricted-v2's `volumes`: the same list without "image".
OPENSHIFT_VOLUMES = RESTRICTED_VOLUMES - {"image"}
SECCOMP_CONFINED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})


def containers(spec: Spec) -> Iterator[tuple[str, Spec]]:
    """Every container of every kind, with a name for messages."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or ():
            yield f"{field}[{c.get('name', '?')}]", c


def restricted(spec: Spec, annotations: dict[str, str] | None = None) -> list[str]:
    """Violations of Pod Security "restricted" (baseline included)."""
    return [*baseline(spec, annotations), *_apply(RESTRICTED_RULES, spec)]


def baseline(spec: Spec, annotations: dict[str, str] | None = None) -> list[str]:
    found = _apply(BASELINE_RULES, spec)
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            found.append(f"AppArmor: annotation {key}={value}")
    return found


def restricted_v2(spec: Spec) -> list[str]:
    """What OpenShift's restricted-v2 SCC refuses that "restricted" lets by:
    a UID, fsGroup or SELinux level of the pod's own choosing (the SCC
    assigns them from the namespace's range), volume types beyond its list."""
    found = []
    for where, ctx in [("pod", spec.get("securityContext") or {})] + [
        (name, c.get("securityContext") or {}) for name, c in containers(spec)
    ]:
        if "runAsUser" in ctx:
            found.append(f"restricted-v2: {where} names runAsUser {ctx['runAsUser']}")
        if ctx.get("seLinuxOptions"):
            found.append(f"restricted-v2: {where} names seLinuxOptions")
    pod_ctx = spec.get("securityContext") or {}
    for field in ("fsGroup", "supplementalGroups"):
        if field in pod_ctx:
            found.append(f"restricted-v2: pod names {field} {pod_ctx[field]}")
    for volume in spec.get("volumes") or ():
        kind = _volume_type(volume)
        if kind not in OPENSHIFT_VOLUMES:
            found.append(f"restricted-v2: volume {volume.get('name')} of type {kind}")
    return found


# -- baseline ---------------------------------------------------------------------


def _host_process(spec: Spec) -> Iterator[str]:
    for where, ctx in _contexts(spec):
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            yield f"HostProcess: {where} sets windowsOptions.hostProcess"


def _host_namespaces(spec: Spec) -> Iterator[str]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"Host namespaces: {field} is true"


def _privileged(spec: Spec) -> Iterator[str]:
    for where, c in containers(spec):
        if (c.get("securityContext") or {}).get("privileged"):
            yield f"Privileged: {where} is privileged"


def _baseline_capabilities(spec: Spec) -> Iterator[str]:
    for where, c in containers(spec):
        added = set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or ())
        if added - BASELINE_CAPABILITIES:
            yield f"Capabilities: {where} adds {sorted(added - BASELINE_CAPABILITIES)}"


def _host_path(spec: Spec) -> Iterator[str]:
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            yield f"HostPath volumes: {volume.get('name')}"


def _host_ports(spec: Spec) -> Iterator[str]:
    for where, c in containers(spec):
        for port in c.get("ports") or ():
            if port.get("hostPort"):
                yield f"Host ports: {where} uses hostPort {port['hostPort']}"


def _apparmor(spec: Spec) -> Iterator[str]:
    for where, ctx in _contexts(spec):
        kind = (ctx.get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in APPARMOR_ALLOWED:
            yield f"AppArmor: {where} sets appArmorProfile {kind}"


def _selinux(spec: Spec) -> Iterator[str]:
    for where, ctx in _contexts(spec):
        options = ctx.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            yield f"SELinux: {where} sets type {options['type']}"
        for field in ("user", "role"):
            if options.get(field):
                yield f"SELinux: {where} sets {field}"


def _proc_mount(spec: Spec) -> Iterator[str]:
    for where, c in containers(spec):
        mount = (c.get("securityContext") or {}).get("procMount")
        if mount not in (None, "Default"):
            yield f"/proc mount: {where} sets procMount {mount}"


def _seccomp_baseline(spec: Spec) -> Iterator[str]:
    for where, ctx in _contexts(spec):
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"Seccomp: {where} is Unconfined"


def _sysctls(spec: Spec) -> Iterator[str]:
    for sysctl in (spec.get("securityContext") or {}).get("sysctls") or ():
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"Sysctls: {sysctl.get('name')} is not a safe sysctl"


# -- restricted -------------------------------------------------------------------


def _volume_types(spec: Spec) -> Iterator[str]:
    for volume in spec.get("volumes") or ():
        kind = _volume_type(volume)
        if kind not in RESTRICTED_VOLUMES:
            yield f"Volume types: {volume.get('name')} is {kind}"


def _privilege_escalation(spec: Spec) -> Iterator[str]:
    for where, c in containers(spec):
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            yield f"Privilege escalation: {where} does not set allowPrivilegeEscalation false"


def _non_root(spec: Spec) -> Iterator[str]:
    pod = (spec.get("securityContext") or {}).get("runAsNonRoot")
    for where, c in containers(spec):
        own = (c.get("securityContext") or {}).get("runAsNonRoot")
        if own is False or (own is None and pod is not True):
            yield f"Running as non-root: {where} is not held to runAsNonRoot true"


def _non_root_user(spec: Spec) -> Iterator[str]:
    for where, ctx in _contexts(spec):
        if ctx.get("runAsUser") == 0:
            yield f"Running as non-root user: {where} sets runAsUser 0"


def _seccomp_restricted(spec: Spec) -> Iterator[str]:
    pod = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    for where, c in containers(spec):
        own = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        effective = own if own is not None else pod
        if effective not in SECCOMP_CONFINED:
            yield f"Seccomp: {where} runs with seccomp {effective or 'unset'}"


def _restricted_capabilities(spec: Spec) -> Iterator[str]:
    for where, c in containers(spec):
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            yield f"Capabilities: {where} does not drop ALL"
        added = set(caps.get("add") or ()) - RESTRICTED_CAPABILITIES
        if added:
            yield f"Capabilities: {where} adds {sorted(added)}"


BASELINE_RULES: tuple[Callable[[Spec], Iterator[str]], ...] = (
    _host_process,
    _host_namespaces,
    _privileged,
    _baseline_capabilities,
    _host_path,
    _host_ports,
    _apparmor,
    _selinux,
    _proc_mount,
    _seccomp_baseline,
    _sysctls,
)
RESTRICTED_RULES: tuple[Callable[[Spec], Iterator[str]], ...] = (
    _volume_types,
    _privilege_escalation,
    _non_root,
    _non_root_user,
    _seccomp_restricted,
    _restricted_capabilities,
)


def _apply(rules: tuple[Callable[[Spec], Iterator[str]], ...], spec: Spec) -> list[str]:
    return [line for rule in rules for line in rule(spec)]


def _contexts(spec: Spec) -> Iterator[tuple[str, Spec]]:
    yield "pod", spec.get("securityContext") or {}
    for where, c in containers(spec):
        yield where, c.get("securityContext") or {}


def _volume_type(volume: Spec) -> str:
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if len(kinds) == 1 else "+".join(sorted(kinds)) or "none"


def pod_spec_of(obj: Spec) -> Spec | None:
    """The pod spec inside a Pod, Deployment and the like; None for other kinds."""
    if obj.get("kind") == "Pod":
        return obj.get("spec") or {}
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and "spec" in template:
        return template["spec"]
    return None
