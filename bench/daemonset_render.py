"""Render the DaemonSet agent for a big cluster: 2,000 namespaces, 1,000 with their own log
group, 300 left to the sidecar. Prints CPU time of a render (plan, configs, objects), of a
reconcile pass without its API calls (render and change digests) and of the YAML output.
Not a test: figures, not assertions."""

from __future__ import annotations

import time

from webhook import names
from webhook.daemonset.reconcile import _digest
from webhook.daemonset.render import render_objects, to_yaml
from webhook.daemonset.routing import NamespaceInfo
from webhook.settings import load_settings


def cluster(total: int = 2000, grouped: int = 1000, enabled: int = 300) -> list[NamespaceInfo]:
    out = []
    for i in range(total):
        name = f"team-{i:04d}-service-namespace-with-a-long-name"
        if i < enabled:
            out.append(NamespaceInfo(name, {names.INJECT: names.NS_ENABLED}))
        elif i < enabled + grouped:
            out.append(NamespaceInfo(name, {}, {names.GROUP_ID: f"group-{i:04d}"}))
        else:
            out.append(NamespaceInfo(name))
    return out


def main() -> None:
    settings = load_settings()
    namespaces = cluster()
    runs = 10
    start = time.process_time()
    for _ in range(runs):
        objects, plan = render_objects(settings, namespaces)
    render_cpu = (time.process_time() - start) / runs
    start = time.process_time()
    for _ in range(runs):
        text = to_yaml(objects)
    yaml_cpu = (time.process_time() - start) / runs
    start = time.process_time()
    for _ in range(runs):
        objects, plan = render_objects(settings, namespaces)
        digests = [_digest(o) for o in objects]
    pass_cpu = (time.process_time() - start) / runs
    assert len(digests) == 5
    config = objects[3]["data"]
    print(f"namespaces: {len(namespaces)} (1000 own groups, 300 sidecar)")
    print(f"fluent-bit processes: {plan.processes}, outputs: {len(plan.outputs) + 1}")
    print(f"config: {sum(len(v) for v in config.values()) / 1024:.0f} KiB in {len(config)} files")
    print(f"longest config line: {max(len(x) for v in config.values() for x in v.splitlines())}")
    print(f"render (plan, configs, objects): {render_cpu * 1000:.1f} ms CPU")
    print(f"reconcile pass without I/O (render + change digests): {pass_cpu * 1000:.1f} ms CPU")
    print(f"YAML output ({len(text) / 1024:.0f} KiB): {yaml_cpu * 1000:.1f} ms CPU")


if __name__ == "__main__":
    main()
