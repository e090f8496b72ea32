"""Evaluate rendered agent configs the way Fluent Bit 3.2 routes a record (for tests and
`coverage`): tail Path/Exclude_Path globs, grep Exclude, the kubernetes filter's exclude
annotation, rewrite_tag rules (first match wins, record re-enters the filters with the new
tag), output Match (wildcard) / Match_Regex (anchored at the start, as the router's
onig_match), and forward outputs into the shard process listening on that port.

Only the constructs the agent renders are modelled; anything else raises SimulationError.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from webhook import fluentbit

EXCLUDE_ANNOTATION = "fluentbit.io/exclude"
_TRUE = ("true", "on", "yes", "1")


class SimulationError(ValueError):
    pass


@dataclass(frozen=True)
class Delivery:
    process: str  # config file name of the process that sends it
    alias: str
    group_id: str
    project_id: str
    labels: str


Section = tuple[str, list[tuple[str, str]]]


def _get(pairs: list[tuple[str, str]], key: str) -> str | None:
    for k, v in pairs:
        if k.lower() == key.lower():
            return v
    return None


def _all(pairs: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in pairs if k.lower() == key.lower()]


@cache
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else re.escape(c) for c in pattern) + r"\Z", re.S)


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def tag_matches(tag: str, pairs: list[tuple[str, str]]) -> bool:
    """Fluent Bit's router: Match_Regex with onig_match (start-anchored, non-empty), else
    the Match wildcard, where only '*' is special."""
    regex = _get(pairs, "Match_Regex")
    if regex is not None:
        m = _regex(regex).match(tag)
        if m and m.end() > 0:
            return True
    match = _get(pairs, "Match")
    return match is not None and bool(_wildcard(match).match(tag))


class Agent:
    def __init__(self, configs: Mapping[str, str], primary: str = "fluent-bit.conf") -> None:
        self.processes: dict[str, list[Section]] = {
            name: fluentbit.parse(text) for name, text in configs.items() if name.endswith(".conf")
        }
        self.processes = {
            n: s for n, s in self.processes.items() if any(k != "PARSER" for k, _ in s)
        }
        self.primary = primary
        self.ports: dict[str, str] = {}
        for name, sections in self.processes.items():
            for kind, pairs in sections:
                if kind == "INPUT" and _get(pairs, "Name") == "forward":
                    self.ports[str(_get(pairs, "Port"))] = name

    def deliveries(
        self, path: str, pod_annotations: Mapping[str, str] | None = None
    ) -> list[Delivery]:
        """Where a line written to `path` (under /var/log/containers) ends up."""
        sections = self.processes[self.primary]
        annotations = pod_annotations or {}
        out: list[Delivery] = []
        for kind, pairs in sections:
            if kind != "INPUT":
                continue
            if _get(pairs, "Name") != "tail":
                continue
            globs = [g.strip() for g in (_get(pairs, "Path") or "").split(",") if g.strip()]
            excludes = [
                g.strip() for g in (_get(pairs, "Exclude_Path") or "").split(",") if g.strip()
            ]
            if not any(fnmatch.fnmatchcase(path, g) for g in globs):
                continue
            if any(fnmatch.fnmatchcase(path, g) for g in excludes):
                continue
            tag_template: str = _get(pairs, "Tag") or ""
            if not tag_template.endswith("*"):
                raise SimulationError(f"unsupported tail Tag {tag_template!r}")
            tag = tag_template[:-1] + path.strip("/").replace("/", ".")
            record: dict[str, str] = {}
            path_key = _get(pairs, "Path_Key")
            if path_key:
                record[path_key] = path
            out.extend(self._run(self.primary, tag, record, annotations, 0))
        return out

    def _run(
        self,
        process: str,
        tag: str,
        record: dict[str, str],
        annotations: Mapping[str, str],
        depth: int,
    ) -> list[Delivery]:
        if depth > 4:
            raise SimulationError("record loops between filters or processes")
        record = dict(record)
        for kind, pairs in self.processes[process]:
            if kind != "FILTER" or not tag_matches(tag, pairs):
                continue
            name = _get(pairs, "Name")
            if name == "grep":
                for rule in _all(pairs, "Exclude"):
                    key, _, regex = rule.partition(" ")
                    if key in record and _regex(regex.strip()).search(record[key]):
                        return []
                if _all(pairs, "Regex"):
                    raise SimulationError("grep Regex is not modelled")
            elif name == "kubernetes":
                flag = (_get(pairs, "K8S-Logging.Exclude") or "off").lower()
                value = annotations.get(EXCLUDE_ANNOTATION, "").lower()
                if flag in _TRUE and value in _TRUE:
                    return []
            elif name == "rewrite_tag":
                for rule in _all(pairs, "Rule"):
                    parts = rule.split(None, 3)
                    if len(parts) != 4 or not parts[0].startswith("$"):
                        raise SimulationError(f"unsupported rewrite rule {rule!r}")
                    key, regex, new_tag, keep = parts
                    found = record.get(key[1:])
                    if found is None or not _regex(regex).search(found):
                        continue
                    emitted = self._run(
                        process, new_tag.replace("$TAG", tag), record, annotations, depth + 1
                    )
                    if keep.lower() in _TRUE:
                        break
                    return emitted
            elif name == "record_modifier":
                for key in _all(pairs, "Remove_key"):
                    record.pop(key, None)
            else:
                raise SimulationError(f"filter {name!r} is not modelled")
        deliveries: list[Delivery] = []
        for kind, pairs in self.processes[process]:
            if kind != "OUTPUT" or not tag_matches(tag, pairs):
                continue
            name = _get(pairs, "Name")
            if name == "logaas":
                deliveries.append(
                    Delivery(
                        process,
                        _get(pairs, "Alias") or "",
                        _get(pairs, "default_group_id") or "",
                        _get(pairs, "default_project_id") or "",
                        _get(pairs, "default_labels") or "",
                    )
                )
            elif name == "forward":
                target = self.ports.get(str(_get(pairs, "Port")))
                if target is None:
                    raise SimulationError(
                        f"forward to port {_get(pairs, 'Port')} nobody listens on"
                    )
                deliveries.extend(self._run(target, tag, record, annotations, depth + 1))
            else:
                raise SimulationError(f"output {name!r} is not modelled")
        return deliveries

    def outputs(self) -> list[tuple[str, list[tuple[str, str]]]]:
        return [
            (process, pairs)
            for process, sections in self.processes.items()
            for kind, pairs in sections
            if kind == "OUTPUT"
        ]


def container_log_path(pod: str, namespace: str, container: str, container_id: str) -> str:
    """The kubelet's /var/log/containers symlink name for a container."""
    return f"/var/log/containers/{pod}_{namespace}_{container}-{container_id}.log"
