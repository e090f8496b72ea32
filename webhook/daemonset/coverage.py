"""Who ships each pod's logs: the sidecar, the node agent, nobody, or both.

Pure: pods, namespaces, Settings and the agent's rendered configs in; one verdict per pod.
The agent side is evaluated on the rendered Fluent Bit configs themselves (see `simulate`),
so a report reflects what the agent would really do, not what the plan meant it to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook import fluentbit, names
from webhook.annotations import AnnotationError, PolicyError, namespace_defaults, parse_inject
from webhook.daemonset.simulate import EXCLUDE_ANNOTATION, Agent, container_log_path
from webhook.mutation import NamespaceInfo, is_injected, targets_windows
from webhook.settings import Settings

SIDECAR = "sidecar"
DAEMONSET = "daemonset"
OPTED_OUT = "opted-out"
NONE = "none"
BOTH = "both"
PROBLEMS = (NONE, BOTH)
# Any 64-hex container id: the agent's globs and regexes never look at it.
_CONTAINER_ID = "0" * 64


@dataclass(frozen=True)
class PodCoverage:
    namespace: str
    name: str
    verdict: str
    group_id: str  # where its logs go ("" when nobody ships them)
    detail: str


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "on", "yes", "1")


def sidecar_group(pod: Mapping[str, Any], ns: NamespaceInfo, settings: Settings) -> str:
    """The group an injected pod's sidecar sends to: read back from its rendered config."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(names.FLUENT_BIT_CONFIG)
    if isinstance(text, str):
        try:
            for kind, pairs in fluentbit.parse(text):
                values = dict(pairs)
                if kind == "OUTPUT" and values.get("Name") == "logaas":
                    return values.get("default_group_id", "")
        except fluentbit.ConfigError:
            pass
    group = annotations.get(names.GROUP_ID)
    if isinstance(group, str):
        return group
    try:
        return namespace_defaults(ns.annotations, settings)[0]
    except (AnnotationError, PolicyError):
        return settings.group_id


def classify(
    pod: Mapping[str, Any],
    ns: NamespaceInfo,
    settings: Settings,
    agent: Agent,
    agent_namespace: str,
    agent_name: str,
) -> PodCoverage:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = str(meta.get("name", ""))
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or [] if isinstance(c, dict)]
    sidecar = is_injected(pod)

    deliveries = []
    if not targets_windows(spec):
        path = container_log_path(
            name, ns.name, containers[0] if containers else "app", _CONTAINER_ID
        )
        deliveries = agent.deliveries(path, annotations)

    def result(verdict: str, group: str, detail: str) -> PodCoverage:
        return PodCoverage(ns.name, name, verdict, group, detail)

    if sidecar and deliveries:
        return result(BOTH, deliveries[0].group_id, "sidecar and node agent both ship it")
    if sidecar:
        return result(SIDECAR, sidecar_group(pod, ns, settings), "")
    if len(deliveries) > 1:
        groups = ",".join(d.group_id for d in deliveries)
        return result(BOTH, groups, f"node agent ships it {len(deliveries)} times")
    if deliveries:
        return result(DAEMONSET, deliveries[0].group_id, "")

    # Nobody ships it: the user's choice, or a gap.
    if ns.name == agent_namespace and name.startswith(agent_name + "-"):
        return result(OPTED_OUT, "", "the node agent's own logs")
    try:
        said_false = parse_inject(annotations[names.INJECT]) is False
    except (KeyError, AnnotationError):
        said_false = False
    if said_false:
        return result(OPTED_OUT, "", f'annotated {names.INJECT}: "false"')
    if _truthy(annotations.get(EXCLUDE_ANNOTATION)):
        return result(OPTED_OUT, "", f'annotated {EXCLUDE_ANNOTATION}: "true"')
    if targets_windows(spec):
        return result(NONE, "", "Windows pod: the node agent runs on Linux nodes only")
    if ns.labels.get(names.INJECT) == names.NS_ENABLED:
        why = "namespace labelled enabled (left to the sidecar) but the pod has no sidecar"
        if spec.get("hostNetwork") is True:
            why += " (hostNetwork pods are not injected)"
        else:
            why += " (created before the label or while the webhook was down? recreate it)"
        return result(NONE, "", why)
    return result(NONE, "", "not read by the node agent")


def report(
    pods: Iterable[Mapping[str, Any]],
    namespaces: Iterable[NamespaceInfo],
    settings: Settings,
    configs: Mapping[str, str],
    agent_namespace: str,
    agent_name: str,
) -> list[PodCoverage]:
    by_name = {ns.name: ns for ns in namespaces}
    agent = Agent(configs)
    out: list[PodCoverage] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace", "default"))
        ns = by_name.get(namespace, NamespaceInfo(namespace))
        out.append(classify(pod, ns, settings, agent, agent_namespace, agent_name))
    out.sort(key=lambda c: (c.namespace, c.name))
    return out


def pods_from_documents(docs: Iterable[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("items"), list):
            out.extend(pods_from_documents(doc["items"]))
        elif doc.get("kind", "Pod") == "Pod" and isinstance(doc.get("spec"), dict):
            out.append(doc)
    return out


def format_report(rows: list[PodCoverage]) -> str:
    header = ("POD", "SHIPPED-BY", "GROUP", "DETAIL")
    table = [header] + [
        (f"{r.namespace}/{r.name}", r.verdict, r.group_id or "-", r.detail) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        for row in table
    ]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no pods"
    return "\n".join(line.rstrip() for line in lines) + f"\n\n{len(rows)} pods ({summary})\n"
