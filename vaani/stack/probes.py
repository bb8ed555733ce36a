"""Questions to the running stack over its published ports: health, transcripts, metrics, the admin key.

Plain urllib for everything but the Triton client, so the check needs nothing the host's
`vaani` install lacks.
"""

from __future__ import annotations

import csv
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from vaani.errors import UserFacingError
from vaani.supervision.admin import ADMIN_HEADER

# One harmless read per API group that `vaani serve` restricts (vaani.supervision.admin.RESTRICTED_APIS).
RESTRICTED_READS = (
    ("model-repository", "POST", "/v2/repository/index"),
    ("shared-memory", "GET", "/v2/systemsharedmemory/status"),
    ("logging", "GET", "/v2/logging"),
    ("trace", "GET", "/v2/trace/setting"),
)


def wait_for(what: str, condition: Callable[[], bool], timeout: float, interval: float = 2.0) -> float:
    """Seconds until ``condition()`` held; raises naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    raise UserFacingError(f"{what}: not within {timeout:.0f} s")


def status(url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes = b"") -> int:
    """The HTTP status of one request (errors included); 0 when nothing answered."""
    request = urllib.request.Request(url, data=data or None, method=method, headers=headers or {})
    if method == "POST" and not data:
        request.data = b"{}"
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def restricted_api_statuses(http_url: str, key: str) -> list[tuple[str, int, int, int]]:
    """(API, status without a key, with a wrong key, with ``key``) for each restricted group."""
    rows = []
    for name, method, path in RESTRICTED_READS:
        url = f"http://{http_url}{path}"
        rows.append(
            (
                name,
                status(url, method),
                status(url, method, {ADMIN_HEADER: "not-the-key"}),
                status(url, method, {ADMIN_HEADER: key}),
            )
        )
    return rows


def gateway_transcript(url: str, wav: Path) -> str:
    """POST ``wav`` to the gateway's OpenAI-style /v1/audio/transcriptions; the ``text`` it answers."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nvaani\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{wav.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + wav.read_bytes()
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    request = urllib.request.Request(
        f"http://{url}/v1/audio/transcriptions",
        data=b"".join(parts),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["text"]


def prometheus_sum(url: str, query: str) -> float | None:
    """The sum of an instant query's values on Prometheus at ``url``; None when it has no series yet."""
    address = f"http://{url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(address, timeout=10) as response:
            result = json.loads(response.read())["data"]["result"]
    except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
        return None
    return sum(float(series["value"][1]) for series in result) if result else None


def locust_by_type(stats_csv: Path) -> dict[str, tuple[int, int]]:
    """(requests, failures) per request type (Locust's ``Type`` column: one per protocol) of ``*_stats.csv``.

    Per type, not the Aggregated row: the aggregate mixes protocols, and users that never report a
    request (their client failed to start) leave no row at all beside others that look healthy.
    """
    totals: dict[str, tuple[int, int]] = {}
    with stats_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                continue
            requests, failures = totals.get(row["Type"], (0, 0))
            totals[row["Type"]] = (requests + int(row["Request Count"]), failures + int(row["Failure Count"]))
    return totals


def locust_errors(failures_csv: Path, request_type: str) -> list[str]:
    """The distinct errors Locust's ``*_failures.csv`` holds for ``request_type``, most frequent first."""
    if not failures_csv.exists():
        return []
    with failures_csv.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Method"] == request_type]
    rows.sort(key=lambda row: -int(row["Occurrences"]))
    return list(dict.fromkeys(row["Error"] for row in rows))
