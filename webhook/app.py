"""The HTTP edge: a FastAPI app whose admission endpoints are raw ASGI for speed.

Reviews read the raw body (with a size cap and a slow-client timeout) and never answer 5xx:
bad input is a 4xx, everything else an AdmissionReview.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook.metrics import Metrics
from webhook.mutation import Injector, Mode
from webhook.review import BadReview, NamespaceLookup, Reviewer
from webhook.settings import Settings

MAX_BODY = 3 * 1024 * 1024

review_log = logging.getLogger("logaas_webhook.review")


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise _Reject(400, "invalid Content-Length header") from None
            if length > MAX_BODY:
                raise _Reject(413, f"request body of {length} bytes exceeds {MAX_BODY} (3 MiB)")
    chunks: list[bytes] = []
    size = 0
    more = True
    # A slow body is timed out by the server's connection protocol (webhook.slowclient), which
    # answers 408 itself: no timer per review here.
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Reject(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _Reject(413, f"request body exceeds {MAX_BODY} bytes (3 MiB)")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MutateEndpoint:
    """POST handler for one webhook entry (the path carries the namespace decision)."""

    def __init__(
        self,
        mode: Mode,
        injector: Injector,
        metrics: Metrics,
        namespaces: NamespaceLookup | None,
    ) -> None:
        self.mode = mode
        self.endpoint = "/mutate" if mode is Mode.POD else "/mutate/namespace"
        self.injector = injector
        self.metrics = metrics
        self.namespaces = namespaces
        self.review = Reviewer(mode, injector, namespaces)
        self.latency = metrics.latency.labels(self.endpoint)
        # Label children by value: .labels() costs more than the increment itself.
        self._outcomes: dict[tuple[str, str], Any] = {}
        self._injections: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if scope["method"] != "POST":
            await _send(send, 405, b'{"error":"use POST with an AdmissionReview"}')
            return
        try:
            body = await _read_body(scope, receive)
            result = self.review(body)
        except _Reject as err:
            await self._reject(send, err.status, err.message)
            return
        except BadReview as err:
            await self._reject(send, 400, str(err))
            return
        await _send(send, 200, result.body)
        elapsed = time.perf_counter() - started
        decision = result.decision
        self.latency.observe(elapsed)
        key = (decision.outcome, decision.reason)
        counter = self._outcomes.get(key)
        if counter is None:
            counter = self._outcomes[key] = self.metrics.reviews.labels(self.endpoint, *key)
        counter.inc()
        if decision.outcome == "injected" and result.namespace:
            injected = self._injections.get(result.namespace)
            if injected is None:
                injected = self.metrics.injections.labels(result.namespace)
                self._injections[result.namespace] = injected
            injected.inc()
        if review_log.isEnabledFor(logging.INFO):
            fields = {
                "uid": result.uid,
                "endpoint": self.endpoint,
                "namespace": result.namespace,
                "pod": result.pod,
                "decision": decision.outcome,
                "reason": decision.reason,
                "allowed": decision.allowed,
                "dry_run": result.dry_run,
                "duration_ms": round(elapsed * 1000, 3),
            }
            if _direct_log is not None and _direct_log.active():
                _direct_log.write(fields)
            else:
                review_log.info("review", extra={"review": fields})

    async def _reject(self, send: Send, status: int, message: str) -> None:
        self.metrics.rejected.labels(str(status)).inc()
        await _send(send, status, orjson.dumps({"error": message}))


class WebhookApp(FastAPI):
    """FastAPI with the admission paths dispatched before its middleware stack.

    Reviews are raw ASGI endpoints that answer every outcome themselves; the ~10 layers of
    FastAPI/Starlette middleware and routing in front of them cost as much as the review's
    engine work. Every other path (and /mutate/ with a slash, etc.) goes through FastAPI.
    """

    mutate_paths: dict[str, MutateEndpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.mutate_paths.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    ready: Callable[[], bool] = lambda: True,
    namespaces: NamespaceLookup | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The webhook app. `ready` says whether a certificate is loaded and caches are synced."""
    injector = Injector(settings)
    metrics = metrics or Metrics()
    app = WebhookApp(title="logaas-webhook", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics
    app.state.injector = injector
    app.mutate_paths = {}
    for mode in Mode:
        endpoint = MutateEndpoint(mode, injector, metrics, namespaces)
        app.mutate_paths[endpoint.endpoint] = endpoint
        app.router.routes.append(Route(endpoint.endpoint, endpoint, methods=None))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class DirectReviewLog:
    """Review lines written straight to the log stream's file descriptor.

    `serve` logs one JSON line per review to stderr through its own handler; going through
    `logging` for each (LogRecord, handler chain, formatter, text layer) cost ~20% of the
    server's throughput on cached reviews. This writes the same line (same keys, order and
    timestamp format as json_log_formatter) with one orjson call and one write. It is used
    only while serve's configure_logging handler is the only one in the way (anyone who
    reconfigures logging gets the lines through logging again); the level is still honoured
    (review_log.isEnabledFor). A failed write drops the line, as logging's handler would.
    """

    def __init__(self, fd: int, handler: logging.Handler) -> None:
        self.fd = fd
        self.handler = handler
        self._root = logging.getLogger()
        self._second = -1
        self._head: dict[str, Any] = {}

    def active(self) -> bool:
        handlers = self._root.handlers
        return (
            len(handlers) == 1
            and handlers[0] is self.handler
            and not self.handler.filters
            and self.handler.level <= logging.INFO
            and not review_log.handlers
            and not review_log.filters
            and review_log.propagate
        )

    def write(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._head = {
                "ts": time.strftime(TIME_FORMAT, time.localtime(now)),
                "level": "info",
                "logger": review_log.name,
                "msg": "review",
            }
        data = orjson.dumps({**self._head, **fields}, option=orjson.OPT_APPEND_NEWLINE)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            pass


_direct_log: DirectReviewLog | None = None


def log_reviews_directly(fd: int | None, handler: logging.Handler | None = None) -> None:
    """Write review lines straight to `fd`, the stream of `handler`, the root logger's only
    handler; None: through logging."""
    global _direct_log
    _direct_log = DirectReviewLog(fd, handler) if fd is not None and handler else None


def json_log_formatter() -> logging.Formatter:
    """One JSON object per line; review lines carry their fields at the top level."""

    class _Formatter(logging.Formatter):
        _second = -1
        _ts = ""

        def format(self, record: logging.LogRecord) -> str:
            second = int(record.created)
            if second != self._second:  # strftime once a second, not once a line
                self._second, self._ts = second, self.formatTime(record, TIME_FORMAT)
            line: dict[str, Any] = {
                "ts": self._ts,
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
            fields = getattr(record, "review", None)
            if isinstance(fields, dict):
                line.update(fields)
            if record.exc_info:
                line["exc"] = self.formatException(record.exc_info)
            return orjson.dumps(line).decode()

    return _Formatter()
