"""DaemonSet mode, rendering: strict-valid objects, Fluent Bit 3.2-valid configs, routing
evaluated on the rendered configs (every tag to exactly one output), limits at scale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fluentbit_schema import unknown_keys
from tests.kube import validate_strict
from webhook import fluentbit, names
from webhook.daemonset import agentconf
from webhook.daemonset.render import CHECKSUM, render_objects, to_yaml
from webhook.daemonset.routing import MAX_OUTPUTS, build_plan
from webhook.daemonset.simulate import Agent, container_log_path, tag_matches
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings, load_settings

ENABLED = {names.INJECT: names.NS_ENABLED}
# Fluent Bit 3.2 reads a classic config line with fgets(buf, 4096): 4094 characters of content.
FLB_LINE_LIMIT = 4094
ROOT = Path(__file__).resolve().parent.parent


def ns(name: str, ns_labels: dict[str, str] | None = None, **annotations: str) -> NamespaceInfo:
    return NamespaceInfo(
        name, ns_labels or {}, {f"logaas/{k.replace('_', '-')}": v for k, v in annotations.items()}
    )


def scale_namespaces(
    total: int = 2000, grouped: int = 1000, enabled: int = 300
) -> list[NamespaceInfo]:
    """A big cluster: long names, half with their own group, some left to the sidecar."""
    out = []
    for i in range(total):
        name = f"team-{i:04d}-service-namespace-with-a-long-name"
        if i < enabled:
            out.append(ns(name, ENABLED))
        elif i < enabled + grouped:
            out.append(ns(name, group_id=f"group-{i:04d}", project_id=f"proj-{i % 7}"))
        else:
            out.append(ns(name))
    return out


def path(pod: str, namespace: str, container: str = "app") -> str:
    return container_log_path(pod, namespace, container, "a" * 64)


def deliveries(
    agent: Agent, namespace: str, annotations: dict[str, str] | None = None
) -> list[Any]:
    return agent.deliveries(path("web-5d9c7-abcde", namespace), annotations or {})


@pytest.fixture
def mixed() -> list[NamespaceInfo]:
    return [
        ns("default"),
        ns("apps", ENABLED),
        ns("payments", group_id="payments-logs", labels='{"team":"pay"}'),
        ns("billing", group_id="payments-logs", labels='{"team":"pay"}'),
        ns("search", group_id="search", project_id="proj-2"),
        ns("broken", group_id="not_valid!"),
        ns("kube-system", ENABLED),  # never injected: stays with the agent
        ns("logaas"),
    ]


def test_render_objects_are_strict_valid(settings: Settings, mixed: list[NamespaceInfo]) -> None:
    objects, plan = render_objects(settings, mixed, "logaas")
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
    ]
    for obj in objects:
        validate_strict(obj)
    assert plan.warnings and "broken" in plan.warnings[0]


def test_sharded_render_is_strict_valid_and_keys_known(settings: Settings) -> None:
    objects, plan = render_objects(settings, scale_namespaces(), "logaas")
    assert plan.processes > 1
    for obj in objects:
        validate_strict(obj)
    data = objects[3]["data"]
    assert set(data) == {"fluent-bit.conf", "parsers.conf"} | {
        f"shard-{p}.conf" for p in range(1, plan.processes)
    }
    for name, text in data.items():
        if name != "parsers.conf":
            assert unknown_keys(text) == [], name
    containers = objects[4]["spec"]["template"]["spec"]["containers"]
    assert [c["args"][-1] for c in containers] == [
        f"/fluent-bit/etc/{agentconf.shard_config(p)}" for p in range(plan.processes)
    ]
    ports = [c["ports"][0]["containerPort"] for c in containers]
    assert len(set(ports)) == len(ports)


def test_every_rendered_key_exists_in_fluent_bit_schema(
    settings: Settings, mixed: list[NamespaceInfo]
) -> None:
    objects, _ = render_objects(settings, mixed, "logaas")
    text = objects[3]["data"]["fluent-bit.conf"]
    assert unknown_keys(text) == []
    # the check itself can fail
    assert unknown_keys(text.replace("Rotate_Wait", "Rotate_Wiat")) == ["INPUT/tail: rotate_wiat"]


def test_agent_requirements(settings: Settings, mixed: list[NamespaceInfo]) -> None:
    objects, _ = render_objects(settings, mixed, "logaas")
    sections = fluentbit.parse(objects[3]["data"]["fluent-bit.conf"])
    tail = dict(next(p for k, p in sections if k == "INPUT"))
    assert tail["Path"] == "/var/log/containers/*.log"
    assert tail["multiline.parser"] == "docker, cri"
    assert tail["DB"].startswith(agentconf.STATE_DIR)
    assert tail["storage.type"] == "filesystem"
    for key in ("Rotate_Wait", "Skip_Long_Lines", "Mem_Buf_Limit"):
        assert key in tail
    excludes = tail["Exclude_Path"].split(",")
    assert "/var/log/containers/logaas-agent-*_logaas_*.log" in excludes
    assert "/var/log/containers/*_apps_*.log" in excludes
    assert not any("kube-system" in e for e in excludes)
    kube = dict(next(p for k, p in sections if k == "FILTER" and dict(p)["Name"] == "kubernetes"))
    assert kube["K8S-Logging.Exclude"] == "On"
    service = dict(sections[0][1])
    assert service["HTTP_Server"] == "On" and service["Health_Check"] == "On"
    assert service["storage.path"].startswith(agentconf.STATE_DIR)

    ds = objects[4]["spec"]["template"]["spec"]
    assert ds["tolerations"] == [{"operator": "Exists"}]
    assert ds["priorityClassName"] == "system-node-critical"
    mounts = {m["name"]: m for m in ds["containers"][0]["volumeMounts"]}
    assert mounts["varlog"] == {"name": "varlog", "mountPath": "/var/log", "readOnly": True}
    volumes = {v["name"]: v for v in ds["volumes"]}
    assert volumes["state"]["hostPath"]["path"] != "/var/log"
    assert not volumes["state"]["hostPath"]["path"].startswith("/var/log/")
    container = ds["containers"][0]
    assert container["livenessProbe"]["httpGet"]["port"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    env = {e["name"]: e for e in container["env"]}
    for var, key in (
        (names.ENV_CLIENT_ID, "client-id"),
        (names.ENV_CLIENT_SECRET, "client-secret"),
    ):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "logaas-credentials", "key": key, "optional": True}
    outputs = [dict(p) for k, p in sections if k == "OUTPUT"]
    assert all(o["iam_client_id"] == "${LOGAAS_IAM_CLIENT_ID}" for o in outputs)
    assert all(o["iam_client_secret"] == "${LOGAAS_IAM_CLIENT_SECRET}" for o in outputs)


def test_cluster_role_is_read_only_pods_and_namespaces(settings: Settings) -> None:
    objects, _ = render_objects(settings, (), "logaas")
    role = objects[1]
    assert role["metadata"]["name"] == "logaas-agent"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces", "pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = objects[2]
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "logaas-agent",
        "namespace": "logaas",
    }


def test_routing_on_rendered_config(settings: Settings, mixed: list[NamespaceInfo]) -> None:
    objects, _ = render_objects(settings, mixed, "logaas")
    agent = Agent(objects[3]["data"])

    def groups(namespace: str, **annotations: str) -> list[tuple[str, str, str]]:
        return [
            (d.group_id, d.project_id, d.labels) for d in deliveries(agent, namespace, annotations)
        ]

    default = ("example-group", "example-project", '{"source":"kubernetes"}')
    assert groups("default") == [default]
    assert groups("never-seen-before") == [default]  # new namespaces: covered at once
    assert groups("apps") == []  # left to the sidecar
    assert groups("kube-system") == [default]
    pay = ("payments-logs", "example-project", '{"source":"kubernetes","team":"pay"}')
    assert groups("payments") == [pay]
    assert groups("billing") == [pay]
    assert groups("search") == [("search", "proj-2", '{"source":"kubernetes"}')]
    assert groups("broken") == [default]
    assert groups("default", **{"fluentbit.io/exclude": "true"}) == []  # injected pods
    # the agent's own pods, and only those
    assert agent.deliveries(path("logaas-agent-x1y2z", "logaas", "fluent-bit")) == []
    assert groups("logaas") == [default]


def test_group_policy_sends_forbidden_groups_to_default(settings: Settings) -> None:
    strict = load_settings(group_policy={"team-*": ["team-logs"]})
    plan = build_plan(
        [ns("team-a", group_id="team-logs"), ns("team-b", group_id="secret-logs")], strict
    )
    assert plan.route_of("team-a") is not None and plan.route_of("team-a").group_id == "team-logs"
    assert plan.route_of("team-b") == plan.default
    assert any("team-b" in w and "secret-logs" in w for w in plan.warnings)


def _outputs(configs: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for name, text in configs.items():
        if name == "parsers.conf":
            continue
        out[name] = [
            {k: v for k, v in pairs} for kind, pairs in fluentbit.parse(text) if kind == "OUTPUT"
        ]
    return out


def test_every_tag_matches_exactly_one_output_per_process(settings: Settings) -> None:
    """Match/Match_Regex evaluated on every tag a process can see: exactly one output each."""
    namespaces = scale_namespaces(600, 400, 50)
    objects, plan = render_objects(settings, namespaces, "logaas")
    by_process = _outputs(objects[3]["data"])
    assert plan.processes == 2
    owner = {n: o.process for o in plan.outputs for n in o.namespaces}
    tag = {n.name: agentconf.tag_of_path(path("web-1", n.name)) for n in namespaces}
    for process in range(plan.processes):
        outputs = by_process[agentconf.shard_config(process)]
        assert len(outputs) <= MAX_OUTPUTS
        seen = [agentconf.shard_tag(process) + tag[n] for n, p in owner.items() if p == process]
        if process == 0:
            seen += [tag[n.name] for n in namespaces if plan.route_of(n.name) is not None]
            seen += [agentconf.shard_tag(p) + tag[n] for n, p in owner.items() if p != 0]
        assert seen
        for t in seen:
            matching = [o["Alias"] for o in outputs if tag_matches(t, list(o.items()))]
            assert len(matching) == 1, (process, t, matching)
    # and the check can fail: a catch-all output would overlap every route
    overlapping = [*by_process["fluent-bit.conf"], {"Alias": "all", "Match": "*"}]
    t = agentconf.shard_tag(0) + tag[next(n for n, p in owner.items() if p == 0)]
    assert len([o for o in overlapping if tag_matches(t, list(o.items()))]) == 2


def test_scale_every_namespace_shipped_once_to_its_group(settings: Settings) -> None:
    namespaces = scale_namespaces()
    objects, plan = render_objects(settings, namespaces, "logaas")
    configs = objects[3]["data"]
    assert plan.processes == 5  # 700 routes need 3 more processes (256 outputs per process)
    for name, text in configs.items():
        longest = max(len(line) for line in text.splitlines())
        assert longest <= FLB_LINE_LIMIT, (name, longest)
    agent = Agent(configs)
    for n in namespaces[::7] + namespaces[295:305] + namespaces[1295:1305]:
        got = deliveries(agent, n.name)
        route = plan.route_of(n.name)
        if route is None:
            assert got == [], n.name
            continue
        assert len(got) == 1, n.name
        assert (got[0].group_id, got[0].project_id) == (route.group_id, route.project_id), n.name
        if route != plan.default:
            assert got[0].group_id == n.annotations["logaas/group-id"]


def test_many_sidecar_namespaces_overflow_into_grep(settings: Settings) -> None:
    namespaces = scale_namespaces(1500, 0, 1200)
    objects, plan = render_objects(settings, namespaces, "logaas")
    text = objects[3]["data"]["fluent-bit.conf"]
    assert "Name                kubernetes" in text
    greps = [p for k, p in fluentbit.parse(text) if k == "FILTER" and dict(p)["Name"] == "grep"]
    assert greps, "the excluded list cannot fit one Exclude_Path line"
    agent = Agent(objects[3]["data"])
    for n in namespaces[::13]:
        expected = 0 if plan.route_of(n.name) is None else 1
        assert len(deliveries(agent, n.name)) == expected, n.name


def test_checksum_changes_only_with_config(settings: Settings) -> None:
    base = [ns("a"), ns("b", group_id="g-b")]
    first, _ = render_objects(settings, base)
    same, _ = render_objects(settings, [*base, ns("c", team="x")])  # not a logaas/* that matters
    other, _ = render_objects(settings, [*base, ns("c", group_id="g-c")])

    def checksum(objects: list[dict[str, Any]]) -> str:
        value: str = objects[4]["spec"]["template"]["metadata"]["annotations"][CHECKSUM]
        return value

    assert checksum(first) == checksum(same)
    assert checksum(first) != checksum(other)


def test_no_secret_in_configmap(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("credentials:\n  secret_name: my-creds\n")
    out = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "daemonset", "render", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    docs = list(yaml.safe_load_all(out))
    cm = docs[3]
    assert "my-creds" not in yaml.safe_dump(cm)
    env = docs[4]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"]["name"] == "my-creds"


def test_cli_render_reads_kubectl_namespace_list(tmp_path: Path) -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "shop", "labels": ENABLED},
            },
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "ops", "annotations": {"logaas/group-id": "ops-logs"}},
            },
        ],
    }
    file = tmp_path / "ns.yaml"
    file.write_text(yaml.safe_dump(listing))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "daemonset",
            "render",
            "--namespaces",
            str(file),
            "-n",
            "observability",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
    ]
    assert docs[0]["metadata"]["namespace"] == "observability"
    conf = docs[3]["data"]["fluent-bit.conf"]
    assert "/var/log/containers/*_shop_*.log" in conf
    assert "default_group_id         ops-logs" in conf
    agent = Agent(docs[3]["data"])
    assert [d.group_id for d in deliveries(agent, "ops")] == ["ops-logs"]
    assert to_yaml(docs) == proc.stdout  # stable output: the chart and GitOps diff it
