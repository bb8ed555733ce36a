"""The python-backend stub processes of a running tritonserver, read from `/proc`.

Each python step instance runs in its own stub process, a child of the server, whose
command line names the step's `model.py`, its shared-memory region and its instance
(`preprocess_0_0`). A stub that dies is not restarted by the python backend, and its region
stays in `/dev/shm`: the supervisor uses this view to notice the death and to remove what it
left. A stub also shares its server's process group (the server leads its own session), so
what outlives a killed server is found by that group and ended (`reap_group`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STUB_BINARY = "triton_python_backend_stub"
REGION_PREFIX = "triton_python_backend_shm_region_"
SHM_DIR = Path("/dev/shm")
PROC = Path("/proc")


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    region: str
    instance: str = ""  # the instance it serves (`wav2vec2_0_0`): a reload starts a new stub of the same one
    started: int = 0  # start time in clock ticks since boot: orders the stubs of one instance

    def alive(self) -> bool:
        return running(self.pid)


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed process stays a zombie until its parent reaps it: that
    counts as dead)."""
    try:
        return _stat(PROC / str(pid))[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _stat(pid: Path) -> list[str]:
    """The fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, …"""
    return (pid / "stat").read_text().rsplit(")", 1)[1].split()


def _parent(pid: int) -> int | None:
    try:
        return int(_stat(PROC / str(pid))[1])
    except (OSError, ValueError, IndexError):
        return None


def _stubs(belongs: str, owner: int) -> list[Stub]:
    """The living stubs whose parent (``belongs="parent"``) or process group (``"group"``) is ``owner``."""
    field = {"parent": 1, "group": 2}[belongs]
    stubs = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not argv or not argv[0].endswith(STUB_BINARY.encode()):
                continue
            stat = _stat(entry)
            if int(stat[field]) != owner:
                continue
            model_file = Path(argv[1].decode())  # <repository>/<model>/<version>/model.py
            stub = Stub(
                int(entry.name), model_file.parents[1].name, argv[2].decode(), argv[8].decode(), int(stat[19])
            )
        except (OSError, ValueError, IndexError):
            continue
        if stub.alive():
            stubs.append(stub)
    return stubs


def stubs_of(server_pid: int) -> list[Stub]:
    """The living stub processes whose parent is ``server_pid``."""
    return _stubs("parent", server_pid)


def newest_by_instance(stubs: Iterable[Stub]) -> dict[str, Stub]:
    """Instance name → its newest stub. While a reloaded step's old version unloads, an instance has
    two stubs: only the newest serves, so only its death is a death."""
    newest: dict[str, Stub] = {}
    for stub in stubs:
        if stub.instance not in newest or stub.started > newest[stub.instance].started:
            newest[stub.instance] = stub
    return newest


def mapped_regions(pid: int) -> set[str]:
    """The python-backend regions that process ``pid`` maps, removed from `/dev/shm` or not.

    The server maps each instance's region until the instance is destroyed, so a dead stub's
    region still mapped here means Triton still holds that model version.
    """
    try:
        maps = (PROC / str(pid) / "maps").read_text()
    except OSError:
        return set()
    return {
        Path(line.split(None, 5)[5].removesuffix(" (deleted)")).name
        for line in maps.splitlines()
        if REGION_PREFIX in line
    }


def reap_group(server_pid: int) -> list[Stub]:
    """End the stubs left in the process group of the server ``server_pid``, which has exited.

    When its server dies, a stub that was busy deadlocks on its way out (its health thread waits
    for the GIL that its main thread holds while it waits for the dead server) and lives on, a child
    of init, with all its memory. The group outlives the server only through such processes, so its
    id cannot name anything else. Those that are our children (when `vaani serve` is a container's
    PID 1) are waited for, so none stays a zombie.
    """
    left = _stubs("group", server_pid)
    if not left:
        return []
    ours = [stub.pid for stub in left if _parent(stub.pid) == os.getpid()]
    try:
        os.killpg(server_pid, signal.SIGKILL)
    except ProcessLookupError:
        return []
    for pid in ours:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return left


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_listening_on(http_port: int) -> int | None:
    """The pid of the tritonserver started with ``--http-port=<http_port>``, if one runs here."""
    flag = f"--http-port={http_port}".encode()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"tritonserver") and flag in argv:
            return int(entry.name)
    return None


def remove_regions(names: set[str]) -> list[str]:
    """Unlink these shared-memory regions from `/dev/shm`; return the ones that were there."""
    removed = []
    for name in sorted(names):
        path = SHM_DIR / name.lstrip("/")
        try:
            path.unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed
