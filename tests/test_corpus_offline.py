"""Offline injection over the 179 workload manifests of the Kubernetes documentation.

The corpus (/work/shared/corpus/k8s-website-examples, CC BY 4.0, test input only) is read in
place and never copied into the repository. Each file is injected twice: as found, with
`--namespace-enabled` (every template opts in), and with every template annotated
`logaas/inject: "true"`. What should happen to each template is derived here from the contract
(system namespaces, hostNetwork and Windows pods are left alone; everything else is injected),
not from the engine.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube import K8S_VERSIONS, schema_errors
from tests.offline_checks import check_injected, is_injected, run_cli, templates
from tests.shared import CORPUS, CORPUS_FILES, requires_corpus
from webhook import names
from webhook.offline import find_templates, parse, pod_of, resolve

FILES = [CORPUS / name for name in CORPUS_FILES]

pytestmark = requires_corpus


def test_corpus_is_complete() -> None:
    assert len(FILES) == 179


def expectation(doc: dict[str, Any], template: dict[str, Any]) -> str:
    """inject | skip, from the contract."""
    spec = template.get("spec") or {}
    namespace = (doc.get("metadata") or {}).get("namespace")
    selector = spec.get("nodeSelector") or {}
    if (
        namespace in names.SYSTEM_NAMESPACES
        or spec.get("hostNetwork") is True
        or (spec.get("os") or {}).get("name") == "windows"
        or "windows" in (selector.get("kubernetes.io/os"), selector.get("beta.kubernetes.io/os"))
    ):
        return "skip"
    return "inject"


def load(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def plan(docs: list[dict[str, Any]]) -> list[list[str]]:
    return [[expectation(doc, t) for t in templates(doc)] for doc in docs]


def assert_valid(after: dict[str, Any], before: dict[str, Any]) -> None:
    """Injection adds no strict-schema error, in 1.29 and the newest version.

    So the output is valid wherever the input was; example files that use fields newer than a
    version keep exactly their own errors there. A kind the schema no longer has
    (batch/v1beta1 CronJob...) is checked through its pod templates, validated as Pods.
    """
    for version in K8S_VERSIONS:
        pairs = [(after, before)]
        if schema_errors(before, version) is None:
            pairs = [
                (pod_of(a), pod_of(b))
                for a, b in zip(templates(after), templates(before), strict=True)
            ]
        for new_obj, old_obj in pairs:
            new, old = schema_errors(new_obj, version), schema_errors(old_obj, version)
            assert new is not None and old is not None
            assert not new - old, (
                f"{after['kind']}: injection added errors in {version}: {new - old}"
            )


def assert_outcome(
    before: list[dict[str, Any]], after: list[dict[str, Any]], expected: list[list[str]]
) -> None:
    assert [(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in after] == [
        (d.get("kind"), (d.get("metadata") or {}).get("name")) for d in before
    ]
    for doc_before, doc_after, wanted in zip(before, after, expected, strict=True):
        pairs = list(zip(templates(doc_before), templates(doc_after), strict=True))
        for (tpl_before, tpl_after), outcome in zip(pairs, wanted, strict=True):
            if outcome == "skip":
                assert tpl_after == tpl_before
            else:
                check_injected(tpl_after, tpl_before)
        # Nothing outside the pod templates changes.
        outside = copy.deepcopy(doc_after)
        for target, tpl_before in zip(find_templates(outside), templates(doc_before), strict=True):
            node = resolve(outside, target.pointer)
            node.clear()
            node.update(tpl_before)
        assert outside == doc_before
        assert_valid(doc_after, doc_before)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_injects_in_place_with_namespace_enabled(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    before = load(text)
    expected = plan(before)
    assert any(e for e in expected), "every corpus file holds a workload"
    run = run_cli("-f", str(path), "--namespace-enabled")
    assert run.code == 0, run.err
    after = load(run.out)
    assert_outcome(before, after, expected)
    # Documents left alone come out byte for byte.
    for document in parse(text, str(path)):
        if document.text is not None and not any(
            is_injected(t) for t in templates(document.data or {})
        ):
            plain = load(document.text)
            if plain and all(e == "skip" for e in plan(plain)[0]):
                assert document.text in run.out
    # Idempotent.
    again_path = tmp_path / "again.yaml"
    again_path.write_text(run.out)
    again = run_cli("-f", str(again_path), "--namespace-enabled")
    assert again.code == 0 and again.out == run.out


def annotate(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(docs)
    for doc in out:
        for template in templates(doc):
            meta = template.setdefault("metadata", {})
            if meta is None:
                meta = template["metadata"] = {}
            annotations = meta.setdefault("annotations", {}) or {}
            meta["annotations"] = annotations
            annotations[names.INJECT] = "true"
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_injects_annotated_templates(path: Path, tmp_path: Path) -> None:
    before = annotate(load(path.read_text()))
    expected = plan(load(path.read_text()))
    annotated = tmp_path / path.name
    annotated.write_text(yaml.safe_dump_all(before, sort_keys=False))
    run = run_cli("-f", str(annotated))
    assert run.code == 0, run.err
    assert_outcome(before, load(run.out), expected)
