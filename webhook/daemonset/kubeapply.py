"""A small typed edge over the `kubernetes` client: get, list, create, patch, server-side
apply and delete of plain-dict objects by REST path, with the client's auth and TLS."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from webhook.kubeclient import RestClient

JSON = dict[str, Any]
FIELD_MANAGER = "logaas-webhook"
log = logging.getLogger("logaas.daemonset")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base + (f"/{name}" if name else "")


NAMESPACES = Resource("", "v1", "namespaces", False)
PODS = Resource("", "v1", "pods", True)
SECRETS = Resource("", "v1", "secrets", True)
CONFIGMAPS = Resource("", "v1", "configmaps", True)
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", True)
DAEMONSETS = Resource("apps", "v1", "daemonsets", True)
CLUSTERROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", False)
CLUSTERROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", False)
LEASES = Resource("coordination.k8s.io", "v1", "leases", True)

BY_KIND = {
    ("v1", "ServiceAccount"): SERVICEACCOUNTS,
    ("v1", "ConfigMap"): CONFIGMAPS,
    ("v1", "Secret"): SECRETS,
    ("v1", "Namespace"): NAMESPACES,
    ("apps/v1", "DaemonSet"): DAEMONSETS,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): CLUSTERROLES,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): CLUSTERROLEBINDINGS,
    ("coordination.k8s.io/v1", "Lease"): LEASES,
}


def resource_of(obj: JSON) -> Resource:
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key not in BY_KIND:
        raise ValueError(f"unsupported object kind {key[1]} ({key[0]})")
    return BY_KIND[key]


class Kube(RestClient):
    """Typed verbs of the companion on top of the shared REST client."""

    def get(self, res: Resource, namespace: str | None, name: str) -> JSON | None:
        try:
            return self.request("GET", res.path(namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[JSON], str]:
        query = [("labelSelector", label_selector)] if label_selector else []
        got = self.request("GET", res.path(namespace), query)
        items: list[JSON] = got.get("items") or []
        return items, str((got.get("metadata") or {}).get("resourceVersion", ""))

    def create(self, obj: JSON) -> JSON:
        res = resource_of(obj)
        namespace = obj["metadata"].get("namespace")
        return self.request("POST", res.path(namespace), [("fieldManager", FIELD_MANAGER)], obj)

    def update(self, obj: JSON) -> JSON:
        res = resource_of(obj)
        meta = obj["metadata"]
        path = res.path(meta.get("namespace"), meta["name"])
        return self.request("PUT", path, [("fieldManager", FIELD_MANAGER)], obj)

    def merge_patch(self, res: Resource, namespace: str | None, name: str, patch: JSON) -> JSON:
        return self.request(
            "PATCH",
            res.path(namespace, name),
            [("fieldManager", FIELD_MANAGER)],
            patch,
            "application/merge-patch+json",
        )

    def apply(self, obj: JSON) -> JSON:
        """Server-side apply as field manager logaas-webhook (force: we own these objects)."""
        res = resource_of(obj)
        meta = obj["metadata"]
        return self.request(
            "PATCH",
            res.path(meta.get("namespace"), meta["name"]),
            [("fieldManager", FIELD_MANAGER), ("force", "true")],
            obj,
            "application/apply-patch+yaml",
        )

    def delete(self, res: Resource, namespace: str | None, name: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request(
                "DELETE",
                res.path(namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
            )
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise


def apply_all(kube: Kube, objects: Iterable[JSON]) -> list[JSON]:
    return [kube.apply(obj) for obj in objects]


def delete_all(kube: Kube, objects: Iterable[JSON]) -> list[str]:
    """Delete the objects (DaemonSet first, RBAC last); names of those that existed."""
    deleted = []
    for obj in reversed(list(objects)):
        meta = obj["metadata"]
        if kube.delete(resource_of(obj), meta.get("namespace"), meta["name"]):
            deleted.append(f"{obj['kind']}/{meta['name']}")
    return deleted
