"""Server limits of a real `logaas-webhook serve` over TLS: body cap, slow clients, bounded
concurrency and a graceful SIGTERM that finishes in-flight reviews."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.builders import admission_review, pod
from tests.harness import Server, check_answer, serve
from webhook.app import MAX_BODY
from webhook.slowclient import BODY_TIMEOUT

HEADER_TIMEOUT = 2
LIMIT = 20


@pytest.fixture(scope="module")
def server(cert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "LOGAAS_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "LOGAAS_LIMIT_CONCURRENCY": str(LIMIT),
    }
    with serve(cert_dir, tmp_path_factory.mktemp("limits"), env=env) as running:
        yield running


def review_body(uid: str = "u-1", padding: int = 0) -> bytes:
    body = json.dumps(admission_review(pod({"logaas/inject": "true"}), uid=uid)).encode()
    return body + b" " * padding  # JSON allows trailing whitespace


def head(path: str = "/mutate", length: int | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in header.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[:length]


def closed_by_server(sock: ssl.SSLSocket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def answer_ok(server: Server, uid: str = "ok") -> float:
    started = time.monotonic()
    with server.client(timeout=5) as client:
        answer = client.post("/mutate", content=review_body(uid))
    assert answer.status_code == 200, answer.text
    response = check_answer(answer.status_code, answer.content, uid)
    assert response is not None and "patch" in response
    return time.monotonic() - started


def test_body_at_the_cap_is_served_and_over_it_is_413(server: Server) -> None:
    base = review_body()
    with server.client(timeout=30) as client:
        exact = client.post("/mutate", content=review_body(padding=MAX_BODY - len(base)))
        assert exact.status_code == 200
        over = client.post("/mutate", content=review_body(padding=MAX_BODY - len(base) + 1))
    assert over.status_code == 413
    assert "3 MiB" in over.json()["error"]


def test_chunked_body_without_content_length_is_cut_at_the_cap(server: Server) -> None:
    sent = 0
    with server.tls_socket(timeout=30) as sock:
        sock.sendall(head(chunked=True))
        chunk = b" " * 65536
        try:
            while sent < MAX_BODY + 1024 * 1024:  # 4 MiB offered; the server stops reading
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        status, body = read_response(sock)
    assert status == 413
    assert "exceeds" in json.loads(body)["error"]


def test_declared_length_over_the_cap_is_refused_before_reading(server: Server) -> None:
    with server.tls_socket() as sock:
        sock.sendall(head(length=MAX_BODY + 1))  # no body sent at all
        status, body = read_response(sock)
    assert status == 413
    assert str(MAX_BODY + 1) in json.loads(body)["error"]


def test_slow_headers_are_dropped_and_others_still_answered(server: Server) -> None:
    """Slowloris: connections dribbling a request head are closed after the head timeout,
    while other clients keep getting answers."""
    slow = []
    for _ in range(LIMIT // 2):
        sock = server.tls_socket()
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
        slow.append(sock)
    silent = server.tls_socket()  # connects, completes TLS, never sends a byte
    started = time.monotonic()

    stop = threading.Event()

    def dribble() -> None:
        while not stop.wait(0.5):
            for sock in slow:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    feeder = threading.Thread(target=dribble, daemon=True)
    feeder.start()
    try:
        # Others are answered promptly while the slow ones are connected.
        assert max(answer_ok(server, f"u{i}") for i in range(5)) < 2
        assert all(closed_by_server(sock, HEADER_TIMEOUT + 3) for sock in [*slow, silent])
        waited = time.monotonic() - started
        assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 3
    finally:
        stop.set()
        feeder.join()
        for sock in [*slow, silent]:
            sock.close()
    answer_ok(server)


def test_endless_request_head_gets_431(server: Server) -> None:
    """A client streaming an endless header is cut off at 64 KiB (the parser would otherwise
    buffer all of it: ~90 MB of server memory for a 300 MB header)."""
    with server.tls_socket(timeout=10) as sock:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Junk: ")
        try:
            for _ in range(64):  # up to 64 MB, at full speed
                sock.sendall(b"a" * 1024 * 1024)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        status, body = read_response(sock)
    assert status == 431
    assert "65536" in json.loads(body)["error"]
    # A big but bounded head (60 KiB of headers) is still served.
    with server.client(timeout=5) as client:
        answer = client.post(
            "/mutate", content=review_body("big-head"), headers={"x-big": "b" * 60_000}
        )
    check_answer(answer.status_code, answer.content, "big-head")
    answer_ok(server)


def test_slow_body_gets_408(server: Server) -> None:
    body = review_body()
    with server.tls_socket(timeout=BODY_TIMEOUT + 10) as sock:
        sock.sendall(head(length=len(body)) + body[:10])
        started = time.monotonic()
        answer_ok(server, "while-slow-body")  # not pinned meanwhile
        status, error = read_response(sock)
    assert status == 408
    assert "not received within" in json.loads(error)["error"]
    assert BODY_TIMEOUT - 1 < time.monotonic() - started < BODY_TIMEOUT + 5


def test_concurrency_is_bounded_then_recovers(server: Server) -> None:
    """Past LIMIT open connections new requests get 503 at once (not an unbounded queue);
    once the idle holders are timed out, requests are served again."""
    holders = [server.tls_socket() for _ in range(LIMIT)]
    try:
        time.sleep(0.3)
        with server.client(timeout=5) as client:
            refused = client.post("/mutate", content=review_body())
        assert refused.status_code == 503
    finally:
        for sock in holders:
            sock.close()
    deadline = time.monotonic() + HEADER_TIMEOUT + 5
    while True:
        try:
            answer_ok(server)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_many_concurrent_reviews_all_answered(server: Server) -> None:
    with server.client(timeout=20, limits=httpx.Limits(max_connections=LIMIT // 2)) as client:

        def send(i: int) -> None:
            answer = client.post("/mutate/namespace", content=review_body(f"c{i}"))
            check_answer(answer.status_code, answer.content, f"c{i}")

        with ThreadPoolExecutor(LIMIT // 2) as pool:
            list(pool.map(send, range(300)))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_reviews(cert_dir: Path, tmp_path: Path, workers: int) -> None:
    body = review_body("in-flight")
    env = {"LOGAAS_GRACEFUL_SHUTDOWN_SECONDS": "20"}
    args = ["--workers", str(workers)]
    with serve(cert_dir, tmp_path, env=env, args=args) as server:
        inflight = []
        for _ in range(3):
            sock = server.tls_socket(timeout=20)
            sock.sendall(head(length=len(body)) + body[: len(body) // 2])
            inflight.append(sock)
        idle = server.tls_socket()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        # Shutting down: the listener is closed, idle keep-alive connections are dropped...
        with pytest.raises((ConnectionRefusedError, ConnectionResetError, ssl.SSLError)):
            server.tls_socket(timeout=2)
        assert closed_by_server(idle, 3)
        idle.close()  # answer the server's TLS close_notify, as any client does
        assert server.proc.poll() is None, "exited with reviews in flight"
        # ...and the reviews already in flight complete.
        for sock in inflight:
            sock.sendall(body[len(body) // 2 :])
            status, answer = read_response(sock)
            assert status == 200
            response = check_answer(status, answer, "in-flight")
            assert response is not None and "patch" in response
            sock.close()
        # Promptly, once they are done (uvicorn re-raises the signal it handled: -SIGTERM).
        assert server.proc.wait(10) in (0, -signal.SIGTERM)
    log = server.log_text()
    assert "Shutting down" in log and log.count('"uid":"in-flight"') == 3


def test_plain_http_is_not_served(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head(length=2) + b"{}")
        sock.settimeout(5)
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
    assert b"AdmissionReview" not in data and b"HTTP/1.1 200" not in data
