"""A small HTTP/1.1-over-TLS load generator on uvloop (raw protocols, no HTTP library).

Three shapes: closed-loop throughput, open-loop fixed rate (latency counted from the moment a
request was due, so a stalled server cannot hide its queue: no coordinated omission), and a
cold burst over new TLS connections. It runs pinned to its own core; every phase reports the
client's own CPU use so a client-bound figure is visible.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from dataclasses import dataclass, field
from typing import Any


def request_bytes(path: str, body: bytes, host: str = "localhost") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, */*\r\nUser-Agent: kube-apiserver-admission\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1
        self.status = 0
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.keep_body = False
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[: end + 2]).lower()
            self.status = int(head[9:12])
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
            self.need = end + 4 + length
            self.head_len = end + 4
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.head_len : self.need]) if self.keep_body else b""
            del self.buf[: self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self.status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("connection closed"))

    def send(self, payload: bytes, keep_body: bool = False) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.keep_body = keep_body
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Target:
    host: str
    port: int
    ssl: ssl.SSLContext

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Conn, self.host, self.port, ssl=self.ssl, server_hostname="localhost"
        )
        return conn

    async def once(self, payload: bytes) -> tuple[int, bytes]:
        conn = await self.connect()
        try:
            return await asyncio.wait_for(conn.send(payload, keep_body=True), 30)
        finally:
            conn.close()


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0

    def merge(self, other: Stats) -> None:
        """Add another slice of the same phase (phases run in alternating slices)."""
        cpu = self.client_cpu * self.elapsed + other.client_cpu * other.elapsed
        self.latencies += other.latencies
        self.ok += other.ok
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.client_cpu = cpu / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3)

        return {
            "requests_ok": self.ok,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed, 3),
            "rps": round(self.ok / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "client_cpu": round(self.client_cpu, 3),
        }


class _Clock:
    def __enter__(self) -> _Clock:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.elapsed = time.perf_counter() - self.wall
        self.cpu_fraction = (time.process_time() - self.cpu) / self.elapsed


async def throughput(
    target: Target, payload: bytes | list[bytes], conns: int, duration: float
) -> Stats:
    """Closed loop: `conns` keep-alive connections, each sends its next request on an answer.

    With a list of payloads, requests cycle through it.
    """
    stats = Stats()
    pool = [await target.connect() for _ in range(conns)]
    deadline = 0.0
    cycle = itertools.cycle(payload if isinstance(payload, list) else [payload])

    async def worker(conn: _Conn) -> None:
        while True:
            started = time.perf_counter()
            if started >= deadline:
                return
            try:
                status, _ = await conn.send(next(cycle))
            except ConnectionError:
                stats.errors += 1
                return
            stats.latencies.append(time.perf_counter() - started)
            if status == 200:
                stats.ok += 1
            else:
                stats.errors += 1

    with _Clock() as clock:
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(worker(c) for c in pool))
    stats.elapsed, stats.client_cpu = clock.elapsed, clock.cpu_fraction
    for c in pool:
        c.close()
    return stats


async def fixed_rate(
    target: Target, payload: bytes, rate: float, conns: int, duration: float
) -> tuple[Stats, int]:
    """Open loop: request i is due at t0 + i/rate on any idle connection; latency from due time.

    Returns the stats (answers that came within the run plus one second to drain) and the
    number of requests offered.
    """
    stats = Stats()
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(conns):
        idle.put_nowait(await target.connect())
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(due: float) -> None:
        conn = await idle.get()
        try:
            status, _ = await conn.send(payload)
        except ConnectionError:
            stats.errors += 1
            return
        done = time.perf_counter()
        idle.put_nowait(conn)
        if done <= end + 1.0:
            stats.latencies.append(done - due)
            if status == 200:
                stats.ok += 1
            else:
                stats.errors += 1

    with _Clock() as clock:
        start = time.perf_counter()
        end = start + duration
        sent = 0
        while sent < total:
            now = time.perf_counter()
            due_count = min(total, int((now - start) * rate) + 1)
            while sent < due_count:
                task = loop.create_task(one(start + sent / rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, end + 1.0 - time.perf_counter()))
    stats.elapsed, stats.client_cpu = clock.elapsed, clock.cpu_fraction
    for task in list(tasks):
        task.cancel()
    while not idle.empty():
        idle.get_nowait().close()
    return stats, total


async def burst(target: Target, payload: bytes, total: int, conns: int) -> Stats:
    """A cold burst: `conns` new TLS connections at once share `total` reviews.

    A request's latency counts from the burst start for the first request of a connection
    (handshake included) and from its send for the rest.
    """
    stats = Stats()
    per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]

    async def client(count: int, t0: float) -> None:
        try:
            conn = await asyncio.wait_for(target.connect(), 30)
        except (OSError, TimeoutError):
            stats.errors += count
            return
        started = t0
        try:
            for _ in range(count):
                try:
                    status, _ = await asyncio.wait_for(conn.send(payload), 30)
                except (ConnectionError, TimeoutError):
                    stats.errors += 1
                    if conn.lost:
                        conn = await target.connect()
                    continue
                done = time.perf_counter()
                stats.latencies.append(done - started)
                started = done
                if status == 200:
                    stats.ok += 1
                else:
                    stats.errors += 1
        finally:
            conn.close()

    with _Clock() as clock:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(n, t0) for n in per))
    stats.elapsed, stats.client_cpu = clock.elapsed, clock.cpu_fraction
    return stats
