"""The watched namespace cache against an HTTP-level fake API server, real kubernetes client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakekube import FakeKube
from webhook.nscache import NamespaceCache


def namespace(name: str, labels: dict[str, str] | None = None, **annotations: str) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations},
    }


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


def test_lists_then_follows_changes(kube: FakeKube) -> None:
    kube.put(namespace("shop", {"logaas/inject": "enabled"}, **{"logaas/group-id": "g1"}))
    cache = NamespaceCache(kube.api_client(), max_backoff=0.2)
    cache.start()
    try:
        assert cache.wait_synced(10)
        info = cache.get("shop")
        assert info is not None and info.labels["logaas/inject"] == "enabled"
        assert info.annotations["logaas/group-id"] == "g1"
        assert cache.get("absent") is None

        kube.put(namespace("blog", **{"logaas/group-id": "g2"}))
        assert kube.wait_for(lambda: cache.get("blog") is not None)
        kube.put(namespace("shop", {}, **{"logaas/group-id": "g3"}))
        assert kube.wait_for(
            lambda: (
                (i := cache.get("shop")) is not None and i.annotations["logaas/group-id"] == "g3"
            )
        )
        kube.remove("v1", "namespaces", None, "blog")
        assert kube.wait_for(lambda: cache.get("blog") is None)
    finally:
        cache.stop()


def test_recovers_from_api_errors(kube: FakeKube) -> None:
    kube.fail_next(3, 500)
    cache = NamespaceCache(kube.api_client(), max_backoff=0.2)
    cache.start()
    try:
        assert cache.wait_synced(15), "retried past the failures"
        # Three failed lists, then the one that synced.
        assert len(kube.requests_for("GET", "/api/v1/namespaces")) >= 4
        kube.put(namespace("late"))
        assert kube.wait_for(lambda: cache.get("late") is not None, timeout=15)
    finally:
        cache.stop()
