"""Copies of the credentials Secret in the namespaces whose sidecars need them.

A pod reads Secrets only from its own namespace, so the reconciler keeps a copy of the source
Secret (in the install namespace) in every namespace labelled logaas/inject=enabled or
annotated logaas/credentials: sync, updates copies when the source changes, and deletes them
when the label or annotation goes.

Narrow RBAC: no cluster-wide list or watch of Secrets. Every copy is read, created, patched
and deleted by name (resourceNames: [the secret name] for get/patch/delete, plus create).
A Secret of that name that this tool did not create (no managed-by label) is never touched.
No secret value is logged or put into an error message.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from webhook import names
from webhook.daemonset.kubeapply import SECRETS, Kube
from webhook.daemonset.render import MANAGED_BY, MANAGER
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

JSON = dict[str, Any]
SOURCE = "logaas/credentials-source"
DIGEST = "logaas/credentials-digest"
log = logging.getLogger("logaas.daemonset")


def wants_copy(ns: NamespaceInfo, source_namespace: str) -> bool:
    if ns.name == source_namespace:
        return False
    return (
        ns.labels.get(names.INJECT) == names.NS_ENABLED
        or ns.annotations.get(names.CREDENTIALS) == names.CREDENTIALS_SYNC
    )


def digest(secret: JSON) -> str:
    blob = json.dumps(
        {"type": secret.get("type"), "data": secret.get("data") or {}}, sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def is_ours(secret: JSON) -> bool:
    return ((secret.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) == MANAGER


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # a foreign Secret of that name is there

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


class CredentialSync:
    def __init__(self, kube: Kube, settings: Settings, source_namespace: str) -> None:
        self.kube = kube
        self.name = settings.credentials.secret_name
        self.source_namespace = source_namespace
        # Namespaces that hold a copy of ours; None until the first sweep.
        self.copies: set[str] | None = None
        self.foreign: set[str] = set()  # a Secret of that name that is not ours
        self.source_digest: str | None = None

    def desired(self, source: JSON, namespace: str) -> JSON:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": namespace,
                "labels": {MANAGED_BY: MANAGER},
                "annotations": {
                    SOURCE: f"{self.source_namespace}/{self.name}",
                    DIGEST: digest(source),
                },
            },
            "type": source.get("type") or "Opaque",
            "data": dict(source.get("data") or {}),
        }

    def sync(self, namespaces: Iterable[NamespaceInfo], full: bool = False) -> SyncResult:
        """Bring copies in line with as few API calls as the situation allows.

        The first call (and `full`, the periodic resync) reads every wanted copy by name and
        repairs it; later calls only touch namespaces whose want changed, unless the source
        changed. Only the first call looks for stale copies of ours in every other namespace
        (a label may have gone while no reconciler ran); later calls delete the copies whose
        namespace stopped wanting one."""
        all_ns = {ns.name: ns for ns in namespaces}
        wanted = {n for n, ns in all_ns.items() if wants_copy(ns, self.source_namespace)}
        result = SyncResult()
        source = self.kube.get(SECRETS, self.source_namespace, self.name)
        if source is None:
            log.warning(
                "credentials Secret %s/%s not found: copies left as they are",
                self.source_namespace,
                self.name,
            )
            return result
        source_digest = digest(source)
        recheck = full or self.copies is None or source_digest != self.source_digest
        copies = set() if recheck or self.copies is None else self.copies & wanted
        foreign = set() if recheck else self.foreign & wanted
        targets = wanted if recheck else wanted - copies - foreign

        for namespace in sorted(targets):
            existing = self.kube.get(SECRETS, namespace, self.name)
            if existing is None:
                try:
                    self.kube.create(self.desired(source, namespace))
                except ApiException as err:
                    if err.status != 409:
                        raise
                    continue  # appeared meanwhile: the next pass looks at it
                result.created.append(namespace)
            elif not is_ours(existing):
                result.skipped.append(namespace)
                foreign.add(namespace)
                continue
            elif (existing["metadata"].get("annotations") or {}).get(DIGEST) != source_digest or (
                existing.get("data") or {}
            ) != (source.get("data") or {}):
                want = self.desired(source, namespace)
                patch = {
                    "metadata": {
                        "labels": want["metadata"]["labels"],
                        "annotations": want["metadata"]["annotations"],
                    },
                    "type": want["type"],
                    "data": {
                        **{k: None for k in existing.get("data") or {} if k not in want["data"]},
                        **want["data"],
                    },
                }
                self.kube.merge_patch(SECRETS, namespace, self.name, patch)
                result.updated.append(namespace)
            copies.add(namespace)

        if self.copies is None:
            stale = set(all_ns) - wanted - {self.source_namespace}
        else:
            stale = (self.copies - wanted) & set(all_ns)  # a namespace gone took its Secrets
        for namespace in sorted(stale):
            existing = self.kube.get(SECRETS, namespace, self.name)
            if existing is not None and is_ours(existing):
                if self.kube.delete(SECRETS, namespace, self.name):
                    result.deleted.append(namespace)
        self.copies, self.foreign, self.source_digest = copies, foreign, source_digest
        for what, items in (
            ("created", result.created),
            ("updated", result.updated),
            ("deleted", result.deleted),
        ):
            if items:
                log.info("credentials copies %s in: %s", what, ", ".join(items))
        for namespace in result.skipped:
            log.warning(
                "namespace %s has a Secret %s not managed by logaas-webhook: left alone",
                namespace,
                self.name,
            )
        return result
