"""The agent's Kubernetes objects, rendered from Settings and the cluster's namespaces.

Objects (all labelled app.kubernetes.io/managed-by: logaas-webhook):
ServiceAccount, ClusterRole (get/list/watch pods and namespaces: the kubernetes filter),
ClusterRoleBinding, ConfigMap (fluent-bit.conf, parsers.conf, shard-<k>.conf) and the
DaemonSet. Credentials reach the agent only as env vars from the Secret (secretKeyRef,
optional) and `${VAR}` in the config; the ConfigMap holds no secret.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import yaml

from webhook import names
from webhook.daemonset import agentconf
from webhook.daemonset.routing import Plan, build_plan
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

JSON = dict[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "logaas-webhook"
CHECKSUM = "checksum/config"
DEFAULT_NAMESPACE = "logaas"
DEFAULT_PREFIX = "logaas"


def labels(plan: Plan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": plan.agent_name,
        "app.kubernetes.io/component": "node-agent",
        "app.kubernetes.io/part-of": "logaas-webhook",
        MANAGED_BY: MANAGER,
    }


def selector(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": plan.agent_name}


def config_checksum(data: dict[str, str]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _meta(plan: Plan, namespaced: bool) -> JSON:
    meta: JSON = {"name": plan.agent_name, "labels": labels(plan)}
    if namespaced:
        meta["namespace"] = plan.agent_namespace
    return meta


def service_account(plan: Plan) -> JSON:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(plan, True)}


def cluster_role(plan: Plan) -> JSON:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(plan, False),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces", "pods"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }


def cluster_role_binding(plan: Plan) -> JSON:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(plan, False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": plan.agent_name,
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": plan.agent_name,
                "namespace": plan.agent_namespace,
            }
        ],
    }


def config_map(plan: Plan, data: dict[str, str]) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(plan, True),
        "data": dict(data),
    }


def _env(settings: Settings) -> list[JSON]:
    creds = settings.credentials

    def secret(var: str, key: str) -> JSON:
        ref = {"name": creds.secret_name, "key": key, "optional": True}
        return {"name": var, "valueFrom": {"secretKeyRef": ref}}

    return [
        secret(names.ENV_CLIENT_ID, creds.client_id_key),
        secret(names.ENV_CLIENT_SECRET, creds.client_secret_key),
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]


def _container(settings: Settings, process: int) -> JSON:
    port_name = "http" if process == 0 else f"http-{process}"
    probe_base: JSON = {"httpGet": {"path": "/", "port": port_name}}
    return {
        "name": "fluent-bit" if process == 0 else f"fluent-bit-shard-{process}",
        "image": settings.sidecar.image,
        "imagePullPolicy": settings.sidecar.pull_policy,
        "args": ["-c", f"{agentconf.CONFIG_DIR}/{agentconf.shard_config(process)}"],
        "env": _env(settings),
        "ports": [
            {
                "name": port_name,
                "containerPort": agentconf.http_port(process),
                "protocol": "TCP",
            }
        ],
        "livenessProbe": {**probe_base, "periodSeconds": 10, "failureThreshold": 6},
        "readinessProbe": {
            "httpGet": {"path": "/api/v1/health", "port": port_name},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {
            # Container logs on the node belong to root with mode 0640: read as their owner,
            # with every capability dropped and nothing writable but the state hostPath.
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "varlog", "mountPath": "/var/log", "readOnly": True},
            {"name": "state", "mountPath": agentconf.STATE_DIR},
            {"name": "config", "mountPath": agentconf.CONFIG_DIR, "readOnly": True},
        ],
    }


def state_host_path(plan: Plan) -> str:
    return f"/var/lib/{plan.agent_name}/{plan.agent_namespace}"


def daemon_set(settings: Settings, plan: Plan, checksum: str) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(plan, True),
        "spec": {
            "selector": {"matchLabels": selector(plan)},
            # Restarts lose nothing (tail DB, filesystem buffer on the host): roll 10% at a time.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {
                    "labels": labels(plan),
                    "annotations": {
                        CHECKSUM: checksum,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(agentconf.HTTP_PORT),
                        "prometheus.io/path": "/api/v2/metrics/prometheus",
                        # The agent's own pods never go through the sidecar webhook.
                        names.INJECT: "false",
                    },
                },
                "spec": {
                    "serviceAccountName": plan.agent_name,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": agentconf.TERMINATION_GRACE_SECONDS,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [_container(settings, p) for p in range(plan.processes)],
                    "volumes": [
                        {"name": "varlog", "hostPath": {"path": "/var/log", "type": "Directory"}},
                        {
                            "name": "state",
                            "hostPath": {
                                "path": state_host_path(plan),
                                "type": "DirectoryOrCreate",
                            },
                        },
                        {"name": "config", "configMap": {"name": plan.agent_name}},
                    ],
                },
            },
        },
    }


# Kubernetes refuses a ConfigMap whose data exceeds 1 MiB.
CONFIGMAP_LIMIT = 1024 * 1024


class TooLarge(ValueError):
    pass


def objects_for_plan(settings: Settings, plan: Plan) -> list[JSON]:
    data = agentconf.render_configs(settings, plan)
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_LIMIT:
        raise TooLarge(
            f"the agent config for {len(plan.outputs)} log-group routes is {size} bytes, over "
            f"the {CONFIGMAP_LIMIT}-byte ConfigMap limit: give namespaces that share a group the "
            "same logaas/group-id, project and labels so they share an output"
        )
    return [
        service_account(plan),
        cluster_role(plan),
        cluster_role_binding(plan),
        config_map(plan, data),
        daemon_set(settings, plan, config_checksum(data)),
    ]


def render_objects(
    settings: Settings,
    namespaces: Iterable[NamespaceInfo] = (),
    agent_namespace: str = DEFAULT_NAMESPACE,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[list[JSON], Plan]:
    plan = build_plan(namespaces, settings, agent_namespace, prefix)
    return objects_for_plan(settings, plan), plan


def namespaces_from_documents(docs: Iterable[Any]) -> list[NamespaceInfo]:
    """Namespace objects from YAML documents: `kubectl get namespaces -o yaml` (a List),
    single Namespace documents, or a multi-document stream of either."""
    out: list[NamespaceInfo] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("items"), list):
            out.extend(namespaces_from_documents(doc["items"]))
        elif doc.get("kind", "Namespace") == "Namespace" and isinstance(doc.get("metadata"), dict):
            out.append(NamespaceInfo.from_object(doc))
    return out


_Base: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available


class _Dumper(_Base):  # type: ignore[misc]
    pass


def _str(dumper: Any, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    node: yaml.ScalarNode = dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return node


_Dumper.add_representer(str, _str)


def to_yaml(objects: Iterable[JSON]) -> str:
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=1 << 20) for obj in objects
    )
