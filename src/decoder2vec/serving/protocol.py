"""uvicorn's h11 connection with a bound on the time a request's headers may take.

uvicorn bounds the idle time between requests (`timeout_keep_alive`) but not the headers
themselves: its keep-alive timer stops at the first byte, so a client that sends half a header
line (and maybe a byte now and then) holds a connection and its buffers forever; 30 such clients
stayed open for as long as they liked (issue 23). Here a timer runs from the moment a connection
waits for a request (it connects, or its last answer is sent) until the request's headers are
complete, and closes the connection when it fires. Bytes arriving meanwhile do not restart it.
The body is bounded separately, by `--request-timeout` (app.py).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """An H11Protocol class whose connections get `seconds` to send each request's headers."""

    class HeaderTimeoutProtocol(H11Protocol):
        header_timeout = seconds

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._start_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._stop_header_timer_once_headers_arrived()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start the next (pipelined) request at once
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._start_header_timer()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _start_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

        def _stop_header_timer_once_headers_arrived(self) -> None:
            # h11 leaves IDLE for the client when a request's headers are complete.
            if self.conn.their_state is not h11.IDLE:
                self._cancel_header_timer()

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.logger.info("closing a connection from %s: no complete request headers within %g s "
                                 "(--header-timeout)", self.client, self.header_timeout)
                self.transport.close()

    return HeaderTimeoutProtocol
