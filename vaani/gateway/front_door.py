"""The gateway's front door: how uvicorn serves it so that many, idle or slow connections cannot
exhaust it.

uvicorn alone accepts every connection and waits for a request head as long as the client likes:
an attack run held ~20,600 connections until the gateway ran out of file descriptors, 900 slow
uploads were never closed, and the log grew by 219 MB in 50 s. So:

- **a connection cap**: past ``max_connections`` open connections a new one is answered 503 (with
  ``Retry-After``) and closed at once, before it costs more than its accept; uvicorn's
  ``limit_concurrency`` also answers 503 when that many requests are in progress (a request goes on
  after its client left);
- **a head deadline**: a connection must deliver a complete request head within ``header_seconds``
  of opening or of its previous answer, however it trickles it, or it gets 408 and is closed (h11
  bounds the head's size); the body has its own deadline (`upload_limit.py`), and a connection
  whose body the answer did not need is closed instead of kept to drain it;
- **a log that cannot flood**: every record goes through one rate limit, with each traceback cut
  to its tail, and a line says how many were dropped;
- **WebSockets** (the realtime endpoint): an upgraded connection leaves the head deadline behind (the
  WebSocket protocol owns it from then on) and still counts against the connection cap; a message
  over ``max_message_bytes`` closes it (1009).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from vaani.gateway.errors import SERVER_ERROR, OpenAIError
from vaani.gateway.limits import HEADER_SECONDS, MAX_CONNECTIONS, MAX_MESSAGE_BYTES, RETRY_AFTER_SECONDS

LOG_BURST = 100
LOG_PER_MINUTE = 30
"""Log records let through: a burst of `LOG_BURST`, then `LOG_PER_MINUTE` a minute."""

TRACEBACK_CHARS = 2000
"""The tail of a traceback that is kept: its last frames and the exception."""

log = logging.getLogger("vaani.gateway")


@dataclass(frozen=True)
class FrontDoor:
    """The connection-level limits of `vaani gateway`."""

    max_connections: int = MAX_CONNECTIONS
    """Open connections; also requests in progress (uvicorn's ``limit_concurrency``)."""
    header_seconds: float = HEADER_SECONDS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Largest WebSocket message; larger closes the socket with 1009."""


def raw_response(error: OpenAIError) -> bytes:
    """A whole HTTP/1.1 answer with ``Connection: close``, for a connection the protocol refuses
    itself (no request was parsed, so h11 cannot write it)."""
    body = json.dumps(error.body()).encode()
    head = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in (error.headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def protocol(door: FrontDoor) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the connection cap and the head deadline of ``door``."""
    busy = OpenAIError(
        503,
        f"The gateway holds its maximum of {door.max_connections} connections "
        "(--max-connections); try again shortly.",
        type=SERVER_ERROR,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
    late = OpenAIError(
        408,
        f"No complete request arrived within {door.header_seconds:g} s (--header-timeout-s).",
    )

    class GuardedH11Protocol(H11Protocol):
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if len(self.connections) > door.max_connections:
                log.warning("refused a connection: %d are open (--max-connections)", door.max_connections)
                self._refuse(busy)
            else:
                self._expect_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_arrived()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request head was parsed
                self._head_arrived()

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            self._head_arrived()  # the head did arrive: the WebSocket protocol owns the connection now
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            if self.conn.their_state is h11.SEND_BODY:  # the answer did not need the rest of the body
                self.transport.close()
            elif not self.transport.is_closing():
                self._expect_head()
            super().on_response_complete()

        def _expect_head(self) -> None:
            self._head_arrived()
            self.head_timer = self.loop.call_later(door.header_seconds, self._refuse, late)

        def _head_arrived(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _refuse(self, error: OpenAIError) -> None:
            self.head_timer = None
            if not self.transport.is_closing():
                self.transport.write(raw_response(error))
                self.transport.close()

    return GuardedH11Protocol


class LogRateLimit(logging.Filter):
    """One budget for every log record of the process: `LOG_BURST` at once, `LOG_PER_MINUTE` a
    minute after that (a token bucket). Dropped records are counted and the count is logged with
    the next one let through; tracebacks keep their last `TRACEBACK_CHARS` characters."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.tokens, self.last, self.dropped = float(LOG_BURST), clock(), 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "dropped_count", False):
            return True
        with self.lock:
            now = self.clock()
            self.tokens = min(LOG_BURST, self.tokens + (now - self.last) * LOG_PER_MINUTE / 60)
            self.last = now
            if self.tokens < 1:
                self.dropped += 1
                return False
            self.tokens -= 1
            dropped, self.dropped = self.dropped, 0
        if dropped:
            log.warning(
                "%d log records dropped (over %d a minute)",
                dropped,
                LOG_PER_MINUTE,
                extra={"dropped_count": True},
            )
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)[-TRACEBACK_CHARS:]
        return True


def log_config() -> dict:
    """uvicorn's logging, with every handler (and the root logger's, which asyncio's and the
    libraries' records reach) behind one `LogRateLimit`."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"rate": {"()": LogRateLimit}}
    for handler in config["handlers"].values():
        handler["filters"] = ["rate"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


def serve(app: ASGIApp, host: str, port: int, door: FrontDoor) -> None:
    """Run ``app`` behind ``door`` until the process is told to stop."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol(door),
        # uvicorn counts the connection that asks among the open ones: the cap itself is enforced above.
        limit_concurrency=door.max_connections + 1,
        ws_max_size=door.max_message_bytes,
        log_config=log_config(),
        log_level="warning",
    )
