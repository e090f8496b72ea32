"""The fake API server itself, driven by the real kubernetes client's generated APIs (the way
other tests use it: Secrets, webhook configurations, leases)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fakekube import FakeKube, label_selector_matches


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as kube:
        kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
        yield kube


@pytest.fixture
def core(fake: FakeKube) -> client.CoreV1Api:
    return client.CoreV1Api(fake.api_client())


def secret(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "dg=="},
    }


def test_create_read_conflict_replace(fake: FakeKube, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_secret("ns", secret("s"))
    assert created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as err:
        core.create_namespaced_secret("ns", secret("s"))
    assert err.value.status == 409
    got = core.read_namespaced_secret("s", "ns")
    got.data = {"k": "dzI="}
    replaced = core.replace_namespaced_secret("s", "ns", got)
    assert replaced.metadata.resource_version != created.metadata.resource_version
    got.data = {"k": "c3RhbGU="}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_secret("s", "ns", got)
    assert err.value.status == 409
    with pytest.raises(ApiException) as err:
        core.read_namespaced_secret("missing", "ns")
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        core.create_namespaced_secret("no-such-ns", secret("s"))
    assert err.value.status == 404
    core.delete_namespaced_secret("s", "ns")
    assert fake.get("v1", "secrets", "ns", "s") is None


def test_patch_types(fake: FakeKube, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "ns", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    )
    core.patch_namespaced_config_map("c", "ns", {"data": {"b": None, "c": "3"}})
    assert fake.get("v1", "configmaps", "ns", "c")["data"] == {"a": "1", "c": "3"}  # type: ignore[index]
    core.patch_namespaced_config_map(
        "c", "ns", [{"op": "replace", "path": "/data/a", "value": "9"}]
    )
    assert fake.get("v1", "configmaps", "ns", "c")["data"]["a"] == "9"  # type: ignore[index]
    kinds = {r.content_type for r in fake.requests_for("PATCH")}
    assert kinds == {"application/strategic-merge-patch+json", "application/json-patch+json"}


def test_server_side_apply_owns_fields(fake: FakeKube, core: client.CoreV1Api) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "1", "b": "2"},
    }
    core.patch_namespaced_config_map(
        "c", "ns", body, field_manager="me", _content_type="application/apply-patch+yaml"
    )
    first = fake.get("v1", "configmaps", "ns", "c")
    assert first is not None and first["metadata"]["managedFields"][0]["manager"] == "me"
    # same apply: nothing changes, not even the resourceVersion
    core.patch_namespaced_config_map(
        "c", "ns", body, field_manager="me", _content_type="application/apply-patch+yaml"
    )
    again = fake.get("v1", "configmaps", "ns", "c")
    assert again is not None
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    # a field the manager stops applying is removed; others' fields stay
    core.patch_namespaced_config_map("c", "ns", {"data": {"theirs": "x"}})
    body["data"] = {"a": "1"}
    core.patch_namespaced_config_map(
        "c", "ns", body, field_manager="me", _content_type="application/apply-patch+yaml"
    )
    assert fake.get("v1", "configmaps", "ns", "c")["data"] == {"a": "1", "theirs": "x"}  # type: ignore[index]
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "c", "ns", body, _content_type="application/apply-patch+yaml"
        )
    assert err.value.status == 422  # fieldManager is required for apply


def test_selectors(fake: FakeKube, core: client.CoreV1Api) -> None:
    for name, labels in (("a", {"app": "x"}), ("b", {"app": "y", "tier": "db"}), ("c", {})):
        core.create_namespaced_secret("ns", secret(name, **labels))

    def names(**kwargs: str) -> list[str]:
        return [s.metadata.name for s in core.list_namespaced_secret("ns", **kwargs).items]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app") == ["a", "b"]
    assert names(label_selector="!app") == ["c"]
    assert names(label_selector="app in (x,y),tier") == ["b"]
    assert names(label_selector="app notin (x)") == ["b", "c"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert [s.metadata.name for s in core.list_secret_for_all_namespaces().items] == ["a", "b", "c"]
    assert label_selector_matches("a!=1", {"a": "2"}) and not label_selector_matches(
        "a!=1", {"a": "1"}
    )


def test_watch_from_resource_version_and_gone(fake: FakeKube, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("ns").metadata.resource_version

    def later() -> None:
        time.sleep(0.2)
        core.create_namespaced_config_map("ns", {"metadata": {"name": "w"}})
        core.patch_namespaced_config_map("w", "ns", {"data": {"x": "1"}})
        core.delete_namespaced_config_map("w", "ns")

    threading.Thread(target=later).start()
    w = watch.Watch()
    seen = []
    for event in w.stream(
        core.list_namespaced_config_map, "ns", resource_version=rv, timeout_seconds=3
    ):
        seen.append(event["type"])
        if len(seen) == 3:
            w.stop()
    assert seen == ["ADDED", "MODIFIED", "DELETED"]
    fake.compact()
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "ns", resource_version=rv, timeout_seconds=1
        ):
            pass
    assert err.value.status == 410


def test_error_injection_and_request_log(fake: FakeKube, core: client.CoreV1Api) -> None:
    fake.fail_next(2, 503, method="GET", path_contains="/secrets")
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.list_namespaced_secret("ns")
        assert err.value.status == 503
    assert core.list_namespaced_secret("ns").items == []
    assert [r.method for r in fake.requests_for(path_contains="/secrets")] == ["GET"] * 3


def test_cluster_scoped_and_generate_name(fake: FakeKube) -> None:
    api = client.AdmissionregistrationV1Api(fake.api_client())
    api.create_mutating_webhook_configuration({"metadata": {"name": "hook"}, "webhooks": []})
    api.patch_mutating_webhook_configuration("hook", {"metadata": {"labels": {"a": "b"}}})
    got = fake.get("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", None, "hook")
    assert got is not None and got["metadata"]["labels"] == {"a": "b"}
    core = client.CoreV1Api(fake.api_client())
    made = core.create_namespaced_config_map("ns", {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
