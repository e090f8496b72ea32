"""Validation of the logaas/* annotations into the options of one injection."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from webhook import names
from webhook.settings import (
    QUANTITY_PATTERN,
    Settings,
    config_safe,
    log_path_problem,
    quantity,
)

_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_QUANTITY = re.compile(QUANTITY_PATTERN)
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]-]{1,128}$")
BUILTIN_PARSERS = ("json", "logfmt", "none")
# default_labels is one Fluent Bit config line; lines over 4,094 characters fail to load.
MAX_LABELS_JSON = 3000
MULTILINE_PARSERS = ("java", "python", "go", "ruby")
KNOWN = frozenset(
    {
        names.INJECT,
        names.STATUS,
        names.FLUENT_BIT_CONFIG,
        names.GROUP_ID,
        names.PROJECT_ID,
        names.LABELS,
        names.LOG_PATH,
        names.LOG_FILES,
        names.CONTAINERS,
        names.PARSER,
        names.MULTILINE,
        names.SIDECAR_CPU,
        names.SIDECAR_MEMORY,
        names.CREDENTIALS,
    }
)


class AnnotationError(ValueError):
    """An annotation the user can fix: names the annotation, the value and what is accepted."""

    def __init__(self, annotation: str, value: str, accepted: str, where: str = "pod") -> None:
        shown = value if len(value) <= 200 else value[:200] + "..."
        super().__init__(f"{where} annotation {annotation}: {shown!r} is not accepted; {accepted}")
        self.annotation = annotation


class PolicyError(ValueError):
    """A log group the namespace may not send to."""


@dataclass(frozen=True)
class Options:
    group_id: str
    project_id: str
    labels: dict[str, str]
    log_path: str
    log_files: str
    containers: tuple[str, ...]
    parser: str
    multiline: str | None
    cpu_limit: str
    memory_limit: str


def parse_inject(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise AnnotationError(names.INJECT, value, 'accepted: "true" or "false"')


def _id(annotations: Mapping[str, str], key: str, default: str, where: str) -> str:
    value = annotations.get(key)
    if value is None:
        return default
    if not _ID.match(value):
        raise AnnotationError(key, value, "accepted: 1-64 characters of A-Z a-z 0-9 -", where)
    return value


def _labels(annotations: Mapping[str, str], where: str) -> dict[str, str]:
    raw = annotations.get(names.LABELS)
    if raw is None:
        return {}
    accepted = (
        'accepted: a JSON object of string to string, e.g. {"team":"payments"}, '
        "keys non-empty, no control characters or ${ in keys or values"
    )
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise AnnotationError(names.LABELS, raw, accepted, where) from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and config_safe(k) and config_safe(v)
        for k, v in parsed.items()
    ):
        raise AnnotationError(names.LABELS, raw, accepted, where)
    return parsed


def namespace_defaults(
    annotations: Mapping[str, str], settings: Settings
) -> tuple[str, str, dict[str, str]]:
    """Group, project and labels a namespace's annotations set (validated)."""
    group = _id(annotations, names.GROUP_ID, settings.group_id, "namespace")
    project = _id(annotations, names.PROJECT_ID, settings.project_id, "namespace")
    labels = {**settings.default_labels, **_labels(annotations, "namespace")}
    return group, project, labels


def allowed_groups(namespace: str | None, settings: Settings) -> list[str] | None:
    """Groups a namespace may use, or None when the policy does not restrict it."""
    if not settings.group_policy or namespace is None:
        return None
    allowed: list[str] = []
    matched = False
    for pattern, groups in settings.group_policy.items():
        if fnmatchcase(namespace, pattern):
            matched = True
            allowed.extend(groups)
    return [settings.group_id, *allowed] if matched else None


def check_group_policy(group: str, namespace: str | None, settings: Settings) -> None:
    allowed = allowed_groups(namespace, settings)
    if allowed is not None and group not in allowed:
        raise PolicyError(
            f"log group {group!r} is not allowed for namespace {namespace!r} by the cluster's "
            f"logaas group policy; allowed: {', '.join(sorted(set(allowed)))}"
        )


def parse_options(
    annotations: Mapping[str, str],
    container_names: list[str],
    settings: Settings,
    namespace_annotations: Mapping[str, str],
) -> Options:
    group, project, labels = namespace_defaults(namespace_annotations, settings)
    group = _id(annotations, names.GROUP_ID, group, "pod")
    project = _id(annotations, names.PROJECT_ID, project, "pod")
    labels = {**labels, **_labels(annotations, "pod")}
    rendered = len(json.dumps(labels, separators=(",", ":"), ensure_ascii=False))
    if rendered > MAX_LABELS_JSON:
        raise AnnotationError(
            names.LABELS,
            annotations.get(names.LABELS, ""),
            f"accepted: labels whose JSON, merged with the defaults, is at most "
            f"{MAX_LABELS_JSON} characters (this one is {rendered})",
        )

    log_path = annotations.get(names.LOG_PATH, settings.log_path)
    problem = log_path_problem(log_path)
    if problem:
        raise AnnotationError(
            names.LOG_PATH, log_path, f"accepted: an absolute path that {problem}"
        )
    log_path = log_path.rstrip("/")

    log_files = annotations.get(names.LOG_FILES, settings.log_files)
    if not _GLOB.match(log_files) or "/" in log_files:
        raise AnnotationError(
            names.LOG_FILES,
            log_files,
            "accepted: a file glob without / (letters, digits, _ . - * ? [ ]), e.g. *.log",
        )

    containers = tuple(container_names)
    raw_containers = annotations.get(names.CONTAINERS)
    if raw_containers is not None:
        wanted = [c.strip() for c in raw_containers.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in container_names]
        if not wanted or unknown:
            raise AnnotationError(
                names.CONTAINERS,
                raw_containers,
                f"accepted: a comma list of the pod's containers: {', '.join(container_names)}",
            )
        containers = tuple(dict.fromkeys(wanted))

    parsers = (*BUILTIN_PARSERS, *settings.parsers)
    parser = annotations.get(names.PARSER, "none")
    if parser not in parsers:
        raise AnnotationError(names.PARSER, parser, f"accepted: {', '.join(parsers)}")

    multiline = annotations.get(names.MULTILINE)
    if multiline is not None and multiline not in MULTILINE_PARSERS:
        raise AnnotationError(
            names.MULTILINE, multiline, f"accepted: {', '.join(MULTILINE_PARSERS)}"
        )

    cpu = _quantity(annotations, names.SIDECAR_CPU, settings.sidecar.cpu_limit)
    memory = _quantity(annotations, names.SIDECAR_MEMORY, settings.sidecar.memory_limit)
    return Options(
        group_id=group,
        project_id=project,
        labels=labels,
        log_path=log_path,
        log_files=log_files,
        containers=containers,
        parser=parser,
        multiline=multiline,
        cpu_limit=cpu,
        memory_limit=memory,
    )


def _quantity(annotations: Mapping[str, str], key: str, default: str) -> str:
    value = annotations.get(key)
    if value is None:
        return default
    if len(value) > 32 or not _QUANTITY.match(value) or quantity(value) <= 0:
        raise AnnotationError(
            key, value, "accepted: a positive Kubernetes quantity, e.g. 100m, 0.5, 128Mi, 1Gi"
        )
    return value


def unknown_annotations(annotations: Mapping[str, str]) -> list[str]:
    """logaas/* keys we do not know: a typo the user should hear about (as a warning)."""
    return sorted(k for k in annotations if k.startswith(names.PREFIX) and k not in KNOWN)
