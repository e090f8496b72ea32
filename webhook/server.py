"""Run the app under uvicorn over TLS that follows rotated certificate files."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from webhook import slowclient
from webhook.app import create_app, json_log_formatter, log_reviews_directly
from webhook.metrics import Metrics
from webhook.nscache import NamespaceCache
from webhook.review import NamespaceLookup
from webhook.settings import Settings
from webhook.tlsreload import CertificateSource

log = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(f"LOGAAS_{name}")
    return int(value) if value else default


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    cert_dir: Path = Path("certs")
    workers: int = 1
    cert_reload_seconds: float = 10.0
    # Bounded concurrency: beyond this many open connections+tasks, uvicorn answers 503
    # instead of queueing without limit (kube-apiserver retries on its side).
    limit_concurrency: int = field(default_factory=lambda: _env_int("LIMIT_CONCURRENCY", 1000))
    keep_alive_seconds: int = 30
    graceful_shutdown_seconds: int = field(
        default_factory=lambda: _env_int("GRACEFUL_SHUTDOWN_SECONDS", 20)
    )
    # Slow clients: the request head must arrive within this many seconds (slowloris).
    header_timeout_seconds: float = field(
        default_factory=lambda: float(_env_int("HEADER_TIMEOUT_SECONDS", 10))
    )
    backlog: int = 2048
    # Watch namespaces for their logaas/* defaults (needs API access; off for local runs).
    namespace_watch: bool = False
    kubeconfig: str | None = None


def configure_logging(level: str = "INFO") -> None:
    # Every review logs a line: skip the LogRecord fields the JSON formatter never prints
    # (the caller's file and line need a stack walk; thread and process fields).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(json_log_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Review lines (one per admission) go to the same stream without the logging machinery.
    try:
        log_reviews_directly(sys.stderr.fileno(), handler)
    except (AttributeError, OSError, ValueError):  # stderr without a file descriptor
        log_reviews_directly(None)


def _reload_loop(source: CertificateSource, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        source.reload()


def _uvicorn_config(app: Any, options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=slowclient.protocol_class(options.header_timeout_seconds),
        lifespan="off",
        log_config=None,
        access_log=False,
        # kube-apiserver calls the Service directly; no proxy headers to trust (and the
        # middleware would cost every request).
        proxy_headers=False,
        timeout_keep_alive=options.keep_alive_seconds,
        limit_concurrency=options.limit_concurrency,
        timeout_graceful_shutdown=options.graceful_shutdown_seconds,
        backlog=options.backlog,
    )


def serve_on(sock: socket.socket, settings: Settings, options: ServeOptions) -> None:
    """Serve on a bound socket until SIGTERM/SIGINT; in-flight reviews finish first."""
    source = CertificateSource(options.cert_dir)
    source.reload()
    metrics = Metrics()
    metrics.watch_certificate(lambda: source.not_after.timestamp() if source.not_after else 0.0)
    namespaces: NamespaceLookup | None = None
    cache: NamespaceCache | None = None
    if options.namespace_watch:
        from webhook.kubeclient import api_client

        cache = NamespaceCache(api_client(options.kubeconfig))
        cache.start()
        namespaces = cache.get

    def ready() -> bool:
        return source.ready and (cache is None or cache.synced)

    app = create_app(settings, ready=ready, namespaces=namespaces, metrics=metrics)
    config = _uvicorn_config(app, options)
    config.load()
    # uvicorn would build a static SSLContext from files; this one follows rotations.
    config.ssl = source.server_context()
    stop = threading.Event()
    threading.Thread(
        target=_reload_loop,
        args=(source, options.cert_reload_seconds, stop),
        name="cert-reload",
        daemon=True,
    ).start()
    _settle_heap()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        stop.set()
        if cache is not None:
            cache.stop()


def _settle_heap() -> None:
    """Before serving: collect start-up garbage, hand freed heap back, freeze what is left.

    gc.freeze() moves the ~65k objects of the imported modules and the app out of the
    collector's reach, so a full collection during serving walks only what reviews made
    (a ~16 ms pause each time otherwise, right in the p99).
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    gc.freeze()


def bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, options: ServeOptions, background: Any = None) -> None:
    """Bind, then serve in this process or in `workers` forked processes sharing the socket.

    `background(stop_event)` starts housekeeping threads (certificate renewal) once, in the
    parent, after any fork.
    """
    sock = bind(options.host, options.port, options.backlog)
    log.info(
        "serving https://%s:%d (workers=%d, certificates in %s)",
        options.host,
        options.port,
        options.workers,
        options.cert_dir,
    )
    stop = threading.Event()
    if options.workers <= 1:
        if background is not None:
            background(stop)
        try:
            serve_on(sock, settings, options)
        finally:
            stop.set()
        return
    # Several worker processes accept on one shared socket; each follows the certificate files.
    children: list[int] = []
    for _ in range(options.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                serve_on(sock, settings, options)
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    # The parent never accepts: holding its copy of the listening socket open would let the
    # kernel keep completing handshakes for connections nobody serves once the workers close
    # theirs at SIGTERM (clients hang instead of being refused and retrying elsewhere).
    sock.close()
    if background is not None:
        background(stop)

    def forward(signum: int, _frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        os.waitpid(pid, 0)
    stop.set()
