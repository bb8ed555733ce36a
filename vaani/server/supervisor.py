"""Keeps a running tritonserver honest: a step whose process dies comes back, and readiness says so meanwhile.

The python backend does not restart a dead stub, and Triton's health endpoints keep answering
200 while every request fails. The supervisor watches the stub processes (`vaani.server.stubs`);
when one dies it unloads the ensemble, which turns `/v2/models/asr/ready` (the readiness that the
compose and Kubernetes healthchecks poll) not-ready at once, loads the step again (new instances,
new processes), loads the ensemble, and removes the dead stub's
shared-memory region. Recovery takes a few seconds; `asr`'s readiness is false for all of it.
(Triton's own `/v2/health/ready` leaves a model that was unloaded on purpose out of its count, so
it turns false only while a model is loading or unloading.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vaani.server.admin import AdminClient
from vaani.server.stubs import Stub, remove_regions, stubs_of
from vaani.serving.contract import ENSEMBLE

SETTLED = ("UNAVAILABLE", "")  # states of a model that is no longer loaded or unloading


@dataclass(frozen=True)
class Recovery:
    models: tuple[str, ...]
    dead_pids: tuple[int, ...]
    seconds: float


class Supervisor(threading.Thread):
    def __init__(
        self,
        server_pid: int,
        admin: AdminClient,
        interval: float = 0.5,
        log: Callable[[str], None] = print,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(name="vaani-supervisor", daemon=True)
        self.server_pid = server_pid
        self.admin = admin
        self.interval = interval
        self.log = log
        self.timeout = timeout
        self.recoveries: list[Recovery] = []
        self.regions: set[str] = set()  # every stub region seen: removed at shutdown if left behind
        self._stopping = threading.Event()
        self._watched: list[Stub] = []

    def watch(self) -> None:
        """Take the current stubs as the healthy set (call once the server is ready)."""
        self._watched = stubs_of(self.server_pid)
        self.regions |= {stub.region for stub in self._watched}

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=self.timeout)

    def run(self) -> None:
        self.watch()
        while not self._stopping.wait(self.interval):
            dead = [stub for stub in self._watched if not stub.alive()]
            if not dead:
                continue
            try:
                self.recover(dead)
            except Exception as error:  # the stubs are still dead: the next pass tries again
                self.log(f"supervisor: recovery failed ({type(error).__name__}: {error}); retrying")
                continue
            self.watch()

    def recover(self, dead: list[Stub]) -> Recovery:
        start = time.monotonic()
        models = tuple(sorted({stub.model for stub in dead}))
        pids = tuple(stub.pid for stub in dead)
        self.log(f"supervisor: the process of step(s) {', '.join(models)} died (pid {pids}); reloading")
        # The ensemble goes first: readiness turns false at once. A step whose process died mid-request
        # stays UNLOADING (it waits on the dead process), and a load of a loaded, unchanged model is a
        # no-op: so unload the step without waiting, and load it again, which starts new instances.
        self.admin.unload(ENSEMBLE)
        self._wait(lambda states: states.get(ENSEMBLE, "") in SETTLED, "unload")
        for model in models:
            self.admin.unload(model)
            self.admin.load(model)
        self.admin.load(ENSEMBLE)
        self._wait(lambda _: self.admin.ready(), "ready")
        removed = remove_regions({stub.region for stub in dead})
        recovery = Recovery(models, pids, time.monotonic() - start)
        self.recoveries.append(recovery)
        self.log(
            f"supervisor: {', '.join(models)} back in {recovery.seconds:.1f} s; "
            f"removed {len(removed)} stale shared-memory region(s)"
        )
        return recovery

    def _wait(self, done: Callable[[dict[str, str]], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if done(self.admin.states()):
                return
            if self._stopping.wait(0.1):
                raise InterruptedError(f"stopped while waiting for {what}")
        raise TimeoutError(f"{what} did not finish within {self.timeout:.0f} s")
