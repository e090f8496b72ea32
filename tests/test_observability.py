"""What an operator sees: /metrics and the JSON review log of a real `logaas-webhook serve`
after a known series of reviews."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import admission_review, pod
from tests.harness import Server, check_answer, serve
from webhook import certs, names
from webhook.metrics import LATENCY_BUCKETS

CONFIG = """
group_policy:
  "team-*": [team-logs]
"""
SECRET = "SEKRET-observability-3f1c"

ON = {names.INJECT: "true"}
# (endpoint, namespace, annotations, expected outcome, expected reason)
SERIES: list[tuple[str, str, dict[str, str], str, str]] = [
    ("/mutate", "shop", {names.INJECT: "true"}, "injected", "injected"),
    ("/mutate", "shop", {names.INJECT: "true"}, "injected", "injected"),
    ("/mutate", "team-a", {**ON, names.GROUP_ID: "team-logs"}, "injected", "injected"),
    ("/mutate/namespace", "payments", {}, "injected", "injected"),
    ("/mutate", "shop", {}, "skipped", "not-requested"),
    ("/mutate/namespace", "payments", {names.INJECT: "false"}, "skipped", "opted-out"),
    ("/mutate", "kube-system", {names.INJECT: "true"}, "skipped", "excluded-namespace"),
    ("/mutate", "shop", {**ON, names.STATUS: "injected"}, "skipped", "already-injected"),
    ("/mutate", "shop", {names.INJECT: "maybe"}, "denied", "invalid-annotation"),
    ("/mutate/namespace", "team-b", {names.GROUP_ID: "other-logs"}, "denied", "group-policy"),
]  # fmt: skip


@pytest.fixture(scope="module")
def observed(
    cert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, Any], list[dict[str, Any]]]]:
    """Run the series (plus two malformed requests) and collect /metrics and the log."""
    with serve(cert_dir, tmp_path_factory.mktemp("obs"), config=CONFIG) as server:
        with server.client(timeout=10) as client:
            for index, (path, namespace, annotations, _, _) in enumerate(SERIES):
                obj = pod(annotations, name=f"pod-{index}", namespace=namespace)
                obj["spec"]["containers"][0]["env"] = [{"name": "TOKEN", "value": SECRET}]
                review = admission_review(obj, uid=f"uid-{index}", namespace=namespace)
                answer = client.post(path, json=review)
                check_answer(answer.status_code, answer.content, f"uid-{index}")
            assert client.post("/mutate", content=b"{").status_code == 400
            assert client.post("/mutate", content=b" " * (3 * 1024 * 1024 + 1)).status_code == 413
            text = client.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        lines = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
        yield server, families, lines


def samples(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def test_reviews_by_endpoint_outcome_and_reason(observed: Any) -> None:
    _, families, _ = observed
    got = samples(families["logaas_webhook_reviews"], "_total")
    want = Counter((path, outcome, reason) for path, _, _, outcome, reason in SERIES)
    assert got == {
        (("endpoint", path), ("outcome", outcome), ("reason", reason)): float(count)
        for (path, outcome, reason), count in want.items()
    }
    rejected = samples(families["logaas_webhook_rejected_requests"], "_total")
    assert rejected == {(("code", "400"),): 1.0, (("code", "413"),): 1.0}


def test_latency_histogram_has_apiserver_buckets(observed: Any) -> None:
    _, families, _ = observed
    assert LATENCY_BUCKETS == (0.005, 0.025, 0.1, 0.5, 1.0, 2.5)
    family = families["logaas_webhook_review_duration_seconds"]
    assert family.type == "histogram"
    buckets: dict[str, dict[str, float]] = {}
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            buckets.setdefault(sample.labels["endpoint"], {})[sample.labels["le"]] = sample.value
    for endpoint, by_le in buckets.items():
        assert list(by_le) == ["0.005", "0.025", "0.1", "0.5", "1.0", "2.5", "+Inf"]
        expected = sum(1 for path, *_ in SERIES if path == endpoint)
        assert by_le["+Inf"] == expected
        values = list(by_le.values())
        assert values == sorted(values)  # cumulative
    assert set(buckets) == {"/mutate", "/mutate/namespace"}


def test_injections_by_namespace(observed: Any) -> None:
    _, families, _ = observed
    got = samples(families["logaas_webhook_injections"], "_total")
    assert got == {
        (("namespace", "shop"),): 2.0,
        (("namespace", "team-a"),): 1.0,
        (("namespace", "payments"),): 1.0,
    }


def test_certificate_expiry_gauge(observed: Any) -> None:
    server, families, _ = observed
    [(_, value)] = samples(families["logaas_webhook_certificate_expiry_timestamp_seconds"]).items()
    expected = certs.not_after((server.cert_dir / certs.CERT_FILE).read_bytes())
    assert value == pytest.approx(expected.timestamp())
    assert value > dt.datetime.now(dt.UTC).timestamp()


def test_one_json_log_line_per_review(observed: Any) -> None:
    _, _, lines = observed
    reviews = [line for line in lines if line.get("logger") == "logaas_webhook.review"]
    assert [line["uid"] for line in reviews] == [f"uid-{i}" for i in range(len(SERIES))]
    for index, (line, (path, namespace, _, outcome, reason)) in enumerate(
        zip(reviews, SERIES, strict=True)
    ):
        assert line["namespace"] == namespace
        assert line["pod"] == f"pod-{index}"
        assert line["endpoint"] == path
        assert line["decision"] == outcome
        assert line["reason"] == reason
        assert isinstance(line["duration_ms"], float | int) and 0 <= line["duration_ms"] < 2500
        assert line["level"] == "info" and line["ts"]
    # Every line of the process log is one JSON object; none carries the pod's env value.
    assert all(isinstance(line, dict) for line in lines)
    assert SECRET not in json.dumps(lines)
