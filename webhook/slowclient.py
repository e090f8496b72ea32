"""Slow-client protection for uvicorn's httptools protocol.

uvicorn times out idle keep-alive connections and the app times out a slow body, but nothing
times out the request head: a client that connects and dribbles header bytes (slowloris) holds
its connection, and its slot under limit_concurrency, forever. This protocol closes a
connection whose request line and headers are not complete within `header_timeout` seconds
of the connection opening or of the request's first byte.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # the first request's head must arrive in time

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()  # a keep-alive connection's next request started

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout}
    )
