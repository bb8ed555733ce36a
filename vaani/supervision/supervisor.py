"""Keeps a running tritonserver honest: a step whose process dies comes back, and readiness says so meanwhile.

The python backend does not restart a dead stub, and Triton's health endpoints keep answering
200 while every request fails. The supervisor watches the stub processes (`vaani.supervision.stubs`);
when one dies it unloads the ensemble, which turns `/v2/models/asr/ready` (the readiness that the
compose and Kubernetes healthchecks poll) not-ready at once, loads the step again (new instances,
new processes), loads the ensemble, and removes the dead stub's
shared-memory region. Recovery takes a few seconds; `asr`'s readiness is false for all of it.
(Triton's own `/v2/health/ready` leaves a model that was unloaded on purpose out of its count, so
it turns false only while a model is loading or unloading.)

One death is one recovery: each instance is watched through its newest stub, so the old stub of a
reloaded step, which exits once its version has unloaded, is not taken for a death.

A stub that died with a request in flight (the `[1, 2^62]` request kills `preprocess` that way)
leaves its model version loaded for the server's life: the python backend never releases that
request, so the version never finishes unloading. Nothing from outside frees it; the supervisor
counts such versions (`leaked`: the dead stub's region is still mapped in the server), `vaani serve`
starts a fresh server once there are too many, and `TritonProcess.stop` does not wait on them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vaani.serving.contract import ENSEMBLE
from vaani.supervision.admin import AdminClient
from vaani.supervision.stubs import (
    Stub,
    mapped_regions,
    newest_by_instance,
    remove_regions,
    running,
    stubs_of,
)

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
        self.leaked: set[str] = set()  # regions of dead stubs whose model version the server still holds
        self._dead_regions: set[str] = set()
        self._stopping = threading.Event()
        self._watched: dict[str, Stub] = {}

    def watch(self) -> None:
        """Take the newest stub of each instance as the healthy set (call once the server is ready)."""
        self._watched = newest_by_instance(stubs_of(self.server_pid))
        self.regions |= {stub.region for stub in self._watched.values()}

    def start(self) -> None:
        """Watch the stubs as they are now, then supervise them from a thread. The first look is taken
        here, not in the thread: a step that dies before the thread first runs (a request that kills it
        can follow readiness within milliseconds) would otherwise be missing from the healthy set, and
        its death never seen."""
        self.watch()
        super().start()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=self.timeout)

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            if not running(self.server_pid):
                return  # the server is gone: whoever started it restarts it and reaps what it left
            dead = self.dead()
            if not dead:
                continue
            try:
                self.recover(dead)
            except Exception as error:  # the stubs are still dead: the next pass tries again
                self.log(f"supervisor: recovery failed ({type(error).__name__}: {error}); retrying")
                continue
            self.watch()

    def dead(self) -> list[Stub]:
        """The watched stubs that died and that no newer stub of their instance replaced."""
        newest = newest_by_instance(stubs_of(self.server_pid))
        dead = []
        for instance, stub in self._watched.items():
            successor = newest.get(instance)
            if successor is not None and successor.started > stub.started:
                self._watched[instance] = successor  # a load replaced it: watch the new one
                self.regions.add(successor.region)
            elif not stub.alive():
                dead.append(stub)
        return dead

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
        self._dead_regions |= {stub.region for stub in dead}
        self.leaked = self._dead_regions & mapped_regions(self.server_pid)
        if self.leaked:
            self.log(
                f"supervisor: tritonserver holds {len(self.leaked)} model version(s) whose process died "
                "with a request in flight; the python backend never releases them (they go with the server)"
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
