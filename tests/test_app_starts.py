"""Logging never keeps the application from starting.

The README's Security section explains why each of these properties matters for a native
sidecar, with the kubelet sources."""

from __future__ import annotations

import json

import pytest

from tests.builders import admission_review, pod
from tests.harness import JSON, InProcess, check_answer, kubectl_patch_many
from webhook import names
from webhook.app import create_app
from webhook.mutation import Injector, Mode, NamespaceInfo
from webhook.settings import load_settings


def injected(native: bool = True, **pod_spec: object) -> tuple[JSON, JSON]:
    """(pod before, pod after) for an opted-in pod, patched with kube-apiserver semantics."""
    spec = {
        "initContainers": [{"name": "migrate", "image": "tool"}],
        "containers": [
            {
                "name": "app",
                "image": "nginx",
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                "env": [{"name": "MODE", "value": "prod"}],
            }
        ],
        **pod_spec,
    }
    before = pod({names.INJECT: "true"}, spec=spec)
    decision = Injector(load_settings(sidecar={"native": native})).decide(before, Mode.POD, "shop")
    assert decision.outcome == "injected"
    [after] = kubectl_patch_many([(before, decision.patch)])
    return before, after


def sidecar_of(after: JSON) -> JSON:
    return next(
        c
        for key in ("initContainers", "containers")
        for c in after["spec"].get(key, [])
        if c["name"] == names.SIDECAR_CONTAINER
    )


@pytest.mark.parametrize("native", [True, False], ids=["native", "classic"])
def test_credentials_are_optional_references(native: bool) -> None:
    """A missing Secret or key must not stop the container from being created
    (kubelet: non-optional refs fail with CreateContainerConfigError)."""
    _, after = injected(native)
    sidecar = sidecar_of(after)
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for e in sidecar["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert len(refs) == 2
    assert all(ref["optional"] is True for ref in refs)
    assert "envFrom" not in sidecar
    # No Secret or ConfigMap volume either (a missing one blocks the volume mount);
    # the config comes from the pod's own annotation through the Downward API.
    for volume in after["spec"]["volumes"]:
        assert set(volume) <= {"name", "emptyDir", "downwardAPI"}, volume


@pytest.mark.parametrize("native", [True, False], ids=["native", "classic"])
def test_no_probe_ties_the_app_to_the_log_pipeline(native: bool) -> None:
    """No startupProbe (the kubelet waits for it before starting the app containers after a
    native sidecar), no readinessProbe (it would make the pod unready while LogaaS is down),
    no postStart hook (its failure kills the container). Liveness only, lenient."""
    _, after = injected(native)
    sidecar = sidecar_of(after)
    assert "startupProbe" not in sidecar
    assert "readinessProbe" not in sidecar
    assert "lifecycle" not in sidecar
    liveness = sidecar["livenessProbe"]
    grace = liveness.get("initialDelaySeconds", 0) + liveness.get(
        "periodSeconds", 10
    ) * liveness.get("failureThreshold", 3)
    assert grace >= 60


def test_native_sidecar_is_a_restartable_init_container_after_the_users_own() -> None:
    before, after = injected(native=True)
    init = after["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["migrate", names.SIDECAR_CONTAINER]
    assert init[-1]["restartPolicy"] == "Always"
    assert "restartPolicy" not in init[0]
    # The app containers keep their command, env and probes; they only gain the log mount.
    app_before, app_after = before["spec"]["containers"][0], after["spec"]["containers"][0]
    assert {k: v for k, v in app_after.items() if k != "volumeMounts"} == app_before
    [mount] = app_after["volumeMounts"]
    assert mount["name"] == names.LOGS_VOLUME
    logs = next(v for v in after["spec"]["volumes"] if v["name"] == names.LOGS_VOLUME)
    assert "emptyDir" in logs


def test_classic_sidecar_is_a_regular_container() -> None:
    _, after = injected(native=False)
    assert [c["name"] for c in after["spec"]["containers"]] == ["app", names.SIDECAR_CONTAINER]
    assert [c["name"] for c in after["spec"]["initContainers"]] == ["migrate"]
    assert "restartPolicy" not in after["spec"]["containers"][1]


SYNC_WARNING = "is not synced to namespace"


@pytest.mark.parametrize(
    "mode,ns,synced_setting,warned",
    [
        (Mode.POD, NamespaceInfo("shop"), True, True),
        (Mode.POD, NamespaceInfo("shop", annotations={names.CREDENTIALS: "sync"}), True, False),
        (Mode.POD, NamespaceInfo("shop", labels={names.INJECT: names.NS_ENABLED}), True, False),
        (Mode.POD, None, True, False),  # namespace unknown to the cache: no guess
        (
            Mode.NAMESPACE,
            NamespaceInfo("shop", labels={names.INJECT: names.NS_ENABLED}),
            True,
            False,
        ),
        (Mode.POD, NamespaceInfo("shop"), False, False),  # the operator manages Secrets
    ],
    ids=["unsynced", "annotated-sync", "labelled-enabled", "unknown", "namespace-mode", "no-sync"],
)
def test_warning_when_the_secret_is_not_synced(
    mode: Mode, ns: NamespaceInfo | None, synced_setting: bool, warned: bool
) -> None:
    settings = load_settings(credentials={"synced": synced_setting})
    decision = Injector(settings).decide(pod({names.INJECT: "true"}), mode, "shop", ns)
    assert decision.allowed and decision.outcome == "injected"  # a warning, never a denial
    hits = [w for w in decision.warnings if SYNC_WARNING in w]
    assert bool(hits) is warned
    if warned:
        assert "logaas-credentials" in hits[0] and "logaas/credentials=sync" in hits[0]


def test_warning_reaches_kubectl_through_response_warnings() -> None:
    known = {"shop": NamespaceInfo("shop")}
    client = InProcess(create_app(load_settings(), namespaces=known.get))
    try:
        review = admission_review(pod({names.INJECT: "true"}), namespace="shop")
        answer = client.post("/mutate", json.dumps(review).encode())
    finally:
        client.close()
    response = check_answer(answer.status_code, answer.content, review["request"]["uid"])
    assert response is not None and response["allowed"] and "patch" in response
    assert any(SYNC_WARNING in w for w in response["warnings"])
