"""The gateway's limits on untrusted clients, with their defaults.

A module of its own, importing nothing: the `vaani` command builds its options from these before it
knows whether the gateway's dependencies (FastAPI, uvicorn) are installed.
"""

from __future__ import annotations

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
"""OpenAI's own limit is 25 MB."""

UPLOAD_SECONDS = 120.0
"""Time for the whole upload to arrive: 25 MB at 1.7 Mbit/s."""

MAX_AUDIO_SECONDS = 3600.0
"""The server's default `--max-audio-seconds`: longer audio is refused by `asr` anyway, so the
gateway need not decode it (`tests/test_gateway_attacks.py` checks that the two agree)."""

MAX_CONNECTIONS = 256
"""Open connections, and requests in progress."""

HEADER_SECONDS = 10.0
"""Time for a connection to send a complete request head."""

RETRY_AFTER_SECONDS = 1
"""What a client refused for load (429, 503) is told to wait: connections and Triton's queues free
up as requests finish."""

MAX_REALTIME_SESSIONS = 32
"""Realtime WebSocket sessions open at once (each holds one `asr_stream` sequence while audio flows);
one more is told so in an `error` event and closed."""

REALTIME_IDLE_SECONDS = 20.0
"""A realtime session that sends nothing for this long is closed: a client that went away without
closing must not hold a session, nor its sequence in Triton. Below the server's own idle timeout for
a stream (`--stream-idle-seconds`, 30 s), so that the gateway, not Triton, is the one that says so."""

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest WebSocket message: 4 MiB of base64 is 65 s of OpenAI's 24 kHz PCM16 in one append.
Larger closes the socket with 1009 (message too big)."""

STREAM_CHUNK_SECONDS = 0.2
"""Realtime audio goes to `asr_stream` in chunks of this length (the last of a turn may be shorter)."""

UPLOAD_CHUNK_SECONDS = 2.0
"""An upload with ``stream=true`` goes to `asr_stream` in chunks of this length: fewer, larger
requests than live audio needs, since the whole file is there."""
