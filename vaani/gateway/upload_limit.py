"""The upload's size and time limits, enforced while the body arrives, before anything is parsed or spooled.

FastAPI parses a multipart body completely (spooling files to disk) before the endpoint runs, so a
limit checked in the endpoint would come after the damage. This ASGI middleware counts bytes and
time as they arrive.

- Past ``max_bytes`` it reads the rest of the body without keeping it and answers 413: a client
  that is still sending when the server answers and closes often sees a broken connection instead
  of the answer, and OpenAI's client would retry it.
- Past ``max_seconds`` since the request began, the upload is cut with 408 and the connection
  closed: a client trickling a body a byte at a time would otherwise hold a connection, and a
  worker's share of memory, for as long as it likes. The draining after a 413 keeps to the same
  deadline.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vaani.gateway.errors import OpenAIError

CLOSE = {"Connection": "close"}


class UploadLimit:
    """Refuse request bodies over ``max_bytes`` with OpenAI's 413, and bodies not received within
    ``max_seconds`` with 408."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_seconds: float) -> None:
        self.app, self.max_bytes, self.max_seconds = app, max_bytes, max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timed_receive = self._timed(receive)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            refusal = await self._drained(timed_receive, int(declared))
            await refusal.response()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await timed_receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    more = message.get("more_body", False)
                    raise await self._drained(timed_receive, received) if more else self.too_large(received)
            return message

        await self.app(scope, counting_receive, send)

    def _timed(self, receive: Receive) -> Receive:
        """``receive`` that raises 408 once the body has taken over ``max_seconds`` in all. Once the
        body is complete it waits as long as asked: a streamed answer listens for the client's
        disconnect long after the upload."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise self.too_slow() from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return timed_receive

    async def _drained(self, receive: Receive, size: int) -> OpenAIError:
        """The 413 for ``size``, once the rest of the body is read; with ``Connection: close`` when
        the rest takes past the deadline (it is not waited for)."""
        try:
            await _drain(receive)
        except OpenAIError:
            return self.too_large(size, headers=CLOSE)
        return self.too_large(size)

    def too_large(self, size: int, headers: dict[str, str] | None = None) -> OpenAIError:
        return OpenAIError(
            413,
            f"Maximum content size limit ({self.max_bytes}) exceeded ({size} bytes read); "
            "the gateway's --max-upload-mb raises it.",
            param="file",
            headers=headers,
        )

    def too_slow(self) -> OpenAIError:
        return OpenAIError(
            408,
            f"The upload did not arrive within {self.max_seconds:g} s and was cut; "
            "the gateway's --upload-timeout-s raises the limit.",
            param="file",
            headers=CLOSE,
        )


async def _drain(receive: Receive) -> None:
    """Read the rest of the body and keep none of it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
