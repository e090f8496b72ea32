"""Run the real `logaas-webhook serve` in a subprocess and talk to it over verified TLS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def verified_context(*ca_files: Path) -> ssl.SSLContext:
    """A client context that trusts only the given CA files and checks the host name."""
    ctx = ssl.create_default_context(cafile=str(ca_files[0]))
    for extra in ca_files[1:]:
        ctx.load_verify_locations(cafile=str(extra))
    return ctx


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_server(
    cert_dir: Path,
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ca: Path | None = None,
) -> Iterator[Server]:
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    command = [
        sys.executable, "-m", "webhook.cli", "serve",
        "--port", str(port), "--cert-dir", str(cert_dir), *args,
    ]  # fmt: skip
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAAS_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**clean_env, **(env or {})},
            cwd=workdir,
        )  # fmt: skip
    server = Server(process, f"https://127.0.0.1:{port}", log_path)
    try:
        wait_ready(server, ca or cert_dir / "ca.crt")
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(server: Server, ca: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited: {server.log()}")
        if ca.is_file():
            try:
                resp = httpx.get(f"{server.url}/readyz", verify=verified_context(ca), timeout=2)
                if resp.status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s: {server.log()}")
