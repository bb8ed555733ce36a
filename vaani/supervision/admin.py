"""The admin side of a running tritonserver: the restricted APIs, reached with the admin key.

`vaani serve` restricts model control, shared memory, logging and trace to one key (HTTP
header `admin-key`); the supervisor uses it to reload a step whose process died and to
drain the ensemble on shutdown.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request

from vaani.serving.contract import ENSEMBLE

ADMIN_KEY_VARIABLE = "TRITON_ADMIN_KEY"
ADMIN_HEADER = "admin-key"
GRPC_ADMIN_HEADER = "triton-grpc-protocol-" + ADMIN_HEADER  # how Triton names it in gRPC metadata
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")


def resolve_admin_key(environment: dict[str, str] | None = None) -> tuple[str, bool]:
    """The key from ``TRITON_ADMIN_KEY``, else a random one for this start; and whether it was generated."""
    key = (environment if environment is not None else os.environ).get(ADMIN_KEY_VARIABLE, "")
    return (key, False) if key else (secrets.token_urlsafe(24), True)


def restricted_flags(key: str) -> list[str]:
    """Server flags that put the restricted APIs behind ``key`` on HTTP and gRPC."""
    apis = ",".join(RESTRICTED_APIS)
    return [
        f"--http-restricted-api={apis}:{ADMIN_HEADER}={key}",
        f"--grpc-restricted-protocol={apis}:{ADMIN_HEADER}={key}",
    ]


class AdminClient:
    """Model control over HTTP with the admin key (load, unload, the repository index)."""

    def __init__(self, http_url: str, key: str, timeout: float = 120.0) -> None:
        self.base = f"http://{http_url}"
        self.key = key
        self.timeout = timeout

    def _post(self, path: str) -> object:
        request = urllib.request.Request(
            self.base + path, data=b"{}", method="POST", headers={ADMIN_HEADER: self.key}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def states(self) -> dict[str, str]:
        """Model name → state (READY, UNAVAILABLE, UNLOADING, …) from the repository index."""
        return {entry["name"]: entry.get("state", "") for entry in self._post("/v2/repository/index")}

    def load(self, model: str) -> None:
        """Load ``model``; a loaded model is reloaded (new instances, new stub processes)."""
        self._post(f"/v2/repository/models/{model}/load")

    def unload(self, model: str) -> None:
        """Unload ``model`` and the ensembles that use it; in-flight requests finish first."""
        self._post(f"/v2/repository/models/{model}/unload")

    def ready(self) -> bool:
        """Whether `asr` answers: the service's readiness (the server's own ignores an unloaded model)."""
        try:
            with urllib.request.urlopen(self.base + f"/v2/models/{ENSEMBLE}/ready", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False
