"""Log-group policy: a namespace may only send to the groups the cluster allows it.

Both modes obey the same policy: the webhook denies a pod (403, a message naming the group,
the namespace and what is allowed); the DaemonSet never routes a namespace to a group it may
not use (it falls back to the default group and says why).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import admission_review, pod
from tests.harness import InProcess, check_answer
from webhook import names
from webhook.app import create_app
from webhook.daemonset.agentconf import render_configs
from webhook.daemonset.routing import NamespaceInfo as AgentNamespace
from webhook.daemonset.routing import build_plan
from webhook.mutation import Injector, Mode, NamespaceInfo
from webhook.settings import Settings, load_settings

POLICY = {"team-*": ["team-logs"], "prod": ["prod-logs", "audit-logs"], "prod*": ["shared"]}


@pytest.fixture
def policy_settings() -> Settings:
    return load_settings(group_policy=POLICY)


def decide(
    settings: Settings, namespace: str, pod_group: str | None, ns_group: str | None = None
) -> tuple[bool, int, str]:
    annotations = {names.INJECT: "true"}
    if pod_group:
        annotations[names.GROUP_ID] = pod_group
    ns = NamespaceInfo(namespace, annotations={names.GROUP_ID: ns_group} if ns_group else {})
    decision = Injector(settings).decide(pod(annotations, namespace=namespace), Mode.POD, None, ns)
    return decision.allowed, decision.code, decision.message


@pytest.mark.parametrize(
    "namespace,group,allowed",
    [
        ("team-a", "team-logs", True),
        ("team-a", "example-group", True),  # the default group is always allowed
        ("team-a", "prod-logs", False),
        ("prod", "prod-logs", True),
        ("prod", "audit-logs", True),
        ("prod", "shared", True),  # "prod" matches both "prod" and "prod*": the union
        ("prod", "team-logs", False),
        ("production", "shared", True),
        ("production", "prod-logs", False),
        ("shop", "anything-goes", True),  # unlisted namespaces are not restricted
        ("TEAM-a", "other", True),  # globs are case-sensitive, as namespace names are
    ],
)
def test_pod_group_against_policy(
    policy_settings: Settings, namespace: str, group: str, allowed: bool
) -> None:
    ok, code, message = decide(policy_settings, namespace, group)
    assert ok is allowed
    if not allowed:
        assert code == 403
        assert f"log group {group!r}" in message
        assert f"namespace {namespace!r}" in message
        assert "allowed: " in message and "example-group" in message


def test_namespace_default_group_is_checked_too(policy_settings: Settings) -> None:
    """A namespace annotated with a group it may not use cannot route its pods there."""
    ok, code, message = decide(policy_settings, "team-a", None, ns_group="prod-logs")
    assert (ok, code) == (False, 403)
    assert "'prod-logs'" in message and "team-logs" in message
    ok, _, _ = decide(policy_settings, "team-a", None, ns_group="team-logs")
    assert ok


def test_denied_over_http_with_forbidden_status(policy_settings: Settings) -> None:
    client = InProcess(create_app(policy_settings))
    try:
        review = admission_review(
            pod({names.INJECT: "true", names.GROUP_ID: "prod-logs"}, namespace="team-a"),
            namespace="team-a",
        )
        answer = client.post("/mutate", json.dumps(review).encode())
        response = check_answer(answer.status_code, answer.content, review["request"]["uid"])
    finally:
        client.close()
    assert response is not None
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    assert "logaas group policy" in response["status"]["message"]
    assert "patch" not in response


def test_daemonset_never_routes_to_a_forbidden_group(policy_settings: Settings) -> None:
    namespaces = [
        AgentNamespace("team-a", annotations={names.GROUP_ID: "team-logs"}),
        AgentNamespace("team-b", annotations={names.GROUP_ID: "prod-logs"}),  # forbidden
        AgentNamespace("prod", annotations={names.GROUP_ID: "audit-logs"}),
        AgentNamespace("shop", annotations={names.GROUP_ID: "prod-logs"}),  # unrestricted
    ]
    plan = build_plan(namespaces, policy_settings)
    route = plan.route_of
    assert route("team-a") is not None and route("team-a").group_id == "team-logs"  # type: ignore[union-attr]
    assert route("team-b") == plan.default
    assert route("prod").group_id == "audit-logs"  # type: ignore[union-attr]
    assert route("shop").group_id == "prod-logs"  # type: ignore[union-attr]
    [warning] = plan.warnings
    assert "team-b" in warning and "'prod-logs'" in warning and "default log group" in warning
    # The rendered agent config agrees: team-b's records carry no prod-logs output of its own.
    configs = "\n".join(render_configs(policy_settings, plan).values())
    outputs = [block for block in configs.split("[OUTPUT]") if "default_group_id" in block]
    for block in outputs:
        if "prod-logs" in block:
            assert "team-b" not in block and "shop" in block


GROUPS = st.sampled_from(["team-logs", "prod-logs", "audit-logs", "shared", "example-group", "x"])
NAMESPACES = st.sampled_from(["team-a", "team-b2", "prod", "production", "shop", "prod-x", "teams"])


@settings(max_examples=300, deadline=None)
@given(namespace=NAMESPACES, group=GROUPS)
def test_webhook_and_daemonset_agree(namespace: str, group: str) -> None:
    """The same namespace/group pair is either allowed in both modes or in neither."""
    configured = load_settings(group_policy=POLICY)
    ok, _, _ = decide(configured, namespace, None, ns_group=group)
    plan = build_plan([AgentNamespace(namespace, annotations={names.GROUP_ID: group})], configured)
    routed = plan.route_of(namespace)
    assert routed is not None
    assert (routed.group_id == group) is ok
    assert bool(plan.warnings) is not ok
