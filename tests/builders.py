"""Builders for test inputs: pods and AdmissionReviews shaped like kube-apiserver's."""

from __future__ import annotations

import copy
from typing import Any

APP: dict[str, Any] = {"name": "app", "image": "nginx"}


def pod(
    annotations: dict[str, str] | None = None,
    *,
    name: str | None = "app-pod",
    namespace: str = "shop",
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A minimal valid pod; pass spec to replace the single nginx container."""
    meta: dict[str, Any] = {"namespace": namespace}
    if name:
        meta["name"] = name
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(spec)
        if spec
        else {"containers": [{"name": "app", "image": "nginx"}]},
    }


def admission_review(
    obj: dict[str, Any] | None,
    *,
    uid: str = "7f4d7e0a-0000-4000-8000-000000000001",
    operation: str = "CREATE",
    kind: str = "Pod",
    resource: str = "pods",
    group: str = "",
    sub_resource: str | None = None,
    namespace: str = "shop",
    dry_run: bool = False,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "requestKind": {"group": group, "version": "v1", "kind": kind},
        "requestResource": {"group": group, "version": "v1", "resource": resource},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj,
        "oldObject": None,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if obj and obj.get("metadata", {}).get("name"):
        request["name"] = obj["metadata"]["name"]
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
