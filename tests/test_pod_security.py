"""Pod Security Standards: injection never lowers a pod's level.

tests/pss.py evaluates the documented baseline and restricted rules one by one. A pod that
passes a level before injection passes it after (the patch applied with kube-apiserver's
semantics), for hand-written, generated and real-world (Kubernetes docs) pods, with the native
and the classic sidecar.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pss
from tests.builders import pod
from tests.harness import JSON, kubectl_patch_many
from tests.shared import corpus_pods, requires_corpus
from webhook import names
from webhook.mutation import Injector, Mode
from webhook.settings import load_settings

CONTAINER_SC = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
POD_SC = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_pod(**spec_extra: Any) -> JSON:
    obj = pod(
        {names.INJECT: "true"},
        spec={
            "securityContext": copy.deepcopy(POD_SC),
            "containers": [
                {"name": "app", "image": "nginx", "securityContext": copy.deepcopy(CONTAINER_SC)}
            ],
            **spec_extra,
        },
    )
    return obj


def inject_all(pods: list[JSON], native: bool = True) -> list[JSON]:
    injector = Injector(load_settings(sidecar={"native": native}))
    items = []
    for obj in pods:
        decision = injector.decide(obj, Mode.POD, "shop")
        assert decision.outcome == "injected", decision
        items.append((obj, decision.patch))
    return kubectl_patch_many(items)


# --- the evaluator follows the documented rules --------------------------------------------


VIOLATIONS: list[tuple[str, str, Any]] = [
    ("baseline", "spec.hostNetwork", lambda p: p["spec"].update(hostNetwork=True)),
    ("baseline", "spec.hostPID", lambda p: p["spec"].update(hostPID=True)),
    ("baseline", "privileged", lambda p: _csc(p).update(privileged=True)),
    ("baseline", "SYS_ADMIN", lambda p: _csc(p)["capabilities"].update(add=["SYS_ADMIN"])),
    (
        "baseline",
        "hostPath",
        lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
    ),
    (
        "baseline",
        "hostPort",
        lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
    ),
    (
        "baseline",
        "appArmorProfile",
        lambda p: _csc(p).update(appArmorProfile={"type": "Unconfined"}),
    ),
    (
        "baseline",
        "apparmor",
        lambda p: p["metadata"]["annotations"].update(
            {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
        ),
    ),
    ("baseline", "seLinuxOptions.type", lambda p: _csc(p).update(seLinuxOptions={"type": "spc_t"})),
    (
        "baseline",
        "seLinuxOptions.user",
        lambda p: p["spec"]["securityContext"].update(seLinuxOptions={"user": "root"}),
    ),
    ("baseline", "procMount", lambda p: _csc(p).update(procMount="Unmasked")),
    (
        "baseline",
        "Unconfined",
        lambda p: p["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    ),
    (
        "baseline",
        "sysctls",
        lambda p: p["spec"]["securityContext"].update(
            sysctls=[{"name": "kernel.msgmax", "value": "1"}]
        ),
    ),
    (
        "baseline",
        "windowsOptions.hostProcess",
        lambda p: _csc(p).update(windowsOptions={"hostProcess": True}),
    ),
    (
        "restricted",
        "volumes[n]",
        lambda p: p["spec"].update(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
    ),
    ("restricted", "allowPrivilegeEscalation", lambda p: _csc(p).pop("allowPrivilegeEscalation")),
    ("restricted", "runAsNonRoot", lambda p: p["spec"]["securityContext"].pop("runAsNonRoot")),
    ("restricted", "runAsNonRoot", lambda p: _csc(p).update(runAsNonRoot=False)),
    ("restricted", "runAsUser: 0", lambda p: _csc(p).update(runAsUser=0)),
    ("restricted", "seccompProfile", lambda p: p["spec"]["securityContext"].pop("seccompProfile")),
    (
        "restricted",
        "drop must include ALL",
        lambda p: _csc(p)["capabilities"].update(drop=["NET_RAW"]),
    ),
    ("restricted", "add: CHOWN", lambda p: _csc(p)["capabilities"].update(add=["CHOWN"])),
    (
        "restricted",
        "initContainers[init]",
        lambda p: p["spec"].update(initContainers=[{"name": "init", "image": "x"}]),
    ),
]


def _csc(obj: JSON) -> JSON:
    sc: JSON = obj["spec"]["containers"][0]["securityContext"]
    return sc


def test_restricted_reference_pod_passes() -> None:
    assert pss.violations(restricted_pod(), "restricted") == []
    # Container-level settings instead of pod-level ones are as good.
    obj = restricted_pod()
    del obj["spec"]["securityContext"]
    _csc(obj).update(POD_SC)
    assert pss.violations(obj, "restricted") == []


@pytest.mark.parametrize(
    "level,expected,break_it", VIOLATIONS, ids=[f"{lvl}-{exp}" for lvl, exp, _ in VIOLATIONS]
)
def test_each_documented_rule_is_enforced(level: str, expected: str, break_it: Any) -> None:
    obj = restricted_pod()
    break_it(obj)
    found = pss.violations(obj, "restricted")
    assert any(expected in v for v in found), found
    assert pss.passes(obj, "baseline") is (level == "restricted")


def test_windows_pods_are_exempt_from_linux_only_restricted_rules() -> None:
    obj = pod(
        spec={
            "os": {"name": "windows"},
            "securityContext": {"runAsNonRoot": True},
            "containers": [{"name": "app", "image": "x"}],
        }
    )
    assert pss.violations(obj, "restricted") == []


# --- injection keeps the level ------------------------------------------------------------


@pytest.mark.parametrize("native", [True, False], ids=["native-sidecar", "classic-sidecar"])
def test_restricted_pods_stay_restricted(native: bool) -> None:
    pods = [
        restricted_pod(),
        restricted_pod(
            initContainers=[
                {"name": "init", "image": "busybox", "securityContext": copy.deepcopy(CONTAINER_SC)}
            ]
        ),
        restricted_pod(volumes=[{"name": "cache", "emptyDir": {}}]),
    ]
    only_containers = restricted_pod()
    del only_containers["spec"]["securityContext"]
    _csc(only_containers).update(
        runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}
    )
    pods.append(only_containers)
    for before, after in zip(pods, inject_all(pods, native), strict=True):
        assert pss.violations(before, "restricted") == []
        assert pss.violations(after, "restricted") == []
        sidecar = next(c for _, c in pss.containers(after) if c["name"] == names.SIDECAR_CONTAINER)
        # The sidecar is restricted on its own, whatever the pod-level settings say.
        alone = {"spec": {"containers": [sidecar], "volumes": after["spec"]["volumes"]}}
        assert pss.violations(alone, "restricted") == []


@st.composite
def restricted_pods(draw: st.DrawFn) -> JSON:
    """Restricted pods whose settings sit at the pod level, the container level, or both."""
    pod_level = draw(st.booleans())
    spec: JSON = {"containers": []}
    if pod_level:
        spec["securityContext"] = {
            "runAsNonRoot": True,
            "seccompProfile": {"type": draw(st.sampled_from(["RuntimeDefault", "Localhost"]))},
        }
        if spec["securityContext"]["seccompProfile"]["type"] == "Localhost":
            spec["securityContext"]["seccompProfile"]["localhostProfile"] = "profile.json"
        if draw(st.booleans()):
            spec["securityContext"]["runAsUser"] = draw(st.integers(1, 65535))
    for index in range(draw(st.integers(1, 3))):
        sc: JSON = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        if draw(st.booleans()):
            sc["capabilities"]["add"] = ["NET_BIND_SERVICE"]
        if not pod_level or draw(st.booleans()):
            sc["runAsNonRoot"] = True
            sc["seccompProfile"] = {"type": "RuntimeDefault"}
        if draw(st.booleans()):
            sc["readOnlyRootFilesystem"] = draw(st.booleans())
        spec["containers"].append({"name": f"c{index}", "image": "app", "securityContext": sc})
    if draw(st.booleans()):
        spec["volumes"] = [{"name": "v", draw(st.sampled_from(sorted(pss.RESTRICTED_VOLUMES))): {}}]
    return pod({names.INJECT: "true"}, spec=spec)


def test_generated_restricted_pods_stay_restricted() -> None:
    pods: list[JSON] = []

    @settings(
        max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(restricted_pods())
    def collect(obj: JSON) -> None:
        assert pss.violations(obj, "restricted") == []
        pods.append(obj)

    collect()
    for before, after in zip(pods, inject_all(pods), strict=True):
        assert pss.violations(after, "restricted") == [], before


@requires_corpus
def test_real_world_pods_keep_their_level() -> None:
    injector = Injector(load_settings())
    items, sources = [], []
    for source, obj in corpus_pods(opt_in=True):
        decision = injector.decide(obj, Mode.POD, "shop")
        if decision.patch:
            items.append((obj, decision.patch))
            sources.append(source)
    results = kubectl_patch_many(items)
    levels = {"baseline": 0, "restricted": 0}
    for source, (before, _), after in zip(sources, items, results, strict=True):
        for level in levels:
            if pss.passes(before, level):
                levels[level] += 1
                assert pss.violations(after, level) == [], f"{source} lost {level}"
    assert levels["baseline"] > 100  # most documentation examples are baseline
    # (none of them is restricted as published: the generated pods above cover that level)
