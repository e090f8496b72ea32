"""An HTTP-level fake Kubernetes API server for tests that drive the real `kubernetes` client.

    with FakeKube() as kube:
        api = kube.api_client()              # kubernetes.client.ApiClient pointed at it
        kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
        ...                                  # code under test talks HTTP to kube.url
        kube.get("v1", "namespaces", None, "a"); kube.requests; kube.fail_next(2, 500)

Objects live in memory keyed by (group, version, resource, namespace, name) and carry
uid, resourceVersion (one cluster-wide counter), generation and creationTimestamp.
Supported: GET, LIST (labelSelector: =, ==, !=, exists, !exists, in, notin; fieldSelector:
metadata.name, metadata.namespace), WATCH (?watch=true, streaming JSON lines from a
resourceVersion, timeoutSeconds, 410 Gone before compact()), POST (409 AlreadyExists,
generateName), PUT (409 Conflict on a stale resourceVersion), PATCH (server-side apply
application/apply-patch+yaml with required fieldManager and per-manager removal of fields a
manager no longer applies, merge-patch, strategic merge approximated as merge, json-patch),
DELETE. A write that changes nothing keeps the resourceVersion and sends no watch event, as
kube-apiserver does. Lists in apply are replaced, not merged by key (an approximation).
Every request is logged in `requests`; `fail_next` makes the next requests fail.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonpatch
import yaml
from kubernetes import client

JSON = dict[str, Any]
Key = tuple[str, str, str, str, str]  # group, version, resource, namespace ("" if cluster), name

# resource -> (kind, namespaced), per group/version; register() adds more.
KINDS: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False),
    ("", "v1", "nodes"): ("Node", False),
    ("", "v1", "pods"): ("Pod", True),
    ("", "v1", "secrets"): ("Secret", True),
    ("", "v1", "configmaps"): ("ConfigMap", True),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True),
    ("", "v1", "services"): ("Service", True),
    ("", "v1", "events"): ("Event", True),
    ("apps", "v1", "daemonsets"): ("DaemonSet", True),
    ("apps", "v1", "deployments"): ("Deployment", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ("ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): ("ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io", "v1", "roles"): ("Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ("RoleBinding", True),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"): (
        "MutatingWebhookConfiguration",
        False,
    ),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations"): (
        "ValidatingWebhookConfiguration",
        False,
    ),
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any

    @property
    def field_manager(self) -> str | None:
        return self.query.get("fieldManager")


@dataclass
class _Failure:
    remaining: int
    status: int
    match: Callable[[str, str], bool]


@dataclass
class _Event:
    rv: int
    key: Key
    type: str
    obj: JSON


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> JSON:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _remove_unapplied(current: Any, old: Any, new: Any) -> Any:
    """Drop from current the fields a manager applied before (old) but no longer (new)."""
    if not isinstance(current, dict) or not isinstance(old, dict):
        return current
    result = dict(current)
    for key, old_value in old.items():
        if key not in result:
            continue
        if not isinstance(new, dict) or key not in new:
            del result[key]
        elif isinstance(old_value, dict):
            result[key] = _remove_unapplied(result[key], old_value, new[key])
    return result


def _apply_merge(current: Any, applied: Any) -> Any:
    if isinstance(current, dict) and isinstance(applied, dict):
        result = dict(current)
        for key, value in applied.items():
            result[key] = _apply_merge(current.get(key), value)
        return result
    return copy.deepcopy(applied)


_SELECTOR_PART = re.compile(r"(?:[^,(]|\([^)]*\))+")


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for raw in _SELECTOR_PART.findall(selector or ""):
        part = raw.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", part)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            present = key in labels and labels[key] in values
            if (op == "in") != present:
                return False
            continue
        if part.startswith("!"):
            if part[1:].strip() in labels:
                return False
            continue
        m = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*(\S*)", part)
        if m:
            key, op, value = m.groups()
            if op == "!=":
                if labels.get(key) == value:
                    return False
            elif labels.get(key) != value:
                return False
            continue
        if part not in labels:
            return False
    return True


def field_selector_matches(selector: str, obj: JSON) -> bool:
    meta = obj.get("metadata") or {}
    for part in filter(None, (p.strip() for p in (selector or "").split(","))):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(\S*)", part)
        if not m:
            raise ApiError(400, "BadRequest", f"unsupported field selector {part!r}")
        key, op, value = m.groups()
        if key == "metadata.name":
            actual = meta.get("name", "")
        elif key == "metadata.namespace":
            actual = meta.get("namespace", "")
        else:
            raise ApiError(400, "BadRequest", f"field label not supported: {key}")
        if (actual == value) == (op == "!="):
            return False
    return True


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, JSON] = {}
        self.applied: dict[tuple[Key, str], JSON] = {}  # (object, manager) -> last applied
        self.events: list[_Event] = []
        self.compacted_rv = 0
        self.rv = 100
        self.requests: list[Request] = []
        self.failures: list[_Failure] = []
        self.cond = threading.Condition()
        self.closing = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeKube:
        fake = self

        class Handler(_Handler):
            kube = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.retries = False
        return client.ApiClient(configuration)

    # -- test helpers ----------------------------------------------------------------------

    @staticmethod
    def register(group: str, version: str, resource: str, kind: str, namespaced: bool) -> None:
        KINDS[(group, version, resource)] = (kind, namespaced)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """The next `count` requests (matching method/path if given) answer `status`."""

        def match(m: str, p: str) -> bool:
            return (method is None or m == method) and (path_contains is None or path_contains in p)

        with self.cond:
            self.failures.append(_Failure(count, status, match))

    def requests_for(self, method: str | None = None, path_contains: str = "") -> list[Request]:
        with self.cond:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path
            ]

    def clear_requests(self) -> None:
        with self.cond:
            self.requests.clear()

    def compact(self) -> None:
        """Forget history: watches from an older resourceVersion get 410 Gone."""
        with self.cond:
            self.compacted_rv = self.rv
            self.events.clear()

    def put(self, obj: JSON) -> JSON:
        """Create or replace an object directly (as another client would), with events."""
        group, version = _split_api_version(obj["apiVersion"])
        resource = self._resource_for_kind(group, version, obj["kind"])
        meta = obj.setdefault("metadata", {})
        key = (group, version, resource, meta.get("namespace", ""), meta["name"])
        with self.cond:
            existing = self.objects.get(key)
            if existing is None:
                return self._create(key, copy.deepcopy(obj), None)
            return self._store(key, copy.deepcopy(obj), existing)

    def get(self, api_version: str, resource: str, namespace: str | None, name: str) -> JSON | None:
        group, version = _split_api_version(api_version)
        with self.cond:
            obj = self.objects.get((group, version, resource, namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, api_version: str, resource: str, namespace: str | None = None) -> list[JSON]:
        group, version = _split_api_version(api_version)
        with self.cond:
            return [
                copy.deepcopy(o)
                for k, o in sorted(self.objects.items())
                if k[:3] == (group, version, resource) and (namespace is None or k[3] == namespace)
            ]

    def remove(self, api_version: str, resource: str, namespace: str | None, name: str) -> None:
        group, version = _split_api_version(api_version)
        with self.cond:
            self._delete((group, version, resource, namespace or "", name))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # -- store (call with self.cond held) --------------------------------------------------

    def _resource_for_kind(self, group: str, version: str, kind: str) -> str:
        for (g, v, resource), (k, _) in KINDS.items():
            if (g, v, k) == (group, version, kind):
                return resource
        raise KeyError(f"unknown kind {kind} in {group}/{version}: FakeKube.register() it")

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, key: Key, kind: str, obj: JSON) -> None:
        self.events.append(_Event(self.rv, key, kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _create(self, key: Key, obj: JSON, manager: str | None, operation: str = "Update") -> JSON:
        group, version, resource, namespace, name = key
        kind, _ = KINDS[(group, version, resource)]
        obj["apiVersion"] = _api_version(group, version)
        obj["kind"] = kind
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if namespace:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["generation"] = 1
        if manager:
            meta["managedFields"] = [self._managed(manager, operation, obj)]
        meta["resourceVersion"] = self._bump()
        self.objects[key] = obj
        self._emit(key, "ADDED", obj)
        return copy.deepcopy(obj)

    @staticmethod
    def _managed(manager: str, operation: str, obj: JSON) -> JSON:
        return {
            "manager": manager,
            "operation": operation,
            "apiVersion": obj.get("apiVersion", ""),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }

    @staticmethod
    def _comparable(obj: JSON) -> JSON:
        out = copy.deepcopy(obj)
        meta = out.get("metadata") or {}
        for k in ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp"):
            meta.pop(k, None)
        return out

    def _store(
        self,
        key: Key,
        new: JSON,
        existing: JSON,
        manager: str | None = None,
        operation: str = "Update",
    ) -> JSON:
        meta = new.setdefault("metadata", {})
        old_meta = existing["metadata"]
        for k in ("uid", "creationTimestamp", "name", "namespace"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        new["apiVersion"] = existing["apiVersion"]
        new["kind"] = existing["kind"]
        managed = [m for m in old_meta.get("managedFields") or [] if m.get("manager") != manager]
        if manager:
            managed.append(self._managed(manager, operation, new))
        if self._comparable(new) == self._comparable(existing):
            return copy.deepcopy(existing)
        meta["managedFields"] = managed
        spec_changed = new.get("spec") != existing.get("spec")
        meta["generation"] = int(old_meta.get("generation", 1)) + (1 if spec_changed else 0)
        meta["resourceVersion"] = self._bump()
        self.objects[key] = new
        self._emit(key, "MODIFIED", new)
        return copy.deepcopy(new)

    def _delete(self, key: Key) -> JSON:
        obj = self.objects.pop(key, None)
        if obj is None:
            raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found')
        for manager_key in [k for k in self.applied if k[0] == key]:
            del self.applied[manager_key]
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._bump()
        self._emit(key, "DELETED", obj)
        return obj

    # -- request handling ------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str, str, str, str, str]:
        """path -> group, version, resource, namespace, name, subresource."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        namespace = ""
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if (group, version, resource) not in KINDS:
            raise ApiError(404, "NotFound", f"the server could not find the resource {resource}")
        _, namespaced = KINDS[(group, version, resource)]
        if namespace and not namespaced:
            raise ApiError(404, "NotFound", f"{resource} is not namespaced")
        return group, version, resource, namespace, name, sub

    def handle(
        self, method: str, raw_path: str, content_type: str, body_bytes: bytes
    ) -> tuple[int, JSON] | Iterator[bytes]:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        body: Any = None
        if body_bytes:
            try:
                if "yaml" in content_type:
                    body = yaml.safe_load(body_bytes)
                else:
                    body = json.loads(body_bytes)
            except (ValueError, yaml.YAMLError) as err:
                return 400, ApiError(400, "BadRequest", f"invalid body: {err}").status()
        with self.cond:
            self.requests.append(Request(method, split.path, query, content_type, body))
            for failure in self.failures:
                if failure.remaining > 0 and failure.match(method, split.path):
                    failure.remaining -= 1
                    err = ApiError(failure.status, "InternalError", "injected failure")
                    return failure.status, err.status()
        if split.path == "/version":
            return 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake"}
        try:
            group, version, resource, namespace, name, sub = self._route(split.path)
            if sub:
                raise ApiError(404, "NotFound", f"subresource {sub} is not supported")
            key: Key = (group, version, resource, namespace, name)
            if method == "GET" and not name:
                if query.get("watch") in ("true", "1"):
                    return self._watch(key, query)
                return 200, self._list(key, query)
            with self.cond:
                if method == "GET":
                    obj = self.objects.get(key)
                    if obj is None:
                        raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
                    return 200, copy.deepcopy(obj)
                if method == "POST" and not name:
                    return self._post(key, body, query)
                if method == "PUT" and name:
                    return self._put(key, body, query)
                if method == "PATCH" and name:
                    return self._patch(key, body, content_type, query)
                if method == "DELETE" and name:
                    return 200, self._delete(key)
            raise ApiError(405, "MethodNotAllowed", f"{method} {split.path} is not supported")
        except ApiError as err:
            return err.code, err.status()

    def _check_body(self, key: Key, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "body must be an object")
        group, version, resource, namespace, name = key
        kind, _ = KINDS[(group, version, resource)]
        if body.get("kind") not in (None, kind):
            raise ApiError(400, "BadRequest", f"kind {body.get('kind')} does not match {kind}")
        if body.get("apiVersion") not in (None, _api_version(group, version)):
            raise ApiError(400, "BadRequest", f"apiVersion {body.get('apiVersion')} mismatch")
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, "", namespace):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match")
        if name and meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match")
        return copy.deepcopy(body)

    def _post(self, key: Key, body: Any, query: dict[str, str]) -> tuple[int, JSON]:
        obj = self._check_body(key, body)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        full: Key = (*key[:4], name)  # type: ignore[assignment]
        if full in self.objects:
            raise ApiError(409, "AlreadyExists", f'{key[2]} "{name}" already exists')
        if key[3] and ("", "v1", "namespaces", "", key[3]) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{key[3]}" not found')
        return 201, self._create(full, obj, query.get("fieldManager"))

    def _put(self, key: Key, body: Any, query: dict[str, str]) -> tuple[int, JSON]:
        obj = self._check_body(key, body)
        existing = self.objects.get(key)
        if existing is None:
            raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found')
        sent_rv = (obj.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != existing["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {key[2]} "{key[4]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        return 200, self._store(key, obj, existing, query.get("fieldManager"))

    def _patch(
        self, key: Key, body: Any, content_type: str, query: dict[str, str]
    ) -> tuple[int, JSON]:
        existing = self.objects.get(key)
        manager = query.get("fieldManager")
        if content_type.startswith("application/apply-patch"):
            if not manager:
                raise ApiError(
                    422, "Invalid", "PATCH, fieldManager: Required value: is required for apply"
                )
            applied = self._check_body(key, body)
            if not applied.get("apiVersion") or not applied.get("kind"):
                raise ApiError(400, "BadRequest", "apply needs apiVersion and kind")
            previous = self.applied.get((key, manager))
            self.applied[(key, manager)] = copy.deepcopy(applied)
            if existing is None:
                if key[3] and ("", "v1", "namespaces", "", key[3]) not in self.objects:
                    raise ApiError(404, "NotFound", f'namespaces "{key[3]}" not found')
                return 201, self._create(key, applied, manager, "Apply")
            base = _remove_unapplied(copy.deepcopy(existing), previous or {}, applied)
            merged = _apply_merge(base, applied)
            return 200, self._store(key, merged, existing, manager, "Apply")
        if existing is None:
            raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found')
        if content_type.startswith("application/json-patch"):
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "json patch must be a list")
            try:
                new = jsonpatch.apply_patch(existing, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                raise ApiError(422, "Invalid", f"json patch: {err}") from None
        elif content_type.startswith(
            ("application/merge-patch", "application/strategic-merge-patch")
        ):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "merge patch must be an object")
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != existing["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified")
            new = merge_patch(existing, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        return 200, self._store(key, new, existing, manager)

    def _matching(self, key: Key, query: dict[str, str], obj: JSON) -> bool:
        meta = obj.get("metadata") or {}
        return label_selector_matches(
            query.get("labelSelector", ""), meta.get("labels") or {}
        ) and field_selector_matches(query.get("fieldSelector", ""), obj)

    def _list(self, key: Key, query: dict[str, str]) -> JSON:
        group, version, resource, namespace, _ = key
        kind, _ = KINDS[(group, version, resource)]
        with self.cond:
            items = [
                copy.deepcopy(o)
                for k, o in sorted(self.objects.items())
                if k[:3] == key[:3]
                and (not namespace or k[3] == namespace)
                and self._matching(key, query, o)
            ]
            rv = str(self.rv)
        return {
            "kind": f"{kind}List",
            "apiVersion": _api_version(group, version),
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    def _watch(self, key: Key, query: dict[str, str]) -> Iterator[bytes]:
        namespace = key[3]
        timeout = float(query.get("timeoutSeconds", "3600"))
        deadline = time.monotonic() + timeout
        since = query.get("resourceVersion", "")

        def relevant(event: _Event) -> bool:
            return (
                event.key[:3] == key[:3]
                and (not namespace or event.key[3] == namespace)
                and self._matching(key, query, event.obj)
            )

        def line(kind: str, obj: JSON) -> bytes:
            return (json.dumps({"type": kind, "object": obj}) + "\n").encode()

        def stream() -> Iterator[bytes]:
            with self.cond:
                if since in ("", "0"):
                    start = self.rv
                    initial = [
                        line("ADDED", copy.deepcopy(o))
                        for k, o in sorted(self.objects.items())
                        if k[:3] == key[:3]
                        and (not namespace or k[3] == namespace)
                        and self._matching(key, query, o)
                    ]
                else:
                    start = int(since)
                    initial = []
                    if start < self.compacted_rv:
                        gone = ApiError(410, "Expired", f"too old resource version: {start}")
                        initial = [line("ERROR", gone.status())]
                        start = -1
            yield from initial
            if start < 0:
                return
            position = start
            while True:
                with self.cond:
                    pending = [e for e in self.events if e.rv > position and relevant(e)]
                    if not pending:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self.closing:
                            return
                        self.cond.wait(min(remaining, 0.5))
                        continue
                    position = max(e.rv for e in self.events if e.rv > position)
                for event in pending:
                    yield line(event.type, event.obj)

        return stream()


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        result = self.kube.handle(method, self.path, content_type, body)
        if isinstance(result, tuple):
            status, payload = result
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in result:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
