"""Prometheus metrics of one webhook process (a registry per app, so tests stay isolated)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# kube-apiserver's admission webhook latency buckets.
LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reviews = Counter(
            "logaas_webhook_reviews",
            "Admission reviews answered, by endpoint, outcome and reason.",
            ["endpoint", "outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "logaas_webhook_review_duration_seconds",
            "Time to answer an admission review.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.injections = Counter(
            "logaas_webhook_injections",
            "Pods injected with the logaas sidecar, by namespace.",
            ["namespace"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "logaas_webhook_rejected_requests",
            "Requests answered with an HTTP error (malformed review, body too large, timeout).",
            ["code"],
            registry=self.registry,
        )
        self.cert_expiry = Gauge(
            "logaas_webhook_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires.",
            registry=self.registry,
        )

    def watch_certificate(self, expiry: Callable[[], float]) -> None:
        self.cert_expiry.set_function(expiry)
