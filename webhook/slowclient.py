"""Slow- and hostile-client protection for uvicorn's httptools protocol.

uvicorn times out idle keep-alive connections, but nothing bounds a request in flight:
- a client that connects and dribbles header bytes (slowloris) holds its connection, and its
  slot under limit_concurrency, forever: the head must be complete within `header_timeout`
  seconds of the connection opening or of the request's first incomplete read;
- a body must then arrive within `body_timeout`, or the client gets 408 and is closed;
- a client that streams an endless request line or header makes the parser buffer all of it
  (hundreds of MB per connection): a head over `max_head_bytes` gets 431 and the connection
  is closed. kube-apiserver's request heads are a few hundred bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
BODY_TIMEOUT = 10.0  # seconds from the end of the head to the end of the body
_TOO_LARGE = b'{"error":"request line and headers exceed 65536 bytes"}'


class CorkedTransport:
    """Coalesces the writes of one event-loop turn into one.

    uvicorn writes a response's head and body separately; over TLS each write is its own
    record and its own send. Joined, a review answer costs one of each.
    """

    __slots__ = ("_buffer", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(data)

    def flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = BODY_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._in_body = False
        self._head_bytes = 0

    # A timer runs only while a request is incomplete after a read. kube-apiserver sends a
    # review in one go, so the common request arms none (a timer per request is measurable).
    def _arm(self) -> None:
        if self._timer is None:
            delay = self.header_timeout if self._in_head else self.body_timeout
            self._timer = self.loop.call_later(delay, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if self._in_body and cycle is not None and not cycle.response_started:
            message = f"request body not received within {self.body_timeout:g}s".encode()
            self._answer(b"408 Request Timeout", b'{"error":"' + message + b'"}')
        self.transport.close()

    def _answer(self, status: bytes, body: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm()  # the first request's head must arrive in time

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        # Checked after parsing: a chunk that also completes the head (and carries body bytes)
        # is fine; a head still incomplete after this many bytes is not.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._answer(b"431 Request Header Fields Too Large", _TOO_LARGE)
            self.transport.close()
        elif self._in_head or self._in_body:
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._disarm()  # a keep-alive connection's next request started
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_body = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout}
    )
