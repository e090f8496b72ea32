"""Shared parts of the hardening tests: a fast in-process client, response checks, batched
kube-apiserver patch semantics, a cached strict pod schema and a real `serve` subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from tests.kube import K8S_VERSIONS, PatchError, kubectl, validator

ROOT = Path(__file__).resolve().parent.parent
JSON = dict[str, Any]


# --- strict schema (tests/kube.py's cached validator) ---------------------------------


def pod_schema_errors(pod: Any) -> list[str]:
    """Strict-schema problems of a v1 Pod under 1.29 and the newest schema ([] when valid)."""
    if not isinstance(pod, dict) or pod.get("apiVersion") != "v1" or pod.get("kind") != "Pod":
        return ["not a v1 Pod"]
    errors = []
    for version in K8S_VERSIONS:
        checker = validator("Pod", "v1", version)
        assert checker is not None
        error = jsonschema.exceptions.best_match(checker.iter_errors(pod))
        if error is not None:
            errors.append(f"{version}: {error.json_path}: {error.message[:200]}")
    return errors


# --- kube-apiserver patch semantics, batched --------------------------------------------------


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# Characters YAML 1.2 does not allow unescaped (outside its printable set); json.dumps leaves
# them raw with ensure_ascii=False.
_YAML_UNPRINTABLE = re.compile("[\x7f-\x84\x86-\x9f\ufffe\uffff]")


def _yaml_safe_json(value: Any) -> str:
    """JSON that kubectl's YAML reader takes: raw UTF-8 (it rejects the surrogate-pair escapes
    json.dumps writes for astral characters), with the characters YAML cannot hold raw written
    as JSON escapes. The same JSON document either way."""
    text = json.dumps(value, ensure_ascii=False)
    return _YAML_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _carrier_patch(items: Sequence[tuple[JSON, list[JSON]]]) -> tuple[list[JSON] | None, str]:
    carrier: JSON = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "batch"},
        "data": {"objects": [obj for obj, _ in items]},
    }
    ops: list[JSON] = []
    for index, (_, patch) in enumerate(items):
        prefix = f"/data/objects/{index}"
        for op in patch:
            moved = dict(op)
            moved["path"] = prefix + op["path"]
            ops.append(moved)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "obj.json")
        patch_file = Path(tmp, "patch.json")
        src.write_text(_yaml_safe_json(carrier), encoding="utf-8")
        patch_file.write_text(_yaml_safe_json(ops), encoding="utf-8")
        proc = subprocess.run(
            [kubectl(), "patch", "--local", "--type=json", "-f", str(src),
             "--patch-file", str(patch_file), "-o", "json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        return None, proc.stderr.strip()
    objects: list[JSON] = json.loads(proc.stdout)["data"]["objects"]
    assert len(objects) == len(items)
    return objects, ""


def kubectl_patch_many(items: Sequence[tuple[JSON, list[JSON]]]) -> list[JSON]:
    """Apply many (object, RFC 6902 patch) pairs with one `kubectl patch --local --type=json`.

    The objects become elements of one array inside a carrier document and every op's path is
    prefixed with that element's pointer: evanphx/json-patch resolves each op relative to its
    parent the same way at any depth, so each result equals kubectl_patch(obj, patch) (the
    carrier also lets kubectl read objects whose own kind is garbage). When the batch fails,
    each pair is applied alone to name the failing one (PatchError).
    """
    if not items:
        return []
    objects, error = _carrier_patch(items)
    if objects is not None:
        return objects
    for obj, patch in items:  # find the culprit and report it with its own input
        if _carrier_patch([(obj, patch)])[0] is None:
            raise PatchError(
                f"kubectl patch failed: {_carrier_patch([(obj, patch)])[1]}\n"
                f"patch: {json.dumps(patch)[:3000]}\nobject: {json.dumps(obj)[:3000]}"
            )
    raise PatchError(f"batched kubectl patch failed: {error[:2000]}")


# --- responses --------------------------------------------------------------------------------


class BadAnswer(AssertionError):
    pass


def decode_patch(response: JSON) -> list[JSON]:
    if "patch" not in response:
        return []
    if response.get("patchType") != "JSONPatch":
        raise BadAnswer(f"patch without patchType JSONPatch: {response.get('patchType')!r}")
    ops = json.loads(base64.b64decode(response["patch"], validate=True))
    if not isinstance(ops, list) or not ops:
        raise BadAnswer(f"patch is not a non-empty list of operations: {ops!r}")
    for op in ops:
        if not (isinstance(op, dict) and op.get("op") == "add" and isinstance(op.get("path"), str)):
            raise BadAnswer(f"unexpected patch operation {op!r}")
        if "value" not in op or not op["path"].startswith("/"):
            raise BadAnswer(f"malformed add operation {op!r}")
    return ops


def check_answer(status: int, body: bytes, uid: str | None) -> JSON | None:
    """A well-formed AdmissionReview response (returned) or a 4xx JSON error (None).

    Anything else (a 5xx, a non-JSON body, a wrong uid, an internal error hidden in a 200)
    raises BadAnswer.
    """
    if 400 <= status < 500:
        try:
            error = json.loads(body)
        except ValueError:
            raise BadAnswer(f"HTTP {status} with a non-JSON body {body[:200]!r}") from None
        if not (isinstance(error, dict) and isinstance(error.get("error"), str) and error["error"]):
            raise BadAnswer(f"HTTP {status} without an error message: {body[:200]!r}")
        return None
    if status != 200:
        raise BadAnswer(f"HTTP {status}: {body[:300]!r}")
    review = json.loads(body)
    if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
        raise BadAnswer(f"not an AdmissionReview v1: {body[:300]!r}")
    response = review.get("response")
    if not isinstance(response, dict) or set(review) != {"apiVersion", "kind", "response"}:
        raise BadAnswer(f"bad envelope: {body[:300]!r}")
    if uid is not None and response.get("uid") != uid:
        raise BadAnswer(f"response.uid {response.get('uid')!r} != request.uid {uid!r}")
    if not isinstance(response.get("allowed"), bool):
        raise BadAnswer(f"response.allowed is not a bool: {response!r}")
    warnings = response.get("warnings", [])
    if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        raise BadAnswer(f"warnings must be a list of strings: {warnings!r}")
    if any("internal error" in w for w in warnings):
        raise BadAnswer(f"internal error reported in warnings: {warnings!r}")
    if response["allowed"]:
        if "status" in response:
            raise BadAnswer(f"allowed response with a status: {response!r}")
        decode_patch(response)
    else:
        st = response.get("status")
        if not (isinstance(st, dict) and isinstance(st.get("code"), int)):
            raise BadAnswer(f"denial without status.code: {response!r}")
        if not 400 <= st["code"] < 500 or not st.get("message"):
            raise BadAnswer(f"denial must be a 4xx with a message: {st!r}")
        if "patch" in response:
            raise BadAnswer("denial with a patch")
    return response


# --- in-process client ------------------------------------------------------------------------


@dataclass
class InProcess:
    """Drives the ASGI app in this process on one event loop (thousands of requests a second)."""

    app: Any
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    sent: int = 0

    def __post_init__(self) -> None:
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="https://webhook")

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        self.sent += 1
        call = self.client.post(
            path, content=body, headers=headers or {"content-type": "application/json"}
        )
        return self.loop.run_until_complete(asyncio.wait_for(call, 30))

    def get(self, path: str) -> httpx.Response:
        return self.loop.run_until_complete(self.client.get(path))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


# --- a real `logaas-webhook serve` ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    cert_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tls_socket(self, timeout: float = 10) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.ssl_context().wrap_socket(raw, server_hostname="localhost")


@contextlib.contextmanager
def serve(
    cert_dir: Path,
    tmp: Path,
    *,
    config: str | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Run `logaas-webhook serve` as a subprocess; wait until /readyz answers over verified TLS."""
    port = free_port()
    cmd = [sys.executable, "-m", "webhook.cli", "serve", "--port", str(port),
           "--cert-dir", str(cert_dir), *args]  # fmt: skip
    if config is not None:
        config_file = tmp / f"config-{port}.yaml"
        config_file.write_text(config)
        cmd += ["--config", str(config_file)]
    log_path = tmp / f"serve-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("LOGAAS_")}
    child_env.update(env or {})
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=child_env
        )
    server = Server(proc, port, cert_dir, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited {proc.returncode}:\n{server.log_text()}")
            try:
                with server.client(timeout=2) as client:
                    if client.get("/readyz").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready in 30s:\n{server.log_text()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
