"""The upload size limit, enforced while the body arrives, before anything is parsed or spooled.

FastAPI parses a multipart body completely (spooling files to disk) before the endpoint runs, so a
limit checked in the endpoint would come after the damage. This ASGI middleware counts bytes as
they arrive. Past the limit it reads the rest of the body without keeping it and answers 413:
a client that is still sending when the server answers and closes often sees a broken connection
instead of the answer, and OpenAI's client would retry it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vaani.gateway.errors import OpenAIError


class UploadLimit:
    """Refuse request bodies over ``max_bytes`` with OpenAI's 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _drain(receive)
            await self.too_large(int(declared)).response()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise self.too_large(received)
            return message

        await self.app(scope, counting_receive, send)

    def too_large(self, size: int) -> OpenAIError:
        return OpenAIError(
            413,
            f"Maximum content size limit ({self.max_bytes}) exceeded ({size} bytes read); "
            "the gateway's --max-upload-mb raises it.",
            param="file",
        )


async def _drain(receive: Receive) -> None:
    """Read the rest of the body and keep none of it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
