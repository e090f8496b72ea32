"""A watched cache of namespace labels and annotations: no API call per admission request."""

from __future__ import annotations

import logging
import threading
from typing import Any

from webhook.mutation import NamespaceInfo

log = logging.getLogger(__name__)


class NamespaceCache:
    def __init__(self, client: Any, max_backoff: float = 30.0) -> None:
        from kubernetes import client as k8s

        self._api: Any = k8s.CoreV1Api(client)
        self._items: dict[str, NamespaceInfo] = {}
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._max_backoff = max_backoff
        self._thread: threading.Thread | None = None

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def get(self, name: str) -> NamespaceInfo | None:
        return self._items.get(name)

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="namespace-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _info(obj: Any) -> NamespaceInfo:
        meta = obj.metadata
        return NamespaceInfo(
            name=meta.name, labels=dict(meta.labels or {}), annotations=dict(meta.annotations or {})
        )

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        backoff = 1.0
        while not self._stop.is_set():
            try:
                listing: Any = self._api.list_namespace(_request_timeout=30)
                self._items = {i.metadata.name: self._info(i) for i in listing.items}
                self._synced.set()
                version = listing.metadata.resource_version
                backoff = 1.0
                watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
                stream = watcher.stream(
                    self._api.list_namespace,
                    resource_version=version,
                    timeout_seconds=300,
                    _request_timeout=330,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    info = self._info(event["object"])
                    if event["type"] == "DELETED":
                        self._items.pop(info.name, None)
                    else:
                        self._items[info.name] = info
            except ApiException as err:
                if err.status != 410:  # 410 Gone: resourceVersion too old; relist at once
                    log.warning(
                        "namespace watch failed (%s); retrying in %.0fs", err.status, backoff
                    )
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
            except Exception as err:  # network errors: keep the last known state, retry
                log.warning(
                    "namespace watch failed (%s); retrying in %.0fs", type(err).__name__, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
