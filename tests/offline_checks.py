"""Helpers for the offline-injection tests: run the CLI in-process, check injected templates."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from typing import Any

import yaml

from tests.kube import K8S_VERSIONS, validate_strict
from tests.test_engine import assert_contract
from webhook import names
from webhook.cli import main
from webhook.offline import TEMPLATE_PATHS, find_templates, pod_of, resolve


@dataclass
class Run:
    code: int
    out: str
    err: str

    def docs(self) -> list[Any]:
        return [d for d in yaml.safe_load_all(self.out) if d is not None]


def run_cli(*args: str, stdin: str | None = None) -> Run:
    """`logaas-webhook inject ...` in-process, through the real argument parser."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["inject", *args])
    finally:
        sys.stdin = old_stdin
    return Run(code, out.getvalue(), err.getvalue())


def is_injected(template: dict[str, Any]) -> bool:
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.STATUS) == names.STATUS_INJECTED


def check_injected(
    template: dict[str, Any],
    before: dict[str, Any],
    native: bool = True,
    log_path: str = "/var/log/app",
) -> None:
    """The engine tests' contract, plus: the user's containers are untouched but for the mount.

    A container that already mounts a volume at the log path keeps it and gets no second mount
    (the sidecar reads that volume instead).
    """
    assert_contract(pod_of(template), native)
    old_containers = before["spec"]["containers"]
    new_containers = [
        c for c in template["spec"]["containers"] if c["name"] != names.SIDECAR_CONTAINER
    ]
    assert len(new_containers) == len(old_containers)
    for old, new in zip(old_containers, new_containers, strict=True):
        assert {k: v for k, v in new.items() if k != "volumeMounts"} == {
            k: v for k, v in old.items() if k != "volumeMounts"
        }
        added = new.get("volumeMounts", [])[len(old.get("volumeMounts") or []) :]
        has_own = any(
            m.get("mountPath", "").rstrip("/") == log_path for m in old.get("volumeMounts") or []
        )
        assert [m["name"] for m in added] == ([] if has_own else [names.LOGS_VOLUME])
    old_init = before["spec"].get("initContainers") or []
    assert template["spec"].get("initContainers", [])[: len(old_init)] == old_init
    old_volumes = before["spec"].get("volumes") or []
    assert template["spec"]["volumes"][: len(old_volumes)] == old_volumes
    assert {v["name"] for v in template["spec"]["volumes"][len(old_volumes) :]} == {
        names.LOGS_VOLUME,
        names.STATE_VOLUME,
        names.CONFIG_VOLUME,
    }
    old_annotations = (before.get("metadata") or {}).get("annotations") or {}
    new_annotations = template["metadata"]["annotations"]
    assert {k: new_annotations[k] for k in old_annotations} == old_annotations
    assert set(new_annotations) - set(old_annotations) <= {
        names.STATUS,
        names.FLUENT_BIT_CONFIG,
        names.FLUENTBIT_EXCLUDE,
    }
    for key, value in (before.get("metadata") or {}).items():
        if key != "annotations":
            assert template["metadata"][key] == value


def templates(doc: Any) -> list[dict[str, Any]]:
    return [resolve(doc, t.pointer) for t in find_templates(doc)]


def validate(doc: dict[str, Any], versions: tuple[str, ...] = K8S_VERSIONS) -> None:
    """Strict schema validation of a document; the templates of every List item too."""
    if doc.get("kind") == "List":
        for item in doc["items"]:
            validate(item, versions)
        return
    validate_strict(doc, versions)


WORKLOAD_KINDS = tuple(TEMPLATE_PATHS)
