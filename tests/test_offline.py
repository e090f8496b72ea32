"""The offline walker and text layer: templates found, patches applied as kube-apiserver would,
YAML written back faithfully."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kube import kubectl_patch, validate_strict
from tests.offline_checks import check_injected, templates
from webhook import names
from webhook.mutation import Injector, Mode
from webhook.offline import (
    OfflineInjector,
    Target,
    _round_trip_yaml,
    apply_patch,
    errors,
    find_templates,
    inject_text,
    parse,
    pod_of,
    render_json,
    render_yaml,
    split_documents,
    to_round_trip,
)
from webhook.settings import Settings, load_settings

CONTAINERS = {"containers": [{"name": "app", "image": "nginx"}]}


def deployment(name: str = "web", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": name}}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": meta, "spec": copy.deepcopy(CONTAINERS)},
        },
    }


@pytest.fixture
def offline(settings: Settings) -> OfflineInjector:
    return OfflineInjector(settings)


def test_find_templates_in_every_kind_and_list() -> None:
    cron = {
        "apiVersion": "batch/v1beta1",  # old apiVersions are matched by kind
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "ops"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": CONTAINERS}}}},
    }
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}, "spec": {}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    listed = {"apiVersion": "v1", "kind": "DeploymentList", "items": [deployment(), service, cron]}
    assert list(find_templates(cron)) == [
        Target(("spec", "jobTemplate", "spec", "template"), "CronJob", "nightly", "ops")
    ]
    assert list(find_templates(pod)) == [Target((), "Pod", "p-*", None)]
    assert list(find_templates(service)) == []
    assert [t.pointer for t in find_templates(listed)] == [
        ("items", 0, "spec", "template"),
        ("items", 2, "spec", "jobTemplate", "spec", "template"),
    ]
    assert [t.describe() for t in find_templates(listed)] == [
        "List item 0: Deployment/web",
        "List item 2: CronJob/nightly",
    ]
    for odd in (None, "text", [1], {"kind": "Deployment", "spec": {"template": "x"}}):
        assert list(find_templates(odd)) == []


@pytest.mark.parametrize("with_metadata", [True, False])
def test_patch_applies_as_kube_apiserver_applies_it(with_metadata: bool) -> None:
    """Offline application == kubectl's evanphx/json-patch on the same pod."""
    doc = deployment(annotations={"team": "shop"})
    if not with_metadata:
        del doc["spec"]["template"]["metadata"]
    [target] = find_templates(doc)
    pod = pod_of(copy.deepcopy(doc["spec"]["template"]))
    decision = Injector(load_settings()).decide(copy.deepcopy(pod), Mode.NAMESPACE, "shop")
    assert decision.outcome == "injected"
    by_kubectl = kubectl_patch({**pod, "metadata": pod.get("metadata", {"name": "x"})}, [])
    by_kubectl = kubectl_patch(pod if with_metadata else {**pod, "metadata": {}}, decision.patch)
    apply_patch(doc, target.pointer, decision.patch)
    template = doc["spec"]["template"]
    assert template["metadata"] == {
        k: v for k, v in by_kubectl["metadata"].items() if k != "creationTimestamp"
    }
    assert template["spec"] == by_kubectl["spec"]
    assert list(template) == ["metadata", "spec"], "metadata goes first, where readers look"
    validate_strict(doc)


def test_a_template_reached_twice_through_an_alias_is_injected_once(
    offline: OfflineInjector,
) -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a}
  spec:
    selector: {matchLabels: {app: a}}
    template: &tpl
      metadata: {labels: {app: a}, annotations: {logaas/inject: "true"}}
      spec:
        containers:
        - {name: one, image: x, volumeMounts: &mounts [{name: d, mountPath: /d}]}
        - {name: two, image: x, volumeMounts: *mounts}
        volumes: [{name: d, emptyDir: {}}]
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: b}
  spec:
    selector: {matchLabels: {app: a}}
    template: *tpl
"""
    documents = inject_text(text, "alias.yaml", offline)
    assert [r.decision.outcome for r in documents[0].results] == ["injected", "injected"]
    out = yaml.safe_load(render_yaml(documents))
    before = yaml.safe_load(text)["items"][0]["spec"]["template"]
    for item in out["items"]:
        validate_strict(item)
        check_injected(item["spec"]["template"], before)


PIECES = [
    "# a comment before anything\n",
    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    "--- # marker with a comment\nkind: Secret\n...\n",
    "---\n",
    "--- {kind: Service}\n",
    "---\nmsg: |\n  ---not a marker when indented\n  text\n",
]


def test_split_documents_cuts_at_markers_only() -> None:
    text = "".join(PIECES)
    assert split_documents(text) == PIECES
    assert "".join(split_documents(text)) == text
    assert split_documents("a: 1\n") == ["a: 1\n"]
    assert split_documents("") == []


def test_unchanged_streams_come_back_byte_for_byte(offline: OfflineInjector) -> None:
    for text in (
        "".join(PIECES),
        "a: 1\r\nb: [1, 2]\r\n---\r\nc: 'x'  # crlf kept\r\n",
        "just a scalar\n",
        "- a list\n- document\n",
        "# only a comment\n",
        yaml.safe_dump(deployment()),
    ):
        documents = inject_text(text, "x.yaml", offline)
        assert render_yaml(documents) == text


def test_directives_fall_back_to_a_whole_stream_parse(offline: OfflineInjector) -> None:
    before = deployment(annotations={names.INJECT: "true"})
    text = "%YAML 1.1\n---\n" + yaml.safe_dump(before)
    documents = inject_text(text, "d.yaml", offline)
    assert [d.text for d in documents] == [None]
    [out] = yaml.safe_load_all(render_yaml(documents))
    validate_strict(out)
    check_injected(templates(out)[0], templates(before)[0])


def test_errors_name_the_source_document_and_template(offline: OfflineInjector) -> None:
    bad = deployment("api", {names.INJECT: "true", names.PARSER: "xml"})
    listed = {"apiVersion": "v1", "kind": "List", "items": [deployment(), bad]}
    documents = inject_text(json.dumps(listed), "apps.json", offline)
    [message] = errors(documents)
    assert message.startswith("apps.json: document 1 (List item 1: Deployment/api): ")
    assert names.PARSER in message and "'xml'" in message


def test_render_json_skips_empty_documents(offline: OfflineInjector) -> None:
    documents = inject_text("---\n---\nkind: A\n---\n", "x.yaml", offline)
    assert json.loads(render_json(documents)) == {"kind": "A"}
    documents = inject_text("kind: A\n---\nkind: B\n", "x.yaml", offline)
    assert json.loads(render_json(documents))["items"] == [{"kind": "A"}, {"kind": "B"}]


def test_timestamps_stay_strings_as_kubectl_reads_them(offline: OfflineInjector) -> None:
    documents = parse("kind: ConfigMap\ndata:\n  day: 2024-01-02\n", "x.yaml")
    assert documents[0].data["data"]["day"] == "2024-01-02"


YAML11_TRAPS = ["on", "off", "yes", "no", "y", "n", "true", "NULL", "~", "0644", "1e3", "0x1f", ""]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12),
        st.one_of(
            st.sampled_from(YAML11_TRAPS),
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
            st.integers(),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_added_values_read_back_the_same_under_yaml_1_1(value: dict[str, Any]) -> None:
    """What the patch adds means the same to kubectl (YAML 1.1) as to the engine."""
    out = io.StringIO()
    _round_trip_yaml(None).dump({"annotations": to_round_trip(value)}, out)
    assert yaml.safe_load(out.getvalue()) == {"annotations": value}


def test_multi_line_values_are_literal_blocks() -> None:
    out = io.StringIO()
    _round_trip_yaml(None).dump(to_round_trip({"conf": "[A]\n    k v\n", "x": "on"}), out)
    assert out.getvalue() == 'conf: |\n  [A]\n      k v\nx: "on"\n'


def test_guessed_indentation_is_kept(offline: OfflineInjector) -> None:
    indented = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n    name: p\n    annotations:\n"
        '        logaas/inject: "true"\nspec:\n    containers:\n      - name: app\n'
        "        image: nginx\n"
    )
    out = render_yaml(inject_text(indented, "p.yaml", offline))
    assert "    containers:\n      - name: app\n        image: nginx\n" in out
    assert '        logaas/inject: "true"\n' in out
    validate_strict(yaml.safe_load(out))


SCALARS = st.one_of(
    st.sampled_from([*YAML11_TRAPS, "a: b", "- x", "#x", "---", "...", "multi\nline\n"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
    st.integers(),
    st.booleans(),
    st.none(),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6), inner, max_size=3
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    docs=st.lists(TREES, min_size=1, max_size=4),
    flow=st.booleans(),
    explicit=st.booleans(),
    inject=st.lists(st.booleans(), min_size=4, max_size=4),
    crlf=st.booleans(),
)
def test_any_stream_round_trips(
    docs: list[Any], flow: bool, explicit: bool, inject: list[bool], crlf: bool
) -> None:
    """Any YAML stream: documents keep their order and meaning, untouched ones their bytes,
    opted-in Deployments get the sidecar, and a second run changes nothing."""
    offline = OfflineInjector(load_settings())
    stream = [
        deployment(f"d{i}", {names.INJECT: "true"}) if wanted else doc
        for i, (doc, wanted) in enumerate(zip(docs, inject, strict=False))
    ]
    text = yaml.safe_dump_all(stream, default_flow_style=flow, explicit_start=explicit)
    if crlf:
        text = text.replace("\n", "\r\n")
    out = render_yaml(inject_text(text, "s.yaml", offline))
    got = list(yaml.safe_load_all(out))
    assert len(got) == len(stream)
    for before, after in zip(stream, got, strict=True):
        if isinstance(before, dict) and before.get("kind") == "Deployment":
            check_injected(after["spec"]["template"], before["spec"]["template"])
        else:
            assert after == before
    if not any(isinstance(d, dict) and d.get("kind") == "Deployment" for d in stream):
        try:
            json.loads(text)
        except ValueError:
            assert out == text
        # else: a JSON source, written back as YAML block style
    assert render_yaml(inject_text(out, "s.yaml", offline)) == out


def test_a_flow_sequence_that_is_also_json_is_read_as_yaml(offline: OfflineInjector) -> None:
    # kubectl treats a stream as JSON only when it opens an object (found by hypothesis).
    documents = inject_text("[1e3]\n", "s.yaml", offline)
    assert render_yaml(documents) == "[1e3]\n"
    assert list(yaml.safe_load_all(render_yaml(documents))) == [["1e3"]]
