"""A Pod Security Standards evaluator for one pod, rule by rule as documented in
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and
restricted, latest policy version).

Each check names the documented control and the restricted fields it reads. "containers[*]"
in the document means spec.containers, spec.initContainers and spec.ephemeralContainers.
The evaluator returns the violations; [] means the pod passes the level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

JSON = dict[str, Any]
Check = Callable[[JSON], Iterator[str]]

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def _spec(pod: JSON) -> JSON:
    return pod.get("spec") or {}


def _pod_sc(pod: JSON) -> JSON:
    return _spec(pod).get("securityContext") or {}


def containers(pod: JSON) -> Iterator[tuple[str, JSON]]:
    spec = _spec(pod)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            yield f"{key}[{container.get('name')}]", container


def _sc(container: JSON) -> JSON:
    return container.get("securityContext") or {}


def _windows(pod: JSON) -> bool:
    return ((_spec(pod).get("os") or {}).get("name") or "").lower() == "windows"


# --- baseline ------------------------------------------------------------------------------


def host_process(pod: JSON) -> Iterator[str]:
    """HostProcess: windowsOptions.hostProcess undefined/nil or false."""
    if (_pod_sc(pod).get("windowsOptions") or {}).get("hostProcess"):
        yield "spec.securityContext.windowsOptions.hostProcess"
    for where, c in containers(pod):
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess"):
            yield f"{where}.securityContext.windowsOptions.hostProcess"


def host_namespaces(pod: JSON) -> Iterator[str]:
    """Host Namespaces: hostNetwork, hostPID, hostIPC undefined/nil or false."""
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if _spec(pod).get(key):
            yield f"spec.{key}"


def privileged(pod: JSON) -> Iterator[str]:
    """Privileged Containers: securityContext.privileged undefined/nil or false."""
    for where, c in containers(pod):
        if _sc(c).get("privileged"):
            yield f"{where}.securityContext.privileged"


def baseline_capabilities(pod: JSON) -> Iterator[str]:
    """Capabilities: capabilities.add only from the baseline list."""
    for where, c in containers(pod):
        for cap in (_sc(c).get("capabilities") or {}).get("add") or []:
            if cap not in BASELINE_CAPABILITIES:
                yield f"{where}.securityContext.capabilities.add: {cap}"


def host_path(pod: JSON) -> Iterator[str]:
    """HostPath Volumes: volumes[*].hostPath undefined/nil."""
    for volume in _spec(pod).get("volumes") or []:
        if volume.get("hostPath") is not None:
            yield f"spec.volumes[{volume.get('name')}].hostPath"


def host_ports(pod: JSON) -> Iterator[str]:
    """Host Ports: ports[*].hostPort undefined/nil or 0."""
    for where, c in containers(pod):
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                yield f"{where}.ports.hostPort: {port['hostPort']}"


def apparmor(pod: JSON) -> Iterator[str]:
    """AppArmor: appArmorProfile.type undefined, RuntimeDefault or Localhost; the legacy
    annotations undefined, runtime/default or localhost/*."""
    allowed = (None, "RuntimeDefault", "Localhost")
    if (_pod_sc(pod).get("appArmorProfile") or {}).get("type") not in allowed:
        yield "spec.securityContext.appArmorProfile.type"
    for where, c in containers(pod):
        if (_sc(c).get("appArmorProfile") or {}).get("type") not in allowed:
            yield f"{where}.securityContext.appArmorProfile.type"
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            yield f"metadata.annotations[{key}]: {value}"


def selinux(pod: JSON) -> Iterator[str]:
    """SELinux: seLinuxOptions.type from the allowed list; user and role undefined/""."""
    contexts = [("spec.securityContext", _pod_sc(pod))]
    contexts += [(f"{w}.securityContext", _sc(c)) for w, c in containers(pod)]
    for where, sc in contexts:
        options = sc.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            yield f"{where}.seLinuxOptions.type"
        for key in ("user", "role"):
            if options.get(key, ""):
                yield f"{where}.seLinuxOptions.{key}"


def proc_mount(pod: JSON) -> Iterator[str]:
    """/proc Mount Type: procMount undefined/nil or Default."""
    for where, c in containers(pod):
        if _sc(c).get("procMount") not in (None, "Default"):
            yield f"{where}.securityContext.procMount"


def baseline_seccomp(pod: JSON) -> Iterator[str]:
    """Seccomp: seccompProfile.type undefined, RuntimeDefault or Localhost (not Unconfined)."""
    if (_pod_sc(pod).get("seccompProfile") or {}).get("type") == "Unconfined":
        yield "spec.securityContext.seccompProfile.type: Unconfined"
    for where, c in containers(pod):
        if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"{where}.securityContext.seccompProfile.type: Unconfined"


def sysctls(pod: JSON) -> Iterator[str]:
    """Sysctls: only the safe set."""
    for sysctl in _pod_sc(pod).get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"spec.securityContext.sysctls: {sysctl.get('name')}"


# --- restricted ------------------------------------------------------------------------------


def volume_types(pod: JSON) -> Iterator[str]:
    """Volume Types: only configMap, csi, downwardAPI, emptyDir, ephemeral,
    persistentVolumeClaim, projected, secret."""
    for volume in _spec(pod).get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield f"spec.volumes[{volume.get('name')}]: {sorted(kinds - RESTRICTED_VOLUMES)}"


def privilege_escalation(pod: JSON) -> Iterator[str]:
    """Privilege Escalation: allowPrivilegeEscalation must be false (Linux pods)."""
    if _windows(pod):
        return
    for where, c in containers(pod):
        if _sc(c).get("allowPrivilegeEscalation") is not False:
            yield f"{where}.securityContext.allowPrivilegeEscalation must be false"


def run_as_non_root(pod: JSON) -> Iterator[str]:
    """Running as Non-root: runAsNonRoot true on the pod, or on every container (a container
    may leave it undefined when the pod sets true; false anywhere fails)."""
    pod_level = _pod_sc(pod).get("runAsNonRoot")
    if pod_level is False:
        yield "spec.securityContext.runAsNonRoot: false"
    for where, c in containers(pod):
        value = _sc(c).get("runAsNonRoot")
        if value is False or (value is None and pod_level is not True):
            yield f"{where}.securityContext.runAsNonRoot must be true"


def run_as_user(pod: JSON) -> Iterator[str]:
    """Running as Non-root user: runAsUser undefined/nil or non-zero."""
    if _pod_sc(pod).get("runAsUser") == 0:
        yield "spec.securityContext.runAsUser: 0"
    for where, c in containers(pod):
        if _sc(c).get("runAsUser") == 0:
            yield f"{where}.securityContext.runAsUser: 0"


def restricted_seccomp(pod: JSON) -> Iterator[str]:
    """Seccomp: RuntimeDefault or Localhost on the pod, or on every container (Linux pods)."""
    if _windows(pod):
        return
    good = ("RuntimeDefault", "Localhost")
    pod_type = (_pod_sc(pod).get("seccompProfile") or {}).get("type")
    if pod_type is not None and pod_type not in good:
        yield f"spec.securityContext.seccompProfile.type: {pod_type}"
    for where, c in containers(pod):
        value = (_sc(c).get("seccompProfile") or {}).get("type")
        if value is None and pod_type in good:
            continue
        if value not in good:
            yield f"{where}.securityContext.seccompProfile.type must be RuntimeDefault/Localhost"


def restricted_capabilities(pod: JSON) -> Iterator[str]:
    """Capabilities: drop ALL; add only NET_BIND_SERVICE (Linux pods)."""
    if _windows(pod):
        return
    for where, c in containers(pod):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{where}.securityContext.capabilities.drop must include ALL"
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                yield f"{where}.securityContext.capabilities.add: {cap}"


BASELINE: dict[str, Check] = {
    "HostProcess": host_process,
    "Host Namespaces": host_namespaces,
    "Privileged Containers": privileged,
    "Capabilities (baseline)": baseline_capabilities,
    "HostPath Volumes": host_path,
    "Host Ports": host_ports,
    "AppArmor": apparmor,
    "SELinux": selinux,
    "/proc Mount Type": proc_mount,
    "Seccomp (baseline)": baseline_seccomp,
    "Sysctls": sysctls,
}
RESTRICTED: dict[str, Check] = {
    **BASELINE,
    "Volume Types": volume_types,
    "Privilege Escalation": privilege_escalation,
    "Running as Non-root": run_as_non_root,
    "Running as Non-root user": run_as_user,
    "Seccomp (restricted)": restricted_seccomp,
    "Capabilities (restricted)": restricted_capabilities,
}
LEVELS = {"baseline": BASELINE, "restricted": RESTRICTED}


def violations(pod: JSON, level: str) -> list[str]:
    return [f"{rule}: {problem}" for rule, check in LEVELS[level].items() for problem in check(pod)]


def passes(pod: JSON, level: str) -> bool:
    return not violations(pod, level)
