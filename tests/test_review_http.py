"""Admission semantics over HTTP (in-process ASGI): envelope, kinds, operations, errors."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx
import pytest

from tests.builders import admission_review, pod
from tests.kube import kubectl_patch, validate_strict
from webhook.app import create_app
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(settings: Settings) -> Any:
    namespaces = {"shop": NamespaceInfo("shop", annotations={"logaas/group-id": "shop-logs"})}
    app = create_app(settings, namespaces=namespaces.get)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as c:
        yield c


async def post(client: httpx.AsyncClient, body: Any, path: str = "/mutate") -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path, content=data, headers={"content-type": "application/json"})


def response_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    review = resp.json()
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    out: dict[str, Any] = review["response"]
    return out


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


@pytest.mark.parametrize("path", ["/mutate", "/mutate/namespace"])
async def test_injects_and_echoes_uid(client: httpx.AsyncClient, path: str) -> None:
    obj = pod({"logaas/inject": "true"})
    response = response_of(await post(client, admission_review(obj, uid="abc-123"), path))
    assert response["uid"] == "abc-123" and response["allowed"] is True
    result = kubectl_patch(obj, patch_of(response))
    validate_strict(result)
    assert result["metadata"]["annotations"]["logaas/status"] == "injected"
    # The namespace default from the watched cache reached the config.
    assert (
        "default_group_id         shop-logs"
        in result["metadata"]["annotations"]["logaas/fluent-bit-config"]
    )


async def test_path_carries_the_namespace_decision(client: httpx.AsyncClient) -> None:
    plain = admission_review(pod(None))
    assert "patch" not in response_of(await post(client, plain, "/mutate"))
    assert "patch" in response_of(await post(client, plain, "/mutate/namespace"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"operation": "UPDATE"},
        {"operation": "DELETE"},
        {"operation": "CONNECT"},
        {"sub_resource": "status"},
        {"sub_resource": "ephemeralcontainers"},
        {"kind": "Deployment", "resource": "deployments", "group": "apps"},
        {"kind": "ConfigMap", "resource": "configmaps"},
    ],
)
async def test_only_pod_create_is_mutated(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    review = admission_review(pod({"logaas/inject": "true"}), **overrides)
    for path in ("/mutate", "/mutate/namespace"):
        response = response_of(await post(client, review, path))
        assert response["allowed"] is True and "patch" not in response


async def test_delete_without_object(client: httpx.AsyncClient) -> None:
    review = admission_review(None, operation="DELETE")
    response = response_of(await post(client, review))
    assert response == {"uid": review["request"]["uid"], "allowed": True}


async def test_dry_run_gets_the_same_answer(client: httpx.AsyncClient) -> None:
    obj = pod({"logaas/inject": "true"})
    real = response_of(await post(client, admission_review(obj)))
    dry = response_of(await post(client, admission_review(obj, dry_run=True)))
    assert patch_of(dry) == patch_of(real)


async def test_invalid_annotation_denied_400(client: httpx.AsyncClient) -> None:
    obj = pod({"logaas/inject": "true", "logaas/parser": "xml"})
    response = response_of(await post(client, admission_review(obj)))
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 400
    assert "logaas/parser" in response["status"]["message"]
    assert "'xml'" in response["status"]["message"]


async def test_already_injected_no_patch(client: httpx.AsyncClient) -> None:
    obj = pod({"logaas/inject": "true"})
    first = response_of(await post(client, admission_review(obj)))
    injected = kubectl_patch(obj, patch_of(first))
    again = response_of(await post(client, admission_review(injected)))
    assert again["allowed"] is True and "patch" not in again


async def test_warnings_reach_the_response(client: httpx.AsyncClient) -> None:
    obj = pod({"logaas/inject": "true", "logaas/groupid": "typo"})
    response = response_of(await post(client, admission_review(obj)))
    assert any("logaas/groupid" in w for w in response["warnings"])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
        b'{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}',
        json.dumps({**admission_review(pod(None)), "kind": "Pod"}).encode(),
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}
        ).encode(),
    ],
)
async def test_malformed_review_is_400_with_json_error(
    client: httpx.AsyncClient, body: bytes
) -> None:
    resp = await post(client, body)
    assert resp.status_code == 400
    assert "AdmissionReview" in resp.json()["error"]


async def test_error_message_does_not_echo_input(client: httpx.AsyncClient) -> None:
    review = admission_review(pod(None))
    review["request"]["uid"] = {"s3cr3t-value": "x"}
    resp = await post(client, review)
    assert resp.status_code == 400 and "s3cr3t-value" not in resp.text


async def test_body_over_3_mib_is_413(client: httpx.AsyncClient) -> None:
    resp = await post(client, b"{" + b" " * (3 * 1024 * 1024) + b"}")
    assert resp.status_code == 413
    assert "3 MiB" in resp.json()["error"]


async def test_large_pod_under_the_limit_is_served(client: httpx.AsyncClient) -> None:
    obj = pod({"logaas/inject": "true"})
    obj["spec"]["containers"][0]["env"] = [
        {"name": f"VAR_{i}", "value": "x" * 1000} for i in range(2000)
    ]
    response = response_of(await post(client, admission_review(copy.deepcopy(obj))))
    assert response["allowed"] and patch_of(response)


async def test_get_on_mutate_is_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/mutate")).status_code == 405


async def test_health_ready_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await post(client, admission_review(pod({"logaas/inject": "true"})))
    metrics = (await client.get("/metrics")).text
    assert (
        'logaas_webhook_reviews_total{endpoint="/mutate",outcome="injected",reason="injected"} 1.0'
        in metrics
    )
    assert 'logaas_webhook_injections_total{namespace="shop"} 1.0' in metrics
    assert 'le="0.005"' in metrics and 'le="2.5"' in metrics


async def test_readyz_follows_readiness(settings: Settings) -> None:
    state = {"ready": False}
    app = create_app(settings, ready=lambda: state["ready"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://w") as c:
        assert (await c.get("/readyz")).status_code == 503
        state["ready"] = True
        assert (await c.get("/readyz")).status_code == 200
