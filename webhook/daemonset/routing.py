"""Which namespaces the node agent reads, and where each one's records go.

Pure: namespaces (name, labels, annotations) and Settings in, a Plan out.

Fluent Bit 3.2 limits shape the plan:
- a classic-format line is read with a 4096-byte buffer (FLB_CF_BUF_SIZE), so no value may
  list thousands of namespaces: long lists are split over several lines (repeatable keys,
  several outputs, several rewrite rules), each within VALUE_BUDGET;
- the router's bitmask holds 256 outputs per process (FLB_ROUTES_MASK_ELEMENTS = 4 x 64 bits,
  made dynamic only in 4.0): past that, outputs silently receive nothing. A plan with more
  routes than MAX_OUTPUTS runs extra Fluent Bit processes ("shards") in the agent pod; the
  primary forwards their records over localhost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from webhook import names
from webhook.annotations import AnnotationError, PolicyError, check_group_policy, namespace_defaults
from webhook.mutation import NamespaceInfo
from webhook.settings import Settings

# Longest value we write on one classic-format line (buffer 4096 minus key, indent, newline).
VALUE_BUDGET = 3800
# Outputs one Fluent Bit 3.2 process routes to (hard limit 256, some headroom kept).
MAX_OUTPUTS = 250
CONTAINERS_DIR = "/var/log/containers"
# DNS-1123 label: what Kubernetes accepts as a namespace name.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class Route:
    """One LogaaS destination: what a `logaas` output's default_* keys say."""

    group_id: str
    project_id: str
    labels: tuple[tuple[str, str], ...]

    @property
    def labels_json(self) -> str:
        return json.dumps(dict(self.labels), separators=(",", ":"), ensure_ascii=False)


def default_route(settings: Settings) -> Route:
    return Route(
        settings.group_id, settings.project_id, tuple(sorted(settings.default_labels.items()))
    )


@dataclass(frozen=True)
class NamespacePlan:
    name: str
    excluded: bool  # left to the sidecar webhook: labelled enabled (and injectable)
    route: Route
    warning: str | None = None


@dataclass(frozen=True)
class Output:
    """One `logaas` output for a route: the namespaces it takes, in the process that runs it."""

    route: Route
    namespaces: tuple[str, ...]
    process: int


@dataclass
class Plan:
    default: Route
    namespaces: dict[str, NamespacePlan]
    excluded: list[str]
    outputs: list[Output]
    processes: int
    agent_namespace: str
    agent_name: str

    @property
    def warnings(self) -> list[str]:
        return [p.warning for p in self.namespaces.values() if p.warning]

    def namespaces_of(self, process: int) -> list[str]:
        return sorted(n for o in self.outputs if o.process == process for n in o.namespaces)

    def route_of(self, namespace: str) -> Route | None:
        """Where the agent sends this namespace's records; None when it does not read it."""
        plan = self.namespaces.get(namespace)
        if plan is None:
            return self.default
        return None if plan.excluded else plan.route


def valid_namespace_name(name: str) -> bool:
    return bool(_NAMESPACE.match(name))


def plan_namespace(ns: NamespaceInfo, settings: Settings) -> NamespacePlan:
    default = default_route(settings)
    enabled = ns.labels.get(names.INJECT) == names.NS_ENABLED
    # Namespaces the webhook never injects stay with the agent whatever their label says.
    excluded = enabled and ns.name not in settings.never_injected
    try:
        group, project, labels = namespace_defaults(ns.annotations, settings)
        check_group_policy(group, ns.name, settings)
    except (AnnotationError, PolicyError) as err:
        return NamespacePlan(
            ns.name, excluded, default, f"namespace {ns.name}: {err}; using the default log group"
        )
    return NamespacePlan(ns.name, excluded, Route(group, project, tuple(sorted(labels.items()))))


def pack(items: Iterable[str], budget: int, overhead: int = 1) -> list[list[str]]:
    """Split items, in order, into runs whose joined length (item + overhead each) fits."""
    runs: list[list[str]] = []
    size = budget + 1
    for item in items:
        cost = len(item) + overhead
        if size + cost > budget or not runs:
            runs.append([])
            size = 0
        runs[-1].append(item)
        size += cost
    return runs


def alternation(namespaces: Sequence[str]) -> str:
    """Regex alternation of namespace names (DNS labels: no regex metacharacters)."""
    return "(?:" + "|".join(namespaces) + ")"


# Fixed parts of each pattern, so pack() can budget the namespace lists.
PATH_PREFIX_RE = "^" + CONTAINERS_DIR + "/[^_]+_"
NAMESPACE_RUN_BUDGET = VALUE_BUDGET - 120


def build_plan(
    namespaces: Iterable[NamespaceInfo],
    settings: Settings,
    agent_namespace: str = "logaas",
    prefix: str = "logaas",
) -> Plan:
    default = default_route(settings)
    plans: dict[str, NamespacePlan] = {}
    for ns in namespaces:
        if not valid_namespace_name(ns.name):
            continue  # cannot exist in a cluster; never written into a config
        plans[ns.name] = plan_namespace(ns, settings)

    excluded = sorted(n for n, p in plans.items() if p.excluded)
    by_route: dict[Route, list[str]] = {}
    for name in sorted(plans):
        p = plans[name]
        if not p.excluded and p.route != default:
            by_route.setdefault(p.route, []).append(name)

    # Each route gets one output per run of namespaces that fits a Match_Regex line.
    pieces = [
        (route, tuple(run))
        for route in sorted(by_route)
        for run in pack(by_route[route], NAMESPACE_RUN_BUDGET)
    ]
    processes = 1
    while (MAX_OUTPUTS - 1 - (processes - 1)) + MAX_OUTPUTS * (processes - 1) < len(pieces):
        processes += 1
    primary_room = MAX_OUTPUTS - 1 - (processes - 1)
    outputs: list[Output] = []
    for index, (route, run) in enumerate(pieces):
        process = 0 if index < primary_room else 1 + (index - primary_room) // MAX_OUTPUTS
        outputs.append(Output(route, run, process))
    return Plan(
        default=default,
        namespaces=plans,
        excluded=excluded,
        outputs=outputs,
        processes=processes,
        agent_namespace=agent_namespace,
        agent_name=f"{prefix}-agent",
    )
