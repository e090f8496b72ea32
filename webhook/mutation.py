"""The injection engine: (pod, namespace decision, settings) -> decision and RFC 6902 patch.

Pure: plain dicts in, plain dicts out; no HTTP, no Kubernetes client. Patches are built as
direct `add` operations that kube-apiserver's JSON patch library applies exactly (a parent is
created when absent, `/` and `~` in keys are escaped).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook import names, sidecar_config
from webhook.annotations import (
    AnnotationError,
    Options,
    PolicyError,
    check_group_policy,
    parse_inject,
    parse_options,
    unknown_annotations,
)
from webhook.settings import Settings
from webhook.sidecar import (
    JSON,
    SidecarTemplate,
    app_mount,
    existing_log_mount,
    resources_mode,
    reuse_mount,
)


class Mode(enum.StrEnum):
    """Which webhook entry called: the namespace decision travels in the request path."""

    POD = "pod"  # /mutate: namespace not labelled; inject pods annotated "true"
    NAMESPACE = "namespace"  # /mutate/namespace: namespace labelled enabled; inject unless "false"


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> NamespaceInfo:
        """From a Namespace object as JSON (e.g. `kubectl get namespaces -o yaml`)."""
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta.get("name", "")),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    outcome: str  # injected | skipped | denied
    reason: str  # short, machine-readable (metrics label, log field)
    message: str = ""
    code: int = 200
    patch: list[JSON] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def skipped(reason: str, warnings: list[str] | None = None) -> Decision:
    return Decision(True, "skipped", reason, warnings=warnings or [])


def denied(reason: str, message: str, code: int) -> Decision:
    return Decision(False, "denied", reason, message=message, code=code)


def escape(key: str) -> str:
    """RFC 6901 JSON pointer token."""
    return key.replace("~", "~0").replace("/", "~1")


def _containers(spec: Mapping[str, Any], key: str) -> list[JSON]:
    value = spec.get(key)
    return value if isinstance(value, list) else []


def is_injected(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(annotations, dict) and annotations.get(names.STATUS) == names.STATUS_INJECTED:
        return True
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return False
    return any(
        isinstance(c, dict) and c.get("name") == names.SIDECAR_CONTAINER
        for key in ("containers", "initContainers")
        for c in _containers(spec, key)
    )


def targets_windows(spec: Mapping[str, Any]) -> bool:
    os_field = spec.get("os")
    if isinstance(os_field, dict) and os_field.get("name") == "windows":
        return True
    selector = spec.get("nodeSelector")
    if isinstance(selector, dict):
        return "windows" in (
            selector.get("kubernetes.io/os"),
            selector.get("beta.kubernetes.io/os"),
        )
    return False


def _well_formed(pod: Any) -> bool:
    if not isinstance(pod, dict):
        return False
    meta = pod.get("metadata", {})
    spec = pod.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        return False
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        return False
    if not isinstance(meta.get("namespace", ""), str | None):
        return False
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return False
    for key in ("containers", "initContainers"):
        value = spec.get(key)
        if value is not None and not (
            isinstance(value, list) and all(_container_ok(c, key == "containers") for c in value)
        ):
            return False
    volumes = spec.get("volumes")
    return volumes is None or (
        isinstance(volumes, list)
        and all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in volumes)
    )


# What kube-apiserver accepts as a container name; app container names land in the config.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _items_ok(value: Any, fields: Mapping[str, type | tuple[type, ...]]) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(
            isinstance(item, dict)
            and all(isinstance(item.get(k), t) for k, t in fields.items() if k in item)
            for item in value
        )
    )


def _container_ok(container: Any, app: bool) -> bool:
    """The container fields the engine reads have the types kube-apiserver decodes them to.

    A pod that no apiserver could have decoded (fuzzed input) is skipped as malformed rather
    than crashing the engine; an invalid app container name would break the rendered config
    and is rejected by the apiserver's validation anyway.
    """
    if not isinstance(container, dict):
        return False
    name = container.get("name")
    if not isinstance(name, str) or (app and not _DNS_LABEL.match(name)):
        return False
    return _items_ok(
        container.get("volumeMounts"),
        {"name": str, "mountPath": str, "subPath": str, "subPathExpr": str},
    ) and _items_ok(container.get("ports"), {"containerPort": int})


CONFIG_CACHE_SIZE = 1024
# kube-apiserver rejects a pod whose annotations (keys and values) total more than 256 KiB.
MAX_ANNOTATION_BYTES = 256 * 1024


class AnnotationsTooLarge(ValueError):
    """The rendered config would push the pod's annotations over the API server's limit."""


def _annotation_bytes(annotations: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def _check_annotation_size(
    annotations: Mapping[str, str], added: Mapping[str, str], options: Options
) -> None:
    before = _annotation_bytes(annotations)
    after = _annotation_bytes({**annotations, **added})
    # Already over the limit: the API server rejects the pod for the user's own annotations.
    if before <= MAX_ANNOTATION_BYTES < after:
        raise AnnotationsTooLarge(
            f"the Fluent Bit config for {len(options.containers)} containers would make the "
            f"pod's annotations {after} bytes, over the API server's limit of "
            f"{MAX_ANNOTATION_BYTES}; accepted: annotation {names.CONTAINERS} listing only the "
            "containers whose logs should be shipped"
        )


class Injector:
    """Decides and patches; construct once per Settings (static sidecar parts precomputed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.template = SidecarTemplate(settings)
        self.never = settings.never_injected
        # Rendered Fluent Bit configs by their inputs: pods of one workload share one, and
        # rendering is most of a review's engine time.
        self._configs: dict[tuple[Any, ...], str] = {}

    def decide(
        self,
        pod: Any,
        mode: Mode,
        namespace: str | None = None,
        ns: NamespaceInfo | None = None,
    ) -> Decision:
        if not _well_formed(pod):
            return skipped("malformed-pod")
        meta: JSON = pod.get("metadata") or {}
        spec: JSON = pod["spec"]
        annotations: dict[str, str] = meta.get("annotations") or {}
        namespace = namespace or meta.get("namespace") or (ns.name if ns else None)

        if is_injected(pod):
            return skipped("already-injected")

        raw = annotations.get(names.INJECT)
        try:
            pod_says = None if raw is None else parse_inject(raw)
        except AnnotationError as err:
            return denied("invalid-annotation", str(err), 400)
        wanted = pod_says is True if mode is Mode.POD else pod_says is not False
        if not wanted:
            return skipped("opted-out" if pod_says is False else "not-requested")

        def unsupported(reason: str, why: str) -> Decision:
            return skipped(reason, [f"logaas: sidecar not injected: {why}"])

        if namespace in self.never:
            return unsupported("excluded-namespace", f"namespace {namespace} is never injected")
        if ns is not None and ns.labels.get(names.INJECT) == names.NS_DISABLED:
            return unsupported(
                "namespace-disabled", f"namespace {namespace} is labelled {names.INJECT}=disabled"
            )
        if "kubernetes.io/config.mirror" in annotations:
            return unsupported("mirror-pod", "static (mirror) pods are managed by the kubelet")
        if spec.get("hostNetwork") is True and not self.settings.inject_host_network:
            return unsupported("host-network", "hostNetwork pods are not injected by this cluster")
        if targets_windows(spec):
            return unsupported("windows-pod", "the Fluent Bit sidecar image runs on Linux only")

        app_names = [c["name"] for c in spec["containers"]]
        try:
            options = parse_options(
                annotations, app_names, self.settings, ns.annotations if ns else {}
            )
            check_group_policy(options.group_id, namespace, self.settings)
        except AnnotationError as err:
            return denied("invalid-annotation", str(err), 400)
        except PolicyError as err:
            return denied("group-policy", str(err), 403)

        conflict = self._conflict(spec, options)
        if conflict:
            return denied("conflict", conflict, 400)

        try:
            patch = self._patch(meta, spec, options)
        except AnnotationsTooLarge as err:
            return denied("config-too-large", str(err), 400)
        return Decision(
            True,
            "injected",
            "injected",
            patch=patch,
            warnings=self._warnings(annotations, mode, ns),
        )

    def _conflict(self, spec: JSON, options: Options) -> str | None:
        ours = {names.LOGS_VOLUME, names.STATE_VOLUME, names.CONFIG_VOLUME}
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict) and volume.get("name") in ours:
                return (
                    f"the pod already has a volume named {volume['name']}; the names "
                    f"{', '.join(sorted(ours))} are reserved for the logaas sidecar"
                )
        for container in spec["containers"]:
            if container["name"] not in options.containers:
                continue
            mount = existing_log_mount(container, options.log_path)
            if mount is not None and (mount.get("subPathExpr") or not mount.get("name")):
                return (
                    f"annotation {names.LOG_PATH}: container {container['name']} mounts "
                    f"{options.log_path!r} with subPathExpr, which the sidecar cannot follow; "
                    "accepted: a log path the container does not mount, or one mounted "
                    "without subPathExpr"
                )
        return None

    def _http_port(self, spec: JSON) -> int:
        if spec.get("hostNetwork") is True:
            return 0  # no HTTP server: see sidecar_config.http_server
        used = {
            port.get("containerPort")
            for key in ("containers", "initContainers")
            for c in _containers(spec, key)
            for port in (c.get("ports") or [])
            if isinstance(port, dict)
        }
        port = self.settings.sidecar.http_port
        while port in used:
            port += 1
        return port

    def _config(
        self,
        options: Options,
        http_port: int,
        grace: int | None,
        reused: frozenset[str],
        skipped: frozenset[str],
    ) -> str:
        # repr covers every field of the frozen Options, labels in their (rendered) order.
        key = (repr(options), http_port, grace, reused, skipped)
        config = self._configs.get(key)
        if config is None:
            config = sidecar_config.render(
                options, self.settings, http_port, grace, reused, skipped
            )
            if len(self._configs) >= CONFIG_CACHE_SIZE:
                self._configs.clear()
            self._configs[key] = config
        return config

    def _patch(self, meta: JSON, spec: JSON, options: Options) -> list[JSON]:
        http_port = self._http_port(spec)
        grace = spec.get("terminationGracePeriodSeconds")
        # Containers that already mount a volume at the log path keep writing there; the
        # sidecar reads that volume instead of adding a second mount at the same path.
        existing: dict[str, JSON] = {}
        shared: set[tuple[str, str]] = set()
        duplicates: set[str] = set()
        for c in spec["containers"]:
            mount = (
                existing_log_mount(c, options.log_path) if c["name"] in options.containers else None
            )
            if mount is None:
                continue
            # Several containers writing to one volume: tail it once, or records double.
            key = (mount["name"], mount.get("subPath") or "")
            if key in shared:
                duplicates.add(c["name"])
            else:
                shared.add(key)
                existing[c["name"]] = mount
        config = self._config(
            options,
            http_port,
            grace if isinstance(grace, int) else None,
            frozenset(existing),
            frozenset(duplicates),
        )
        ops: list[JSON] = []
        new_annotations = {
            names.STATUS: names.STATUS_INJECTED,
            names.FLUENT_BIT_CONFIG: config,
            names.FLUENTBIT_EXCLUDE: "true",
        }
        _check_annotation_size(meta.get("annotations") or {}, new_annotations, options)
        if "metadata" not in meta and not meta:
            ops.append(
                {"op": "add", "path": "/metadata", "value": {"annotations": new_annotations}}
            )
        elif not meta.get("annotations"):
            ops.append({"op": "add", "path": "/metadata/annotations", "value": new_annotations})
        else:
            ops.extend(
                {"op": "add", "path": f"/metadata/annotations/{escape(k)}", "value": v}
                for k, v in new_annotations.items()
            )
        _append(ops, spec, "volumes", self.template.volumes())
        extra = [reuse_mount(m, name) for name, m in existing.items()]
        sidecar = self.template.container(options, http_port, extra, resources_mode(spec))
        _append(
            ops, spec, "initContainers" if self.settings.sidecar.native else "containers", [sidecar]
        )
        for index, container in enumerate(spec["containers"]):
            if container["name"] in options.containers and not (
                container["name"] in existing or container["name"] in duplicates
            ):
                mount = app_mount(options, container["name"])
                base = f"/spec/containers/{index}/volumeMounts"
                if container.get("volumeMounts"):
                    ops.append({"op": "add", "path": f"{base}/-", "value": mount})
                else:
                    ops.append({"op": "add", "path": base, "value": [mount]})
        return ops

    def _warnings(
        self, annotations: Mapping[str, str], mode: Mode, ns: NamespaceInfo | None
    ) -> list[str]:
        warnings = [
            f"logaas: unknown annotation {key} ignored" for key in unknown_annotations(annotations)
        ]
        if (
            mode is Mode.POD
            and ns is not None
            and self.settings.credentials.synced
            and ns.annotations.get(names.CREDENTIALS) != names.CREDENTIALS_SYNC
            and ns.labels.get(names.INJECT) != names.NS_ENABLED
        ):
            warnings.append(
                f"logaas: Secret {self.settings.credentials.secret_name} is not synced to "
                f"namespace {ns.name}; annotate it {names.CREDENTIALS}={names.CREDENTIALS_SYNC} "
                "or create the Secret there, or the sidecar cannot log in to LogaaS"
            )
        return warnings


def _append(ops: list[JSON], spec: JSON, key: str, items: list[JSON]) -> None:
    if spec.get(key):
        ops.extend({"op": "add", "path": f"/spec/{key}/-", "value": item} for item in items)
    else:
        ops.append({"op": "add", "path": f"/spec/{key}", "value": items})
