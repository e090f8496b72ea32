"""Example application for LogaaS: writes random JSON log lines to stdout and to a log file.

A corrected version of the generator in Cloud.ru's "Managed Kubernetes logs" tutorial. Each
line is one JSON object with ``timestamp``, ``level``, ``labels`` and ``message``. Lines go to
stdout (``kubectl logs``, the DaemonSet mode) and to ``$LOG_DIR/$LOG_FILE``, the shared volume
the injected Fluent Bit sidecar tails. The file rotates by size (``app.log`` -> ``app.log.1``),
so the sidecar's default glob ``*.log`` never reads a rotated copy twice.

A tiny HTTP server answers ``GET /healthz`` on ``$HTTP_PORT`` for probes and the Service.
Only the standard library is used. Settings come from the environment:

    LOG_DIR            directory of the log file            /var/log/app
    LOG_FILE           file name                            app.log
    LOG_MAX_BYTES      rotate when the file reaches this    10485760 (10 MiB; 0 = never)
    LOG_BACKUP_COUNT   rotated files kept                   3
    LOG_INTERVAL_MIN   shortest pause between lines (s)     0.1
    LOG_INTERVAL_MAX   longest pause between lines (s)      2.0
    LOG_COUNT          stop after this many lines           0 (run until SIGTERM)
    APP_NAME           the ``app`` label                    logger
    HTTP_PORT          health endpoint port (0 = none)      5000
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import random
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
# The tutorial's level names.
LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}

MESSAGE_TEMPLATES = (
    "Data received [ID: {id}]",
    "Processing request from user {user}",
    "Failed to connect to database {db}",
    "Connection timeout after {sec} seconds",
    "File {file} not found",
    "Authentication failed for {service}",
    "Received {size} bytes from {ip}",
    "Task {task} completed in {ms}ms",
    "Cache miss for key {key}",
    "Starting backup process {job_id}",
)

_FIELDS: dict[str, Callable[[random.Random], object]] = {
    "id": lambda r: r.randint(1000, 9999),
    "user": lambda r: f"user_{r.randint(100, 999)}",
    "db": lambda r: r.choice(["primary", "replica", "archive"]),
    "sec": lambda r: r.randint(1, 30),
    "file": lambda r: f"/var/log/{r.choice(['app', 'system', 'auth'])}.log",
    "service": lambda r: r.choice(["API", "SSH", "Database"]),
    "size": lambda r: r.randint(512, 4096),
    "ip": lambda r: ".".join(str(r.randint(1, 255)) for _ in range(4)),
    "task": lambda r: r.choice(["cleanup", "backup", "sync"]),
    "ms": lambda r: r.randint(100, 5000),
    "key": lambda r: f"{r.getrandbits(32):08x}",
    "job_id": lambda r: f"JOB-{r.randint(10000, 99999)}",
}


@dataclass(frozen=True)
class Config:
    log_dir: Path = Path("/var/log/app")
    log_file: str = "app.log"
    max_bytes: int = 10 * 1024 * 1024
    backup_count: int = 3
    interval_min: float = 0.1
    interval_max: float = 2.0
    count: int = 0
    app_name: str = "logger"
    http_port: int = 5000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        config = cls(
            log_dir=Path(env.get("LOG_DIR", str(cls.log_dir))),
            log_file=env.get("LOG_FILE", cls.log_file),
            max_bytes=int(env.get("LOG_MAX_BYTES", cls.max_bytes)),
            backup_count=int(env.get("LOG_BACKUP_COUNT", cls.backup_count)),
            interval_min=float(env.get("LOG_INTERVAL_MIN", cls.interval_min)),
            interval_max=float(env.get("LOG_INTERVAL_MAX", cls.interval_max)),
            count=int(env.get("LOG_COUNT", cls.count)),
            app_name=env.get("APP_NAME", cls.app_name),
            http_port=int(env.get("HTTP_PORT", cls.http_port)),
        )
        if config.max_bytes < 0 or config.backup_count < 0 or config.count < 0:
            raise ValueError("LOG_MAX_BYTES, LOG_BACKUP_COUNT and LOG_COUNT must be >= 0")
        if not 0 <= config.interval_min <= config.interval_max:
            raise ValueError("need 0 <= LOG_INTERVAL_MIN <= LOG_INTERVAL_MAX")
        if "/" in config.log_file or not config.log_file:
            raise ValueError("LOG_FILE must be a plain file name")
        return config

    @property
    def log_path(self) -> Path:
        return self.log_dir / self.log_file


def generate_message(rng: random.Random) -> str:
    template = rng.choice(MESSAGE_TEMPLATES)
    values = {name: make(rng) for name, make in _FIELDS.items() if f"{{{name}}}" in template}
    return template.format(**values)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ms, Z), level, labels, message."""

    def __init__(self, labels: Mapping[str, Any]) -> None:
        super().__init__()
        self.labels = dict(labels)

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": LEVEL_NAMES.get(record.levelno, record.levelname),
            "labels": {**self.labels, **getattr(record, "labels", {})},
            "message": record.getMessage(),
        }
        return json.dumps(entry, ensure_ascii=False)


def build_logger(config: Config) -> logging.Logger:
    """A logger writing JSON lines to stdout and, if the directory is writable, to the file."""
    formatter = JsonLineFormatter({"app": config.app_name, "host": socket.gethostname()})
    logger = logging.getLogger(f"generator.{id(config)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(formatter)
    logger.addHandler(stdout)
    try:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(
            config.log_path,
            maxBytes=config.max_bytes,
            backupCount=config.backup_count,
            encoding="utf-8",
        )
    except OSError as exc:
        # Logging must never keep the application from running: carry on with stdout only.
        print(f"generator: cannot write {config.log_path}: {exc}; stdout only", file=sys.stderr)
    else:
        to_file.setFormatter(formatter)
        logger.addHandler(to_file)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path in ("/", "/healthz")
        body = b"ok\n" if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep probe noise out of the logs
        pass


def start_health_server(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("", port), _Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def run(config: Config, stop: threading.Event, seed: int | None = None) -> int:
    """Write lines until `stop` is set or `config.count` lines are out; return the count."""
    rng = random.Random(seed)
    logger = build_logger(config)
    written = 0
    try:
        while not stop.is_set() and (config.count == 0 or written < config.count):
            logger.log(
                rng.choice(LEVELS),
                generate_message(rng),
                extra={"labels": {"pid": os.getpid(), "random": rng.randint(1, 1000)}},
            )
            written += 1
            if config.interval_max > 0:
                stop.wait(rng.uniform(config.interval_min, config.interval_max))
    finally:
        close_logger(logger)
    return written


def main() -> int:
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"generator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    # As PID 1 in a container, Python would ignore SIGTERM without a handler and the pod
    # would wait its whole grace period; stop the loop promptly instead.
    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = start_health_server(config.http_port) if config.http_port else None
    try:
        run(config, stop)
    finally:
        if server is not None:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
