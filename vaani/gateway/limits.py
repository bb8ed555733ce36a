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
