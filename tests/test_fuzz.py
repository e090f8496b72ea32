"""Property and fuzz tests: hostile AdmissionReviews never crash, hang or corrupt a pod.

For every generated or mutated review:
- the answer is a well-formed AdmissionReview (uid echoed, 4xx denials with a message) or an
  HTTP 4xx with a JSON error: never a 5xx, a hang or an internal error;
- every allowed patch applies with kube-apiserver's JSON patch semantics (kubectl patch
  --local --type=json, batched) and gives a strict-schema-valid pod whenever the input was;
- injecting the result again gives no patch (idempotency).

The app runs in-process (httpx.ASGITransport) for speed; a smaller batch goes over real TLS to a
real `logaas-webhook serve` with a CA-verified client. The file sends well over 5,000 reviews.
"""

from __future__ import annotations

import copy
import json
import os
import string
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import admission_review
from tests.harness import (
    JSON,
    InProcess,
    check_answer,
    decode_patch,
    kubectl_patch_many,
    pod_schema_errors,
    serve,
)
from tests.kube import validate_strict
from tests.shared import corpus_pods, requires_corpus
from webhook import names
from webhook.app import create_app
from webhook.mutation import NamespaceInfo
from webhook.settings import load_settings

PATHS = ("/mutate", "/mutate/namespace")
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


# FUZZ_SCALE=10 multiplies every example count, for a deeper run by hand.
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(examples * SCALE)))


# Namespaces the webhook's watched cache knows: defaults, a bad default, a policy-bound one.
NAMESPACES = {
    "shop": NamespaceInfo("shop"),
    "synced": NamespaceInfo("synced", annotations={names.CREDENTIALS: names.CREDENTIALS_SYNC}),
    "enabled": NamespaceInfo("enabled", labels={names.INJECT: names.NS_ENABLED}),
    "disabled": NamespaceInfo("disabled", labels={names.INJECT: names.NS_DISABLED}),
    "team-a": NamespaceInfo(
        "team-a", annotations={names.GROUP_ID: "team-a-logs", names.LABELS: '{"team":"a"}'}
    ),
    "team-b": NamespaceInfo("team-b", annotations={names.GROUP_ID: "team-a-logs"}),
    "broken": NamespaceInfo("broken", annotations={names.LABELS: "{not json"}),
}


def make_client(**overrides: Any) -> InProcess:
    configured = load_settings(
        group_policy={"team-*": ["team-a-logs", "shared-logs"]},
        parsers=["nginx"],
        excluded_namespaces=["excluded"],
        own_namespace="logaas",
        **overrides,
    )
    return InProcess(create_app(configured, namespaces=NAMESPACES.get))


# --- strategies --------------------------------------------------------------------------------

_ALNUM = string.ascii_lowercase + string.digits
# DNS-1123 labels (from_regex is ten times slower to draw).
DNS = st.one_of(
    st.text(_ALNUM, min_size=1, max_size=12),
    st.tuples(st.text(_ALNUM, min_size=1, max_size=6), st.text(_ALNUM, min_size=1, max_size=6)).map(
        "-".join
    ),
)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "~",
            "/",
            "~1",
            "~0",
            "a/b~c",
            "${LOGAAS_IAM_CLIENT_SECRET}",
            "\n[OUTPUT]",
            "..",
            "/",
            "-",
            "真",
            "\u202e",
            "\x00",
            "a" * 5000,
            "true ",
            "TRUE",
            "\ud7ff",
        ]
    ),
)

ANNOTATION_VALUES: dict[str, st.SearchStrategy[str]] = {
    names.INJECT: st.sampled_from(["true", "false", "True", " true", "yes", "", "1"]),
    names.GROUP_ID: st.one_of(
        st.sampled_from(["team-a-logs", "shared-logs", "other", "example-group"]), ODD_TEXT
    ),
    names.PROJECT_ID: st.one_of(
        st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=64), ODD_TEXT
    ),
    names.LABELS: st.one_of(
        st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3).map(
            json.dumps
        ),
        st.sampled_from(['{"a":1}', "[]", "null", '{"":"x"}', '{"k":"${X}"}', "{bad"]),
        ODD_TEXT,
    ),
    names.LOG_PATH: st.one_of(
        st.sampled_from(["/var/log/app", "/logs/", "/a/../b", "/", "relative", "/x y", "/data"]),
        ODD_TEXT,
    ),
    names.LOG_FILES: st.one_of(st.sampled_from(["*.log", "app-*.txt", "a/b", "*"]), ODD_TEXT),
    names.CONTAINERS: st.one_of(st.sampled_from(["app", "app,side", "nope", ",", ""]), ODD_TEXT),
    names.PARSER: st.sampled_from(["json", "logfmt", "none", "nginx", "apache", ""]),
    names.MULTILINE: st.sampled_from(["java", "python", "go", "ruby", "cri", ""]),
    names.SIDECAR_CPU: st.one_of(st.sampled_from(["100m", "1", "0", "-1", "1e3", "5m"]), ODD_TEXT),
    names.SIDECAR_MEMORY: st.one_of(st.sampled_from(["64Mi", "1Gi", "0", "1.5Gi", "x"]), ODD_TEXT),
    names.STATUS: st.sampled_from(["injected", "pending", ""]),
    names.CREDENTIALS: st.sampled_from(["sync", "no"]),
    "logaas/typo": ODD_TEXT,
}
ANNOTATION_KEYS = st.one_of(
    st.sampled_from(sorted(ANNOTATION_VALUES)),
    st.sampled_from(["a/b", "x~y", "~", "/", "a~1b", "example.com/owner", "app.kubernetes.io/x"]),
    st.text(min_size=1, max_size=20),
)


# Values the webhook accepts: half of the pods use only these, so many pods get injected.
VALID_VALUES: dict[str, st.SearchStrategy[str]] = {
    names.GROUP_ID: st.sampled_from(["team-a-logs", "shared-logs", "example-group"]),
    names.PROJECT_ID: st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=64),
    names.LABELS: st.dictionaries(
        st.text(string.ascii_letters + "-./", min_size=1, max_size=8),
        st.text(max_size=8).filter(lambda v: v.isprintable() and "${" not in v),
        max_size=3,
    ).map(json.dumps),
    names.LOG_PATH: st.sampled_from(["/var/log/app", "/logs/", "/data/app-logs", "/x_y@z+1"]),
    names.LOG_FILES: st.sampled_from(["*.log", "app-*.txt", "[ab]?.json"]),
    names.CONTAINERS: st.just("app"),
    names.PARSER: st.sampled_from(["json", "logfmt", "none", "nginx"]),
    names.MULTILINE: st.sampled_from(["java", "python", "go", "ruby"]),
    names.SIDECAR_CPU: st.sampled_from(["100m", "1", "1e3", "5m", "0.5"]),
    names.SIDECAR_MEMORY: st.sampled_from(["64Mi", "1Gi", "1.5Gi", "1000000"]),
}


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, str]:
    keys = draw(st.lists(ANNOTATION_KEYS, max_size=6, unique=True))
    pool = VALID_VALUES if draw(st.booleans()) else {}
    out = {
        key: draw(pool[key] if key in pool else ANNOTATION_VALUES.get(key, ODD_TEXT))
        for key in keys
    }
    if names.CONTAINERS in out and pool:
        del out[names.CONTAINERS]  # the pod may have no container named app
    if draw(st.sampled_from([True, True, True, False])):
        out[names.INJECT] = "true"
    return out


@st.composite
def containers(draw: st.DrawFn, names_: list[str]) -> list[JSON]:
    out = []
    for name in names_:
        container: JSON = {"name": name, "image": draw(st.sampled_from(["nginx", "busybox:1"]))}
        if draw(st.booleans()):
            container["ports"] = [{"containerPort": draw(st.sampled_from([80, 2020, 2021, 8080]))}]
        if draw(st.booleans()):
            container["volumeMounts"] = [
                {
                    "name": draw(st.sampled_from(["data", names.LOGS_VOLUME])),
                    "mountPath": draw(st.sampled_from(["/data", "/var/log/app", "/var/log/app/"])),
                }
            ]
        elif draw(st.booleans()):
            container["volumeMounts"] = []
        if draw(st.booleans()):
            container["env"] = [{"name": "MODE", "value": draw(ODD_TEXT)}]
        if draw(st.booleans()):
            container["securityContext"] = {"runAsNonRoot": True, "readOnlyRootFilesystem": True}
        out.append(container)
    return out


@st.composite
def valid_pods(draw: st.DrawFn, max_containers: int = 4) -> JSON:
    """Pods kube-apiserver could hand to the webhook (strict-schema valid), in many shapes."""
    app_names = draw(st.lists(DNS, min_size=1, max_size=max_containers, unique=True))
    if draw(st.booleans()):
        app_names[0] = "app"
    if len(app_names) > 1 and draw(st.booleans()):
        app_names[1] = "side" if "side" not in app_names else app_names[1]
    spec: JSON = {"containers": draw(containers(app_names))}
    if draw(st.booleans()):
        init_names = draw(
            st.lists(DNS.filter(lambda n: n not in app_names), max_size=2, unique=True)
        )
        spec["initContainers"] = draw(containers(init_names))
    if draw(st.booleans()):
        spec["volumes"] = draw(
            st.sampled_from(
                [
                    [],
                    [{"name": "data", "emptyDir": {}}],
                    [{"name": names.STATE_VOLUME, "emptyDir": {}}],
                ]
            )
        )
    for key, values in (
        ("hostNetwork", st.booleans()),
        ("terminationGracePeriodSeconds", st.sampled_from([0, 1, 5, 30, 3600])),
        (
            "nodeSelector",
            st.sampled_from([{"kubernetes.io/os": "linux"}, {"kubernetes.io/os": "windows"}]),
        ),
        ("os", st.sampled_from([{"name": "linux"}, {"name": "windows"}])),
        (
            "securityContext",
            st.just({"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}),
        ),
    ):
        if draw(st.integers(0, 4)) == 0:
            spec[key] = draw(values)
    meta: JSON = {}
    shape = draw(st.sampled_from([2, 3, 4, 5, 2, 3, 0, 1]))
    if shape:
        meta["name"] = draw(DNS)
    if shape > 1:
        meta["annotations"] = draw(annotations())
    if shape > 2:
        meta["labels"] = {"app": draw(DNS)}
    if shape == 4:
        meta.pop("name")
        meta["generateName"] = "web-"
    pod: JSON = {"apiVersion": "v1", "kind": "Pod", "spec": spec}
    if meta or draw(st.booleans()):
        pod["metadata"] = meta
    return pod


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    ODD_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(ODD_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, doc: Any, rounds: int = 3) -> Any:
    """doc with 1..rounds random edits: wrong types, deletions, odd keys, junk values."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, rounds))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "wrap"]))
        if action == "replace":
            parent[last] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[last]
        elif action == "wrap":
            parent[last] = draw(st.sampled_from([[parent[last]], {"x": parent[last]}]))
        elif isinstance(parent[last], dict):
            parent[last][draw(ODD_TEXT)] = draw(JSON_VALUES)
        elif isinstance(parent[last], list):
            parent[last].append(draw(JSON_VALUES))
    return doc


def opt_in(pod: Any) -> None:
    """Annotate logaas/inject=true where the (possibly mutated) pod has room for it."""
    if not isinstance(pod, dict):
        return
    meta = pod.setdefault("metadata", {})
    if isinstance(meta, dict):
        if not isinstance(meta.get("annotations"), dict):
            meta["annotations"] = {}
        meta["annotations"][names.INJECT] = "true"


def review_of(pod: Any, draw: st.DrawFn | None = None) -> JSON:
    namespace = "shop"
    if draw is not None:
        unusual = st.sampled_from([*NAMESPACES, "kube-system", "logaas", "excluded", "x"])
        namespace = draw(st.one_of(st.sampled_from(["shop", "synced", "team-a"]), unusual))
    review = admission_review(None, namespace=namespace, uid=str(uuid.uuid4()))
    review["request"]["object"] = pod
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]:
        review["request"]["name"] = meta["name"]
    return review


# --- the checks ---------------------------------------------------------------------------------


MAX_ANNOTATION_BYTES = 256 * 1024


def annotation_bytes(pod: Any) -> int:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict):
        return 0
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())


class Collector:
    """Runs reviews through the app, checks each answer, keeps the patches to verify in bulk."""

    def __init__(self, client: InProcess) -> None:
        self.client = client
        self.patched: list[tuple[JSON, list[JSON], str, str | None]] = []
        self.outcomes: dict[str, int] = {}

    def reasons(self) -> dict[str, int]:
        """Decisions by reason, from the app's own metrics."""
        counts: dict[str, int] = {}
        for metric in self.client.app.state.metrics.reviews.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    counts[reason] = counts.get(reason, 0) + int(sample.value)
        return counts

    def send(self, path: str, body: bytes, uid: str | None, pod: Any = None) -> JSON | None:
        answer = self.client.post(path, body)
        self.last = (answer.status_code, answer.content)
        response = check_answer(answer.status_code, answer.content, uid)
        key = f"http-{answer.status_code}"
        if response is not None:
            key = (
                "patched"
                if "patch" in response
                else ("allowed" if response["allowed"] else "denied")
            )
            if "patch" in response:
                assert isinstance(pod, dict), "a patch for a request without a pod object"
                namespace = json.loads(body)["request"].get("namespace")
                self.patched.append((pod, decode_patch(response), path, namespace))
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        return response

    def review(self, path: str, review: JSON) -> JSON | None:
        body = json.dumps(review).encode()
        request = review.get("request")
        uid = request.get("uid") if isinstance(request, dict) else None
        pod = request.get("object") if isinstance(request, dict) else None
        return self.send(path, body, uid if isinstance(uid, str) else None, pod)

    def verify_patches(self, batch: int = 150) -> int:
        """Every patch applies like kube-apiserver applies it; valid in -> valid out; idempotent."""
        chunks = [self.patched[i : i + batch] for i in range(0, len(self.patched), batch)]
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(
                    lambda chunk: kubectl_patch_many([(p, ops) for p, ops, *_ in chunk]), chunks
                )
            )
        checked = 0
        for chunk, patched_pods in zip(chunks, results, strict=True):
            for (pod, ops, path, namespace), result in zip(chunk, patched_pods, strict=True):
                if not pod_schema_errors(pod):
                    problems = pod_schema_errors(result)
                    assert not problems, f"valid pod became invalid: {problems}\nops: {ops}"
                annotations = result["metadata"]["annotations"]
                assert annotations[names.STATUS] == names.STATUS_INJECTED
                # kube-apiserver's limit on all annotations together (keys and values).
                if annotation_bytes(pod) <= MAX_ANNOTATION_BYTES:
                    assert annotation_bytes(result) <= MAX_ANNOTATION_BYTES
                sidecars = [
                    c
                    for key in ("containers", "initContainers")
                    for c in result["spec"].get(key) or []
                    if isinstance(c, dict) and c.get("name") == names.SIDECAR_CONTAINER
                ]
                assert len(sidecars) == 1
                # The user's own containers, their names and order, are never rewritten.
                before = [c["name"] for c in pod["spec"]["containers"]]
                after = [c["name"] for c in result["spec"]["containers"]]
                assert after[: len(before)] == before
                # Idempotency: the injected pod, sent again, gets no patch.
                again = review_of(result)
                again["request"]["namespace"] = namespace
                response = self.review(path, again)
                assert response is not None, f"re-sent injected pod refused: {self.last}"
                assert response["allowed"]
                assert "patch" not in response, "re-injection produced a patch"
                checked += 1
        return checked


@pytest.fixture
def collector() -> Iterator[Collector]:
    client = make_client()
    yield Collector(client)
    client.close()


def test_generated_valid_pods(collector: Collector) -> None:
    """Valid pods with every annotation, valid or not, in every namespace, on both endpoints."""

    @fuzz(1400)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        pod = data.draw(valid_pods())
        assert not pod_schema_errors(pod), pod_schema_errors(pod)
        review = review_of(pod, data.draw)
        review["request"]["dryRun"] = data.draw(st.booleans())
        collector.review(data.draw(st.sampled_from(PATHS)), review)

    run()
    checked = collector.verify_patches()
    print(f"\nvalid pods: {collector.outcomes} {collector.reasons()}, {checked} verified")
    assert collector.outcomes.get("patched", 0) > 200
    assert collector.outcomes.get("denied", 0) > 50
    assert collector.client.sent >= 1400 + checked


def test_mutated_pods(collector: Collector) -> None:
    """Pods with wrong types, missing fields, junk values and odd keys anywhere."""

    @fuzz(1400)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        base = data.draw(valid_pods())
        opt_in(base)
        pod = data.draw(mutated(base))
        collector.review(data.draw(st.sampled_from(PATHS)), review_of(pod, data.draw))

    run()
    checked = collector.verify_patches()
    print(f"\nmutated pods: {collector.outcomes}, {checked} patches verified")
    assert collector.client.sent >= 1400


def test_mutated_reviews(collector: Collector) -> None:
    """The envelope itself mutated: wrong apiVersion/kind/uid types, missing request fields."""

    @fuzz(1400)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        pod = data.draw(valid_pods(max_containers=2))
        opt_in(pod)
        review = data.draw(mutated(review_of(pod), rounds=2))
        collector.review(data.draw(st.sampled_from(PATHS)), review)

    run()
    checked = collector.verify_patches()
    print(f"\nmutated reviews: {collector.outcomes}, {checked} patches verified")
    assert collector.outcomes.get("http-400", 0) > 100


def test_arbitrary_bytes() -> None:
    client = make_client()

    @fuzz(600)
    @given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
    def run(body: bytes) -> None:
        answer = client.post("/mutate", body)
        assert 400 <= answer.status_code < 500
        check_answer(answer.status_code, answer.content, None)

    try:
        run()
    finally:
        client.close()


def _deep(depth: int, open_: str, close: str) -> str:
    return open_ * depth + "1" + close * depth


def _shaped(review: JSON, pod_json: str) -> bytes:
    """The review with its object replaced by raw JSON text (too deep for json.dumps)."""
    text = json.dumps(review).replace('"object": null', f'"object": {pod_json}')
    return text.encode()


EXTREMES: list[tuple[str, Callable[[], bytes]]] = [
    ("deep-object", lambda: _shaped(admission_review(None), _deep(100_000, '{"a":', "}"))),
    ("deep-array", lambda: _shaped(admission_review(None), _deep(100_000, "[", "]"))),
    (
        "deep-in-pod",
        lambda: _shaped(
            admission_review(None),
            '{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"logaas/inject":"true"}},'
            '"spec":{"containers":[{"name":"app","image":"x","env":'
            + _deep(5000, "[", "]")
            + "}]}}",
        ),
    ),
    ("truncated", lambda: json.dumps(admission_review({"spec": {}})).encode()[:-7]),
    ("utf16", lambda: json.dumps(admission_review(None)).encode("utf-16")),
    ("bom", lambda: b"\xef\xbb\xbf" + json.dumps(admission_review(None)).encode()),
    (
        "lone-surrogate",
        lambda: json.dumps(admission_review(None)).replace("shop", "\\ud800").encode(),
    ),
    ("nan", lambda: json.dumps(admission_review({"spec": {"x": float("nan")}})).encode()),
    (
        "huge-int",
        lambda: json.dumps(admission_review(None)).replace("null", "1" + "0" * 5000, 1).encode(),
    ),
    (
        "duplicate-keys",
        lambda: b'{"apiVersion":"admission.k8s.io/v1","apiVersion":"x","kind":"AdmissionReview"}',
    ),
    ("empty", lambda: b""),
    ("null", lambda: b"null"),
    ("list", lambda: b"[]"),
    ("uid-huge", lambda: json.dumps(admission_review(None, uid="u" * 100_000)).encode()),
    ("uid-empty", lambda: json.dumps(admission_review(None, uid="")).encode()),
]


@pytest.mark.parametrize("name,body", EXTREMES, ids=[n for n, _ in EXTREMES])
def test_extreme_bodies(name: str, body: Callable[[], bytes]) -> None:
    client = make_client()
    try:
        for path in PATHS:
            answer = client.post(path, body())
            check_answer(answer.status_code, answer.content, None)
            assert answer.status_code < 500
    finally:
        client.close()


def _big_pod(count: int, value_size: int = 0) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "big",
            "annotations": {
                names.INJECT: "true",
                "a/b~c": "x" * value_size,
                "真/名": "\u202e" * 10,
                names.LABELS: json.dumps({f"k{i}": "v" for i in range(50)}),
            },
        },
        "spec": {
            "containers": [
                {"name": f"c{i}", "image": "busybox", "ports": [{"containerPort": 2020 + i}]}
                for i in range(count)
            ]
        },
    }


def test_thousand_containers_and_huge_values(collector: Collector) -> None:
    few = _big_pod(1000)
    few["metadata"]["annotations"][names.CONTAINERS] = "c0,c500,c999"
    for pod in (few, _big_pod(3, value_size=2_500_000)):
        for path in PATHS:
            response = collector.review(path, review_of(pod))
            assert response is not None and response["allowed"]
    assert collector.outcomes == {"patched": 4}
    assert collector.verify_patches(batch=2) == 4
    # The sidecar's HTTP port avoids the 1000 ports the app containers use.
    pod, ops, *_ = collector.patched[0]
    sidecar = next(op["value"][0] for op in ops if op["path"] == "/spec/initContainers")
    assert sidecar["ports"][0]["containerPort"] == 3020
    # A config for all 1000 would not fit in the API server's 256 KiB of annotations: a clear
    # 400 instead of a patch the API server would reject.
    for path in PATHS:
        response = collector.review(path, review_of(_big_pod(1000)))
        assert response is not None and response["allowed"] is False
        assert response["status"]["code"] == 400
        assert names.CONTAINERS in response["status"]["message"]
        assert "262144" in response["status"]["message"]


@requires_corpus
def test_real_world_pods(collector: Collector) -> None:
    """Every pod and pod template of the Kubernetes documentation's examples, opted in."""
    pods = corpus_pods(opt_in=True)
    assert len(pods) > 150
    for _, pod in pods:
        for path in PATHS:
            collector.review(path, review_of(pod))
    collector.verify_patches()
    print(f"\ncorpus: {collector.outcomes}")
    assert collector.outcomes.get("patched", 0) > 250


def test_batched_patch_matches_single_kubectl_and_strict_validator() -> None:
    """The fast helpers agree with tests/kube.py's one-at-a-time originals."""
    from tests.kube import kubectl_patch

    client = make_client()
    collector = Collector(client)
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"annotations": {names.INJECT: "true"}},
            "spec": {"containers": [{"name": "app", "image": "x", "volumeMounts": []}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "annotations": {names.INJECT: "true", "a/b~c": "1"}},
            "spec": {
                "containers": [{"name": "app", "image": "x"}],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
        },
    ]
    for pod in pods:
        collector.review("/mutate", review_of(pod))
    items = [(pod, ops) for pod, ops, *_ in collector.patched]
    assert len(items) == 2
    assert kubectl_patch_many(items) == [kubectl_patch(p, ops) for p, ops in items]
    for _, result in zip(pods, kubectl_patch_many(items), strict=True):
        validate_strict(result)
        assert pod_schema_errors(result) == []
    broken = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "nope"}}
    assert pod_schema_errors(broken)
    with pytest.raises(Exception):  # noqa: B017 - kubernetes_validate's own error type
        validate_strict(broken)
    client.close()


# --- over real TLS ------------------------------------------------------------------------------


def test_fuzz_over_real_tls(cert_dir: Path, tmp_path: Path) -> None:
    """A smaller batch against a real `logaas-webhook serve`, CA-verified, concurrently."""
    bodies: list[tuple[str, bytes, str | None]] = []

    @fuzz(200)
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        pod = data.draw(st.one_of(valid_pods(), valid_pods().flatmap(mutated)))
        opt_in(pod)
        review = review_of(pod, data.draw)
        uid: str | None = review["request"]["uid"]
        body = json.dumps(review).encode()
        if data.draw(st.integers(0, 9)) == 0:
            body, uid = body[: data.draw(st.integers(0, len(body) - 1))], None
        bodies.append((data.draw(st.sampled_from(PATHS)), body, uid))

    draw()
    import httpx

    with serve(cert_dir, tmp_path) as server, server.client(timeout=20) as client:

        def send(item: tuple[str, bytes, str | None]) -> tuple[int, bytes, str | None]:
            path, body, uid = item
            answer = client.post(path, content=body, headers={"content-type": "application/json"})
            return answer.status_code, answer.content, uid

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, bodies))
        for status, content, uid in answers:
            check_answer(status, content, uid)
        refused = [content[:200] for status, content, uid in answers if uid and status != 200]
        assert not refused, refused  # only the deliberately truncated bodies get a 400
        assert sum(1 for status, *_ in answers if status == 200) >= 50
        with pytest.raises(httpx.ConnectError):  # the server's CA is required
            httpx.get(f"{server.url}/healthz", verify=True)
