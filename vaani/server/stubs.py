"""The python-backend stub processes of a running tritonserver, read from `/proc`.

Each python step instance runs in its own stub process, a child of the server, whose
command line names the step's `model.py` and its shared-memory region. A stub that dies
is not restarted by the python backend, and its region stays in `/dev/shm`: the supervisor
uses this view to notice the death and to remove what it left.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STUB_BINARY = "triton_python_backend_stub"
SHM_DIR = Path("/dev/shm")
PROC = Path("/proc")


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    region: str

    def alive(self) -> bool:
        """Running (a killed stub stays a zombie until the server reaps it: that counts as dead)."""
        try:
            stat = (PROC / str(self.pid) / "stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _parent(pid: Path) -> int:
    stat = (pid / "stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def stubs_of(server_pid: int) -> list[Stub]:
    """The living stub processes whose parent is ``server_pid``."""
    stubs = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not argv or not argv[0].endswith(STUB_BINARY.encode()) or _parent(entry) != server_pid:
                continue
        except (OSError, ValueError, IndexError):
            continue
        model_file = Path(argv[1].decode())  # <repository>/<model>/<version>/model.py
        stub = Stub(int(entry.name), model_file.parents[1].name, argv[2].decode())
        if stub.alive():
            stubs.append(stub)
    return stubs


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
