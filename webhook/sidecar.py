"""The sidecar container and volumes; the parts that never change are built once per settings."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from webhook import names
from webhook.annotations import Options
from webhook.settings import Settings, quantity
from webhook.sidecar_config import CONFIG_MOUNT, CONFIG_PATH, LOGS_MOUNT, STATE_MOUNT, log_dir

HTTP_PORT_NAME = "logaas-http"
QOS_DEFAULT = "default"
QOS_GUARANTEED = "guaranteed"
QOS_POD_LEVEL = "pod-level"

# Annotated limits repeat across a workload's pods; parsing a quantity is regex + Decimal.
_quantity = lru_cache(maxsize=256)(quantity)


def _clone(value: Any) -> Any:
    """A fresh copy of a JSON tree: an orjson round trip is ~20x faster than copy.deepcopy."""
    return orjson.loads(orjson.dumps(value))


JSON = dict[str, Any]


def _env_field(name: str, path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


class SidecarTemplate:
    """Static parts of the sidecar for one Settings; per-pod parts are filled in by build()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        side = settings.sidecar
        creds = settings.credentials

        def secret_env(name: str, key: str) -> JSON:
            # optional: a missing Secret must not keep the pod (native sidecars gate the app
            # containers) from starting; Fluent Bit then retries the IAM login.
            ref = {"name": creds.secret_name, "key": key, "optional": True}
            return {"name": name, "valueFrom": {"secretKeyRef": ref}}

        self._env: list[JSON] = [
            secret_env(names.ENV_CLIENT_ID, creds.client_id_key),
            secret_env(names.ENV_CLIENT_SECRET, creds.client_secret_key),
            _env_field("POD_NAME", "metadata.name"),
            _env_field("POD_NAMESPACE", "metadata.namespace"),
            _env_field("POD_UID", "metadata.uid"),
            _env_field("NODE_NAME", "spec.nodeName"),
        ]
        self._mounts: list[JSON] = [
            {"name": names.LOGS_VOLUME, "mountPath": LOGS_MOUNT, "readOnly": True},
            {"name": names.STATE_VOLUME, "mountPath": STATE_MOUNT},
            {"name": names.CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True},
        ]
        self._security: JSON = {
            "runAsNonRoot": True,
            "runAsUser": side.run_as_user,
            "runAsGroup": side.run_as_user,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        self._volumes: list[JSON] = [
            {"name": names.LOGS_VOLUME, "emptyDir": {"sizeLimit": side.logs_size_limit}},
            {"name": names.STATE_VOLUME, "emptyDir": {"sizeLimit": side.state_size_limit}},
            {
                "name": names.CONFIG_VOLUME,
                "downwardAPI": {
                    "defaultMode": 0o444,
                    "items": [
                        {
                            "path": names.CONFIG_FILE,
                            "fieldRef": {
                                "fieldPath": f"metadata.annotations['{names.FLUENT_BIT_CONFIG}']"
                            },
                        }
                    ],
                },
            },
        ]
        self._cpu_request = quantity(side.cpu_request)
        self._memory_request = quantity(side.memory_request)

    def volumes(self) -> list[JSON]:
        return _clone(self._volumes)  # type: ignore[no-any-return]

    def container(
        self,
        options: Options,
        http_port: int,
        extra_mounts: list[JSON] | None = None,
        qos: str = QOS_DEFAULT,
    ) -> JSON:
        side = self.settings.sidecar
        # Requests never exceed the (possibly annotated) limits: ResourceQuota-safe and valid.
        cpu_request = (
            side.cpu_request
            if self._cpu_request <= _quantity(options.cpu_limit)
            else options.cpu_limit
        )
        memory_request = (
            side.memory_request
            if self._memory_request <= _quantity(options.memory_limit)
            else options.memory_limit
        )
        probe_port: JSON = {"path": "/", "port": HTTP_PORT_NAME}
        container: JSON = {
            "name": names.SIDECAR_CONTAINER,
            "image": side.image,
            "imagePullPolicy": side.pull_policy,
            # The image's ENTRYPOINT loads logaas.so; only the config path changes.
            "args": ["-c", CONFIG_PATH],
            "env": _clone(self._env),
            "ports": [{"name": HTTP_PORT_NAME, "containerPort": http_port, "protocol": "TCP"}],
            "resources": {
                "requests": {"cpu": cpu_request, "memory": memory_request},
                "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
            },
            # Liveness only: a readiness or startup probe would tie the app's readiness or
            # start to the log pipeline, and logging must never hold the application back.
            "livenessProbe": {
                "httpGet": probe_port,
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
                "timeoutSeconds": 3,
                "failureThreshold": 6,
            },
            "volumeMounts": [*_clone(self._mounts), *(extra_mounts or [])],
            "securityContext": _clone(self._security),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        if http_port == 0:
            del container["ports"], container["livenessProbe"]
        if qos == QOS_GUARANTEED:
            # Every other container has requests == limits: keep the pod Guaranteed (exclusive
            # CPUs, eviction order) instead of downgrading it to Burstable.
            container["resources"]["requests"] = dict(container["resources"]["limits"])
        elif qos == QOS_POD_LEVEL:
            # Pod-level resources: the sidecar shares the pod's budget; container requests
            # would have to fit under it, and the apiserver would refuse the pod if not.
            del container["resources"]
        if side.native:
            container["restartPolicy"] = "Always"
        return container


def app_mount(options: Options, container: str) -> JSON:
    """Each app container writes into its own subdirectory, so records name their container."""
    return {"name": names.LOGS_VOLUME, "mountPath": options.log_path, "subPath": container}


def existing_log_mount(container: JSON, log_path: str) -> JSON | None:
    """The container's own mount at the log path, if it already has one."""
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, dict) and str(mount.get("mountPath", "")).rstrip("/") == log_path:
            return mount
    return None


def reuse_mount(mount: JSON, container: str) -> JSON:
    """The sidecar's read-only view of a log volume the app container already mounts."""
    view: JSON = {"name": mount["name"], "mountPath": log_dir(container, True), "readOnly": True}
    if mount.get("subPath"):
        view["subPath"] = mount["subPath"]
    return view


def resources_mode(spec: JSON) -> str:
    """How the sidecar's resources must look so the pod keeps its QoS and stays valid."""
    pod_level = spec.get("resources")
    if isinstance(pod_level, dict) and (pod_level.get("requests") or pod_level.get("limits")):
        return QOS_POD_LEVEL
    containers = [
        c
        for key in ("containers", "initContainers")
        for c in (spec.get(key) or [])
        if isinstance(c, dict)
    ]
    return QOS_GUARANTEED if containers and all(map(_guaranteed, containers)) else QOS_DEFAULT


def _guaranteed(container: JSON) -> bool:
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return False
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if not isinstance(limits, dict) or not isinstance(requests, dict):
        return False
    try:
        return all(
            isinstance(limits.get(r), str | int | float)
            and (r not in requests or _quantity(str(requests[r])) == _quantity(str(limits[r])))
            for r in ("cpu", "memory")
        )
    except ValueError:
        return False
