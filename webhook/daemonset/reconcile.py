"""Keep the agent's objects and the credential copies in line with the cluster's namespaces.

One LIST of namespaces, then a WATCH from its resourceVersion (informer style). Any change to
a namespace's logaas/* labels or annotations (or a namespace coming or going) triggers a
pass; a pass renders the objects and server-side applies only those whose rendered content
changed since the last apply (the DaemonSet's checksum annotation changes only with the
config, so the agent rolls only then). Every `resync_seconds` everything is re-applied
(repairs drift; an unchanged apply is a no-op for the API server) and stale credential copies
are swept. API errors back off exponentially (with jitter) up to `max_backoff`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes import watch as _watch
from kubernetes.client.exceptions import ApiException

from webhook import names
from webhook.daemonset.credentials import CredentialSync, SyncResult
from webhook.daemonset.kubeapply import NAMESPACES, SECRETS, Kube
from webhook.daemonset.render import DEFAULT_PREFIX, objects_for_plan
from webhook.daemonset.routing import build_plan
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

JSON = dict[str, Any]
log = logging.getLogger("logaas.daemonset")
watch: Any = _watch  # untyped package


def relevant(ns: NamespaceInfo) -> tuple[Any, ...]:
    """What of a namespace the agent and the credential copies depend on."""
    return (
        ns.labels.get(names.INJECT),
        tuple(sorted((k, v) for k, v in ns.annotations.items() if k.startswith(names.PREFIX))),
    )


def _object_key(obj: JSON) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def _digest(obj: JSON) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class Backoff:
    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        base: float = min(self.maximum, self.initial * 2.0 ** (self.failures - 1))
        return base * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0


@dataclass
class PassResult:
    applied: list[str] = field(default_factory=list)
    credentials: SyncResult | None = None
    warnings: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        namespace: str,
        prefix: str = DEFAULT_PREFIX,
        sync_credentials: bool = True,
        resync_seconds: float = 300.0,
        backoff: Backoff | None = None,
        watch_timeout: int = 240,
        settle_seconds: float = 1.0,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.namespace = namespace
        self.prefix = prefix
        self.credentials = CredentialSync(kube, settings, namespace) if sync_credentials else None
        self.resync_seconds = resync_seconds
        self.backoff = backoff or Backoff()
        self.watch_timeout = watch_timeout
        # After a change, wait this long for more (a burst of namespaces rolls the agent once).
        self.settle_seconds = settle_seconds
        self.namespaces: dict[str, NamespaceInfo] = {}
        self.resource_version = ""
        self.applied: dict[str, str] = {}  # object key -> digest of what we last applied
        self.dirty = threading.Event()
        self.lock = threading.Lock()
        self.passes = 0
        self._last_full = 0.0
        self._warned: set[str] = set()

    # -- one pass ------------------------------------------------------------------------

    def load_namespaces(self) -> None:
        items, rv = self.kube.list(NAMESPACES)
        with self.lock:
            self.namespaces = {ns.name: ns for ns in (NamespaceInfo.from_object(i) for i in items)}
            self.resource_version = rv

    def reconcile_once(self, full: bool = False) -> PassResult:
        with self.lock:
            namespaces = list(self.namespaces.values())
        plan = build_plan(namespaces, self.settings, self.namespace, self.prefix)
        result = PassResult(warnings=plan.warnings)
        for warning in plan.warnings:
            if warning not in self._warned:
                log.warning("%s", warning)
                self._warned.add(warning)
        for obj in objects_for_plan(self.settings, plan):
            key, digest = _object_key(obj), _digest(obj)
            if full or self.applied.get(key) != digest:
                self.kube.apply(obj)
                self.applied[key] = digest
                result.applied.append(key)
        if result.applied:
            log.info("applied %s", ", ".join(result.applied))
        if self.credentials is not None:
            result.credentials = self.credentials.sync(namespaces, full=full)
        self.passes += 1
        return result

    # -- the loop ------------------------------------------------------------------------

    def on_event(self, kind: str, obj: JSON) -> None:
        ns = NamespaceInfo.from_object(obj)
        with self.lock:
            before = self.namespaces.get(ns.name)
            if kind == "DELETED":
                self.namespaces.pop(ns.name, None)
                changed = before is not None
            else:
                self.namespaces[ns.name] = ns
                changed = before is None or relevant(before) != relevant(ns)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
        if changed:
            self.dirty.set()

    def watch_namespaces(self, stop: threading.Event) -> None:
        """Informer: relist on start and after errors or 410 Gone, then watch."""
        core = client.CoreV1Api(self.kube.api)
        backoff = Backoff(self.backoff.initial, self.backoff.maximum)
        need_list = not self.resource_version
        while not stop.is_set():
            try:
                if need_list:
                    self.load_namespaces()
                    self.dirty.set()
                    need_list = False
                stream = watch.Watch()
                for event in stream.stream(
                    core.list_namespace,
                    resource_version=self.resource_version,
                    timeout_seconds=self.watch_timeout,
                    allow_watch_bookmarks=False,
                ):
                    if stop.is_set():
                        stream.stop()
                        break
                    raw = event.get("raw_object") or {}
                    if event.get("type") == "ERROR":
                        need_list = True
                        stream.stop()
                        break
                    self.on_event(str(event.get("type")), raw)
                backoff.reset()
            except ApiException as err:
                need_list = True
                delay = backoff.next_delay()
                log.warning("namespace watch: %s %s; retry in %.1fs", err.status, err.reason, delay)
                stop.wait(delay)
            except Exception as err:
                need_list = True
                delay = backoff.next_delay()
                log.warning("namespace watch: %s; retry in %.1fs", err, delay)
                stop.wait(delay)

    def watch_source_secret(self, stop: threading.Event) -> None:
        """A change to the source Secret re-syncs the copies (Role: secrets watch in NS)."""
        name = self.settings.credentials.secret_name
        backoff = Backoff(self.backoff.initial, self.backoff.maximum)
        last: str | None = None
        while not stop.is_set():
            try:
                secret = self.kube.get(SECRETS, self.namespace, name)
                current = None if secret is None else json.dumps(secret.get("data"), sort_keys=True)
                if current != last:
                    last = current
                    self.dirty.set()
                core = client.CoreV1Api(self.kube.api)
                stream = watch.Watch()
                for _event in stream.stream(
                    core.list_namespaced_secret,
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=self.watch_timeout,
                ):
                    self.dirty.set()
                    if stop.is_set():
                        stream.stop()
                        break
                backoff.reset()
            except Exception as err:
                delay = backoff.next_delay()
                log.warning("credentials Secret watch: %s; retry in %.1fs", err, delay)
                stop.wait(delay)

    def run(
        self,
        stop: threading.Event,
        watch_changes: bool = True,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        threads = []
        if watch_changes:
            threads.append(
                threading.Thread(target=self.watch_namespaces, args=(stop,), daemon=True)
            )
            if self.credentials is not None:
                threads.append(
                    threading.Thread(target=self.watch_source_secret, args=(stop,), daemon=True)
                )
        for thread in threads:
            thread.start()
        self.dirty.set()
        leading = False
        while not stop.is_set():
            self.dirty.wait(timeout=min(self.resync_seconds, 1.0))
            if stop.is_set():
                break
            if not is_leader():
                leading = False
                continue
            now = time.monotonic()
            # A new leader cannot trust what it remembers applying: start with a full pass.
            full = not leading or now - self._last_full >= self.resync_seconds
            leading = True
            if not (self.dirty.is_set() or full):
                continue
            if not full and stop.wait(self.settle_seconds):
                break
            self.dirty.clear()
            try:
                if not watch_changes or not self.resource_version:
                    self.load_namespaces()
                self.reconcile_once(full=full)
                if full:
                    self._last_full = now
                self.backoff.reset()
            except Exception as err:
                self.dirty.set()
                delay = self.backoff.next_delay()
                status = getattr(err, "status", "")
                log.warning("reconcile failed (%s %s); retry in %.1fs", status, err, delay)
                stop.wait(delay)
        for thread in threads:
            thread.join(timeout=5)
