"""Engine tests by effect: apply each patch the way kube-apiserver does, then look at the pod."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.builders import pod
from tests.fluentbit_schema import unknown_keys
from tests.kube import kubectl_patch, validate_strict
from webhook import fluentbit, names
from webhook.mutation import Injector, Mode, NamespaceInfo
from webhook.settings import Settings, load_settings

NATIVE_SIDECAR = {
    "name": "istio-proxy",
    "image": "istio/proxyv2",
    "restartPolicy": "Always",
}


def inject(
    injector: Injector,
    obj: dict[str, Any],
    mode: Mode = Mode.POD,
    ns: NamespaceInfo | None = None,
) -> dict[str, Any]:
    """Decide, require an injection, apply with kubectl, validate strictly, check idempotency."""
    decision = injector.decide(copy.deepcopy(obj), mode, obj["metadata"].get("namespace"), ns)
    assert decision.outcome == "injected", decision
    assert decision.allowed and decision.patch
    assert all(op["op"] == "add" for op in decision.patch), "only add ops"
    result = kubectl_patch(obj, decision.patch)
    validate_strict(result)
    again = injector.decide(copy.deepcopy(result), mode, obj["metadata"].get("namespace"), ns)
    assert (again.outcome, again.reason, again.patch) == ("skipped", "already-injected", [])
    return result


def sidecar_of(result: dict[str, Any], native: bool = True) -> dict[str, Any]:
    where = result["spec"]["initContainers" if native else "containers"]
    found = [c for c in where if c["name"] == names.SIDECAR_CONTAINER]
    assert len(found) == 1
    return found[0]


def config_of(result: dict[str, Any]) -> str:
    return str(result["metadata"]["annotations"][names.FLUENT_BIT_CONFIG])


def output_of(config: str) -> dict[str, str]:
    outputs = [dict(p) for s, p in fluentbit.parse(config) if s == "OUTPUT"]
    assert len(outputs) == 1
    return outputs[0]


def assert_contract(result: dict[str, Any], native: bool = True) -> None:
    """What every injected pod carries, per the contract."""
    meta, spec = result["metadata"], result["spec"]
    assert meta["annotations"][names.STATUS] == "injected"
    assert meta["annotations"][names.FLUENTBIT_EXCLUDE] == "true"
    config = config_of(result)
    assert unknown_keys(config) == []
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "sizeLimit" in volumes[names.LOGS_VOLUME]["emptyDir"]
    assert "emptyDir" in volumes[names.STATE_VOLUME]
    item = volumes[names.CONFIG_VOLUME]["downwardAPI"]["items"][0]
    assert item["fieldRef"]["fieldPath"] == "metadata.annotations['logaas/fluent-bit-config']"
    sidecar = sidecar_of(result, native)
    if native:
        assert sidecar["restartPolicy"] == "Always"
        assert spec["initContainers"][-1]["name"] == names.SIDECAR_CONTAINER
    else:
        assert "restartPolicy" not in sidecar
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert mounts[names.LOGS_VOLUME]["readOnly"] is True
    assert mounts[names.CONFIG_VOLUME]["readOnly"] is True
    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    if spec.get("resources"):
        # Pod-level resources: the sidecar shares the pod's budget.
        assert "resources" not in sidecar
    else:
        for kind in ("requests", "limits"):
            assert set(sidecar["resources"][kind]) == {"cpu", "memory"}
    assert sidecar["livenessProbe"]["httpGet"]["port"] == "logaas-http"
    env = {e["name"]: e["valueFrom"] for e in sidecar["env"]}
    for var in (names.ENV_CLIENT_ID, names.ENV_CLIENT_SECRET):
        assert env[var]["secretKeyRef"]["optional"] is True
        assert "${" + var + "}" in config
    assert {"POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME"} <= set(env)
    assert all("value" not in e for e in sidecar["env"]), "no literal env values"


@dataclass
class Case:
    id: str
    obj: dict[str, Any]
    mode: Mode = Mode.POD
    check: dict[str, Any] = field(default_factory=dict)


EXISTING_SPEC = {
    "initContainers": [{"name": "migrate", "image": "busybox"}, NATIVE_SIDECAR],
    "containers": [
        {
            "name": "web",
            "image": "nginx",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
        {"name": "worker", "image": "busybox"},
    ],
    "volumes": [{"name": "data", "emptyDir": {}}],
}

REPLICASET_POD = pod({"logaas/inject": "true", "a/b~c": "x"}, name=None)
REPLICASET_POD["metadata"].update(
    generateName="web-7d9f8b6c5d-",
    labels={"app": "web", "pod-template-hash": "7d9f8b6c5d"},
    ownerReferences=[
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-7d9f8b6c5d",
            "uid": "3b1f2a44-1c1d-4e55-9c3b-7d1e2f3a4b5c",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ],
)

JOB_POD = pod(
    {"logaas/inject": "true"},
    name="pi-x7k2p",
    spec={
        "restartPolicy": "Never",
        "containers": [{"name": "pi", "image": "perl", "command": ["perl", "-e", "print 1"]}],
    },
)

CASES = [
    Case("bare-pod-no-volumes-no-annotations", pod(None), Mode.NAMESPACE),
    Case("annotated-pod", pod({"logaas/inject": "true"})),
    Case(
        "existing-volumes-init-and-native-sidecars",
        pod({"logaas/inject": "true"}, spec=EXISTING_SPEC),
    ),
    Case("replicaset-generate-name", REPLICASET_POD),
    Case("job-pod", JOB_POD),
    Case("namespace-mode-explicit-true", pod({"logaas/inject": "true"}), Mode.NAMESPACE),
    Case("case-insensitive-true", pod({"logaas/inject": "True"})),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_injects_by_contract(injector: Injector, case: Case) -> None:
    before = copy.deepcopy(case.obj)
    result = inject(injector, case.obj, case.mode)
    assert_contract(result)
    # Only additions: every container, init container, volume and annotation the user had
    # is still there, unchanged apart from the log volume mount on app containers.
    spec_before, spec_after = before["spec"], result["spec"]
    assert spec_after["initContainers"][: len(spec_before.get("initContainers", []))] == (
        spec_before.get("initContainers", [])
    )
    for old, new in zip(spec_before["containers"], spec_after["containers"], strict=True):
        added = [m for m in new["volumeMounts"] if m not in old.get("volumeMounts", [])]
        assert added == [
            {"name": names.LOGS_VOLUME, "mountPath": "/var/log/app", "subPath": old["name"]}
        ]
        assert {k: v for k, v in new.items() if k != "volumeMounts"} == {
            k: v for k, v in old.items() if k != "volumeMounts"
        }
    for volume in spec_before.get("volumes", []):
        assert volume in spec_after["volumes"]
    for key, value in before["metadata"].get("annotations", {}).items():
        assert result["metadata"]["annotations"][key] == value
    # Every app container's logs are tailed under its own name.
    config = config_of(result)
    for container in spec_before["containers"]:
        assert f"Path             /logaas/logs/{container['name']}/*.log" in config


def test_job_sidecar_is_native_so_job_completes(injector: Injector) -> None:
    result = inject(injector, JOB_POD)
    assert result["spec"]["restartPolicy"] == "Never"
    assert sidecar_of(result)["restartPolicy"] == "Always"


def test_classic_sidecar_switch() -> None:
    injector = Injector(load_settings(sidecar={"native": False}))
    result = inject(injector, pod({"logaas/inject": "true"}, spec=EXISTING_SPEC))
    assert_contract(result, native=False)
    assert result["spec"]["containers"][0]["name"] == "web", "app stays the default container"
    assert result["spec"]["containers"][-1]["name"] == names.SIDECAR_CONTAINER
    assert len(result["spec"]["initContainers"]) == 2


def test_settings_shape_the_output(settings: Settings) -> None:
    custom = load_settings(
        logaas_address="https://logaas.example.test/",
        project_id="proj-1",
        group_id="grp-1",
        default_labels={"cluster": "prod"},
        credentials={"secret_name": "sa-key", "client_id_key": "id", "client_secret_key": "sec"},
        sidecar={"image": "registry.example/fb:1", "pull_policy": "Always"},
        log_path="/logs",
    )
    result = inject(Injector(custom), pod({"logaas/inject": "true"}))
    sidecar = sidecar_of(result)
    assert (sidecar["image"], sidecar["imagePullPolicy"]) == ("registry.example/fb:1", "Always")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in sidecar["env"][:2]}
    assert refs[names.ENV_CLIENT_ID] == {"name": "sa-key", "key": "id", "optional": True}
    assert refs[names.ENV_CLIENT_SECRET]["key"] == "sec"
    out = output_of(config_of(result))
    assert out["address"] == "https://logaas.example.test/"
    assert (out["default_project_id"], out["default_group_id"]) == ("proj-1", "grp-1")
    assert json.loads(out["default_labels"]) == {"cluster": "prod"}
    assert result["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/logs"


def test_annotations_override_namespace_defaults_override_settings(injector: Injector) -> None:
    ns = NamespaceInfo(
        "shop",
        annotations={
            names.GROUP_ID: "ns-group",
            names.PROJECT_ID: "ns-project",
            names.LABELS: '{"team":"shop","tier":"ns"}',
        },
    )
    result = inject(
        injector,
        pod({"logaas/inject": "true", names.GROUP_ID: "pod-group", names.LABELS: '{"tier":"pod"}'}),
        ns=ns,
    )
    out = output_of(config_of(result))
    assert out["default_group_id"] == "pod-group"
    assert out["default_project_id"] == "ns-project"
    assert json.loads(out["default_labels"]) == {
        "source": "kubernetes",
        "team": "shop",
        "tier": "pod",
    }


def test_per_pod_options(injector: Injector) -> None:
    spec = {
        "terminationGracePeriodSeconds": 12,
        "containers": [
            {"name": "api", "image": "x", "ports": [{"containerPort": 2020}]},
            {"name": "metrics", "image": "y"},
        ],
    }
    annotations = {
        "logaas/inject": "true",
        names.LOG_PATH: "/srv/logs/",
        names.LOG_FILES: "app-*.json",
        names.CONTAINERS: "api",
        names.PARSER: "json",
        names.MULTILINE: "java",
        names.SIDECAR_CPU: "10m",
        names.SIDECAR_MEMORY: "256Mi",
    }
    result = inject(injector, pod(annotations, spec=spec))
    api, metrics = result["spec"]["containers"]
    assert api["volumeMounts"] == [
        {"name": "logaas-logs", "mountPath": "/srv/logs", "subPath": "api"}
    ]
    assert "volumeMounts" not in metrics
    sidecar = sidecar_of(result)
    assert sidecar["resources"]["limits"] == {"cpu": "10m", "memory": "256Mi"}
    assert sidecar["resources"]["requests"] == {"cpu": "10m", "memory": "32Mi"}, "request <= limit"
    assert sidecar["ports"][0]["containerPort"] == 2021, "the app already uses 2020"
    sections = fluentbit.parse(config_of(result))
    service = dict(sections[0][1])
    assert (service["HTTP_Port"], service["Grace"], service["Parsers_File"]) == (
        "2021",
        "7",
        "/fluent-bit/etc/parsers.conf",
    )
    inputs = [dict(p) for s, p in sections if s == "INPUT"]
    assert [(i["Path"], i["multiline.parser"]) for i in inputs] == [
        ("/logaas/logs/api/app-*.json", "java")
    ]
    parsers = [dict(p) for s, p in sections if s == "FILTER" and dict(p)["Name"] == "parser"]
    assert parsers and parsers[0]["Parser"] == "json"


def test_existing_annotation_keys_are_escaped(injector: Injector) -> None:
    obj = pod(
        {"logaas/inject": "true", "example.com/a~b/c": "kept", names.FLUENTBIT_EXCLUDE: "false"}
    )
    result = inject(injector, obj)
    assert result["metadata"]["annotations"]["example.com/a~b/c"] == "kept"
    assert result["metadata"]["annotations"][names.FLUENTBIT_EXCLUDE] == "true"


@pytest.mark.parametrize(
    ("annotations", "mode", "reason"),
    [
        ({}, Mode.POD, "not-requested"),
        ({"logaas/inject": "false"}, Mode.POD, "opted-out"),
        ({"logaas/inject": "false"}, Mode.NAMESPACE, "opted-out"),
        ({names.STATUS: "injected"}, Mode.NAMESPACE, "already-injected"),
    ],
)
def test_not_injected(
    injector: Injector, annotations: dict[str, str], mode: Mode, reason: str
) -> None:
    decision = injector.decide(pod(annotations), mode, "shop")
    assert (decision.allowed, decision.reason, decision.patch) == (True, reason, [])


def test_sidecar_already_present_is_not_injected_again(injector: Injector) -> None:
    spec = {
        "containers": [
            {"name": "app", "image": "x"},
            {"name": names.SIDECAR_CONTAINER, "image": "y"},
        ]
    }
    decision = injector.decide(pod({"logaas/inject": "true"}, spec=spec), Mode.POD, "shop")
    assert (decision.reason, decision.patch) == ("already-injected", [])


@pytest.mark.parametrize(
    ("namespace", "spec_extra", "annotations_extra", "reason"),
    [
        ("kube-system", {}, {}, "excluded-namespace"),
        ("kube-public", {}, {}, "excluded-namespace"),
        ("kube-node-lease", {}, {}, "excluded-namespace"),
        ("logaas", {}, {}, "excluded-namespace"),  # the webhook's own namespace
        ("shop", {"hostNetwork": True}, {}, "host-network"),
        ("shop", {"nodeSelector": {"kubernetes.io/os": "windows"}}, {}, "windows-pod"),
        ("shop", {"os": {"name": "windows"}}, {}, "windows-pod"),
        ("shop", {}, {"kubernetes.io/config.mirror": "abc"}, "mirror-pod"),
    ],
)
def test_never_injected_with_a_warning(
    namespace: str, spec_extra: dict[str, Any], annotations_extra: dict[str, str], reason: str
) -> None:
    injector = Injector(load_settings(own_namespace="logaas"))
    obj = pod({"logaas/inject": "true", **annotations_extra}, namespace=namespace)
    obj["spec"].update(spec_extra)
    for mode in Mode:
        decision = injector.decide(obj, mode, namespace)
        assert (decision.allowed, decision.reason, decision.patch) == (True, reason, [])
        assert decision.warnings and "not injected" in decision.warnings[0]


def test_host_network_when_configured() -> None:
    injector = Injector(load_settings(inject_host_network=True))
    obj = pod({"logaas/inject": "true"})
    obj["spec"]["hostNetwork"] = True
    result = inject(injector, obj)
    # On the node's network the sidecar opens no port: two such pods on a node would collide.
    sidecar = sidecar_of(result)
    assert "ports" not in sidecar and "livenessProbe" not in sidecar
    service = dict(fluentbit.parse(config_of(result))[0][1])
    assert service["HTTP_Server"] == "Off" and "HTTP_Port" not in service
    assert unknown_keys(config_of(result)) == []


def test_namespace_labelled_disabled_wins(injector: Injector) -> None:
    ns = NamespaceInfo("shop", labels={names.INJECT: "disabled"})
    decision = injector.decide(pod({"logaas/inject": "true"}), Mode.POD, "shop", ns)
    assert decision.reason == "namespace-disabled" and not decision.patch


INVALID = [
    (names.INJECT, "yes", '"true" or "false"'),
    (names.GROUP_ID, "bad group!", "1-64 characters"),
    (names.GROUP_ID, "g" * 65, "1-64 characters"),
    (names.PROJECT_ID, "", "1-64 characters"),
    (names.LABELS, "not json", "JSON object"),
    (names.LABELS, '["a"]', "JSON object"),
    (names.LABELS, '{"a": 1}', "JSON object"),
    (names.LABELS, '{"a": "${LOGAAS_IAM_CLIENT_SECRET}"}', "JSON object"),
    (names.LABELS, '{"a": "line\\nbreak"}', "JSON object"),
    (names.LABELS, json.dumps({f"k{i}": "v" * 50 for i in range(80)}), "at most 3000"),
    (names.LOG_PATH, "relative/dir", "absolute"),
    (names.LOG_PATH, "/", "absolute"),
    (names.LOG_PATH, "/var/../etc", ".."),
    (names.LOG_PATH, "/var/log app", "letters"),
    (names.LOG_FILES, "../*.log", "glob"),
    (names.LOG_FILES, "a b", "glob"),
    (names.CONTAINERS, "app,ghost", "app"),
    (names.CONTAINERS, ",", "app"),
    (names.PARSER, "xml", "json, logfmt, none"),
    (names.MULTILINE, "cobol", "java, python, go, ruby"),
    (names.SIDECAR_CPU, "lots", "quantity"),
    (names.SIDECAR_CPU, "0", "quantity"),
    (names.SIDECAR_MEMORY, "1.2.3Gi", "quantity"),
    (names.SIDECAR_MEMORY, "-5Mi", "quantity"),
]


@pytest.mark.parametrize(
    ("key", "value", "accepted"), INVALID, ids=[f"{k}={v[:20]}" for k, v, _ in INVALID]
)
@pytest.mark.parametrize("mode", list(Mode))
def test_invalid_annotation_is_denied_with_a_clear_message(
    injector: Injector, key: str, value: str, accepted: str, mode: Mode
) -> None:
    annotations = {"logaas/inject": "true", key: value}
    decision = injector.decide(pod(annotations), mode, "shop")
    assert not decision.allowed and decision.code == 400 and decision.patch == []
    assert key in decision.message and accepted in decision.message
    assert repr(value)[:40].strip("'") in decision.message


def test_invalid_annotation_on_a_pod_that_did_not_ask_is_ignored(injector: Injector) -> None:
    decision = injector.decide(pod({names.GROUP_ID: "bad group!"}), Mode.POD, "shop")
    assert decision.allowed and decision.reason == "not-requested"


def test_invalid_namespace_annotation_is_named(injector: Injector) -> None:
    ns = NamespaceInfo("shop", annotations={names.GROUP_ID: "bad group"})
    decision = injector.decide(pod(None), Mode.NAMESPACE, "shop", ns)
    assert not decision.allowed and "namespace annotation logaas/group-id" in decision.message


def test_existing_log_volume_is_reused_and_tailed_once(injector: Injector) -> None:
    shared = [{"name": "logs", "mountPath": "/var/log/app/"}]
    spec = {
        "containers": [
            {"name": "app", "image": "x", "volumeMounts": shared},
            {"name": "helper", "image": "x", "volumeMounts": shared},
            {
                "name": "other",
                "image": "x",
                "volumeMounts": [{"name": "logs", "mountPath": "/var/log/app", "subPath": "o"}],
            },
        ],
        "volumes": [{"name": "logs", "emptyDir": {}}],
    }
    result = inject(injector, pod({"logaas/inject": "true"}, spec=spec))
    containers = result["spec"]["containers"]
    assert [c["volumeMounts"] for c in containers] == [
        shared,
        shared,
        spec["containers"][2]["volumeMounts"],
    ]
    extra = [m for m in sidecar_of(result)["volumeMounts"] if m["name"] == "logs"]
    assert extra == [
        {"name": "logs", "mountPath": "/logaas/shared/app", "readOnly": True},
        {"name": "logs", "mountPath": "/logaas/shared/other", "readOnly": True, "subPath": "o"},
    ]
    paths = [dict(p)["Path"] for s, p in fluentbit.parse(config_of(result)) if s == "INPUT"]
    assert paths == ["/logaas/shared/app/*.log", "/logaas/shared/other/*.log"]


def test_log_path_mounted_with_subpathexpr_is_denied(injector: Injector) -> None:
    mount = {"name": "v", "mountPath": "/var/log/app", "subPathExpr": "$(POD_NAME)"}
    spec = {
        "containers": [{"name": "app", "image": "x", "volumeMounts": [mount]}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    }
    decision = injector.decide(pod({"logaas/inject": "true"}, spec=spec), Mode.POD, "shop")
    assert (
        not decision.allowed
        and names.LOG_PATH in decision.message
        and "subPathExpr" in decision.message
    )


def test_reserved_volume_name_is_denied(injector: Injector) -> None:
    spec = {
        "containers": [{"name": "app", "image": "x"}],
        "volumes": [{"name": "logaas-state", "emptyDir": {}}],
    }
    decision = injector.decide(pod({"logaas/inject": "true"}, spec=spec), Mode.POD, "shop")
    assert not decision.allowed and "logaas-state" in decision.message


def test_group_policy() -> None:
    injector = Injector(load_settings(group_policy={"team-a*": ["grp-a"]}))
    allowed = injector.decide(
        pod({"logaas/inject": "true", names.GROUP_ID: "grp-a"}, namespace="team-a1"), Mode.POD
    )
    assert allowed.outcome == "injected"
    denied = injector.decide(
        pod({"logaas/inject": "true", names.GROUP_ID: "grp-b"}, namespace="team-a1"), Mode.POD
    )
    assert not denied.allowed and denied.code == 403
    assert "grp-b" in denied.message and "team-a1" in denied.message and "grp-a" in denied.message
    unlisted = injector.decide(
        pod({"logaas/inject": "true", names.GROUP_ID: "grp-b"}, namespace="other"), Mode.POD
    )
    assert unlisted.outcome == "injected"


def test_warnings(injector: Injector) -> None:
    ns = NamespaceInfo("shop")
    decision = injector.decide(
        pod({"logaas/inject": "true", "logaas/grup-id": "x"}), Mode.POD, "shop", ns
    )
    assert decision.outcome == "injected"
    assert any("logaas/grup-id" in w for w in decision.warnings)
    assert any(
        "logaas-credentials" in w and "logaas/credentials=sync" in w for w in decision.warnings
    )
    synced = NamespaceInfo("shop", annotations={names.CREDENTIALS: "sync"})
    quiet = injector.decide(pod({"logaas/inject": "true"}), Mode.POD, "shop", synced)
    assert quiet.warnings == []


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "pod",
        {"metadata": "x", "spec": {}},
        {"metadata": {}, "spec": {"containers": "nope"}},
        {
            "metadata": {"annotations": {"logaas/inject": 1}},
            "spec": {"containers": [{"name": "a"}]},
        },
        {"metadata": {}, "spec": {"containers": [{"image": "no-name"}]}},
        {"metadata": {}, "spec": {"containers": []}},
    ],
)
def test_malformed_pods_are_left_alone(injector: Injector, bad: Any) -> None:
    for mode in Mode:
        decision = injector.decide(bad, mode, "shop")
        assert decision.allowed and decision.patch == [] and decision.reason == "malformed-pod"


def qos_class(spec: dict[str, Any]) -> str:
    """Kubernetes' QoS class rules (pkg/apis/core/helper/qos), for cpu and memory."""
    containers = spec["containers"] + spec.get("initContainers", [])
    requests = [c.get("resources", {}).get("requests", {}) for c in containers]
    limits = [c.get("resources", {}).get("limits", {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        set(lim) >= {"cpu", "memory"}
        and all(req.get(r, lim[r]) == lim[r] for r in ("cpu", "memory"))
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def test_guaranteed_pod_stays_guaranteed(injector: Injector) -> None:
    exact = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}
    spec = {"containers": [{"name": "app", "image": "x", "resources": exact}]}
    obj = pod({"logaas/inject": "true"}, spec=spec)
    assert qos_class(obj["spec"]) == "Guaranteed"
    result = inject(injector, obj)
    assert qos_class(result["spec"]) == "Guaranteed"
    resources = sidecar_of(result)["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "200m", "memory": "128Mi"}
    burstable = inject(injector, pod({"logaas/inject": "true"}))
    assert qos_class(burstable["spec"]) == "Burstable"


def test_pod_level_resources_are_shared_by_the_sidecar(injector: Injector) -> None:
    spec = {
        "resources": {
            "requests": {"cpu": "1", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "100Mi"},
        },
        "containers": [
            {
                "name": "app",
                "image": "x",
                "resources": {"requests": {"cpu": "1", "memory": "100Mi"}},
            }
        ],
    }
    decision = injector.decide(pod({"logaas/inject": "true"}, spec=spec), Mode.POD, "shop")
    result = kubectl_patch(pod({"logaas/inject": "true"}, spec=spec), decision.patch)
    # Container requests already add up to the pod-level requests: any sidecar request would
    # make kube-apiserver refuse the pod, so the sidecar takes its share of the pod's budget.
    assert "resources" not in sidecar_of(result)


def test_config_lines_fit_fluent_bits_line_buffer() -> None:
    with pytest.raises(fluentbit.ConfigError, match="exceeds 4094"):
        fluentbit.render([("OUTPUT", [("default_labels", "x" * 4100)])])
    assert fluentbit.render([("OUTPUT", [("k", "x" * 4000)])]).count("\n") == 2
