"""`vaani soak`: a bounded soak of a running server — failures, latency per minute, memory per process.

Clients send mixed-length clips back to back over gRPC for the whole run. Each clip's first
transcript is its reference: a later, different transcript is counted as a change (a server
that degrades under load answers, but wrongly). Every few seconds the resident memory of the
server and of each step's process is sampled from `/proc`, so growth that stays is visible.

With an `Attack` (`vaani soak --attack`, `make soak-attack`), an attacker joins the honest clients
after the first ``calm_seconds``: decompression bombs uploaded to the gateway, random logits sent
straight to `ctc_decoder`, and idle connections held open at the gateway (issue 20's "Done when").
The report then says how many good requests sent under attack stayed within the calm part's p99
latency, and what each attack got.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vaani.client.api import TranscriptionClient, TranscriptionError
from vaani.loadtest.clips import Clip
from vaani.serving.contract import DECODER, LOGITS, NUM_SAMPLES
from vaani.supervision.stubs import rss_mb, server_listening_on, stubs_of


@dataclass(frozen=True)
class Sample:
    """Resident memory of one process at one moment of the run."""

    seconds: float
    process: str
    rss_mb: float


def server_processes(http_port: int) -> dict[int, str]:
    """The tritonserver listening on ``http_port`` and its step processes: pid → label."""
    server = server_listening_on(http_port)
    if server is None:
        return {}
    return {server: "tritonserver", **{stub.pid: stub.model for stub in stubs_of(server)}}


def silent_flac(hours: float) -> bytes:
    """A FLAC of ``hours`` of 8 kHz silence: a few MB that decode to gigabytes (a decompression bomb)."""
    import soundfile

    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", 8000, 1, format="FLAC") as file:
        block = np.zeros(8000 * 600, np.int16)
        for _ in range(round(hours * 6)):
            file.write(block)
    return buffer.getvalue()


@dataclass
class Attack:
    """The attacker beside the honest clients. Each attack runs in its own thread until ``stop``:
    a 10-hour FLAC uploaded to the gateway every ``every`` seconds, 20,000 frames of random logits sent
    to `ctc_decoder` every ``every`` seconds, and ``held`` connections kept open at the gateway (each
    reopened when the gateway closes it). Every outcome is an `Event`."""

    gateway: str  # host:port of `vaani gateway`
    grpc_url: str
    every: float = 5.0
    held: int = 50
    events: list[Event] = field(default_factory=list)
    bomb: bytes = field(default_factory=lambda: silent_flac(10), repr=False)  # made before the run

    def start(self, stop: float, origin: float) -> list[threading.Thread]:
        loops = [
            lambda: self._repeat(stop, origin, "bomb upload", lambda: self._upload(self.bomb)),
            lambda: self._repeat(stop, origin, "decoder, random logits", self._logits),
            lambda: self._hold(stop, origin),
        ]
        threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
        for thread in threads:
            thread.start()
        return threads

    def _record(self, origin: float, kind: str, outcome: str, sent: float) -> None:
        self.events.append(Event(round(sent - origin, 1), kind, outcome, round(time.monotonic() - sent, 3)))

    def _repeat(self, stop: float, origin: float, kind: str, attack) -> None:
        while time.monotonic() < stop:
            sent = time.monotonic()
            try:
                outcome = attack()
            except Exception as error:  # what the attack got is the measurement
                outcome = f"{type(error).__name__}: {error}"[:120]
            self._record(origin, kind, outcome, sent)
            time.sleep(max(0.0, self.every - (time.monotonic() - sent)))

    def _upload(self, data: bytes) -> str:
        import requests

        response = requests.post(
            f"http://{self.gateway}/v1/audio/transcriptions",
            files={"file": ("ten-hours.flac", data)},
            data={"model": "vaani"},
            timeout=120,
        )
        return f"HTTP {response.status_code}"

    def _logits(self) -> str:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            config = client.get_model_config(DECODER).config
            vocab = next(i.dims[-1] for i in config.input if i.name == LOGITS)
            frames = 20_000
            logits = np.random.default_rng().standard_normal((1, frames, vocab)).astype(np.float32)
            samples = np.array([[(frames - 1) * 320 + 400]], np.int64)
            inputs = [grpcclient.InferInput(LOGITS, list(logits.shape), "FP32")]
            inputs.append(grpcclient.InferInput(NUM_SAMPLES, [1, 1], "INT64"))
            inputs[0].set_data_from_numpy(logits)
            inputs[1].set_data_from_numpy(samples)
            client.infer(DECODER, inputs, client_timeout=120)
            return "answered"
        except InferenceServerException as error:
            return f"refused: {error.status()}"
        finally:
            client.close()

    def _hold(self, stop: float, origin: float) -> None:
        host, port = self.gateway.rsplit(":", 1)
        held: list[socket.socket] = []
        while time.monotonic() < stop:
            for connection in list(held):  # a connection the gateway closed is opened again
                try:
                    closed = connection.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    connection.close()
                    held.remove(connection)
                    self._record(origin, "held connection", "closed by the gateway", time.monotonic())
            while len(held) < self.held:
                try:
                    held.append(socket.create_connection((host, int(port)), timeout=5))
                except OSError as error:
                    self._record(origin, "held connection", f"refused: {error}"[:120], time.monotonic())
                    break
            time.sleep(1.0)
        for connection in held:
            connection.close()


@dataclass(frozen=True)
class Event:
    """One attack's outcome: when it was sent (s into the run), what it was, what it got, how long."""

    seconds: float
    kind: str
    outcome: str
    took: float


@dataclass
class Soak:
    grpc_url: str
    http_port: int
    clips: list[Clip]
    clients: int = 8
    seconds: float = 600.0
    sample_every: float = 5.0
    attack: Attack | None = None
    calm_seconds: float = 60.0  # before the attack starts: what the good requests' normal latency is

    def run(self) -> dict[str, object]:
        start = time.monotonic()
        stop = start + self.seconds
        records: list[tuple[float, float, bool, bool]] = []  # (t, latency, failed, changed)
        references: dict[int, str] = {}
        lock = threading.Lock()
        samples: list[Sample] = []

        def client_loop(index: int) -> None:
            client = TranscriptionClient(self.grpc_url, protocol="grpc")
            order = np.random.default_rng(index).permutation(len(self.clips))
            step = 0
            while time.monotonic() < stop:
                clip_index = int(order[step % len(order)])
                step += 1
                sent = time.monotonic()
                try:
                    text, failed = client.transcribe(self.clips[clip_index].audio), False
                except TranscriptionError:
                    text, failed = None, True
                latency = time.monotonic() - sent
                with lock:
                    changed = False
                    if text is not None:
                        reference = references.setdefault(clip_index, text)
                        changed = text != reference
                    records.append((sent - start, latency, failed, changed))
            client.close()

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        attacking = False
        while time.monotonic() < stop:
            now = time.monotonic() - start
            if self.attack and not attacking and now >= self.calm_seconds:
                threads += self.attack.start(stop, start)
                attacking = True
            for pid, label in server_processes(self.http_port).items():
                samples.append(Sample(round(now, 1), f"{label}:{pid}", round(rss_mb(pid), 1)))
            time.sleep(self.sample_every)
        for thread in threads:
            thread.join()
        result = {"records": records, "samples": samples}
        if self.attack:
            result["attack"] = attack_summary(records, self.attack.events, self.calm_seconds)
        return result


def attack_summary(
    records: list[tuple[float, float, bool, bool]], events: list[Event], calm_seconds: float
) -> dict[str, object]:
    """Good requests under attack against the calm part's p99 latency, and what each attack got."""
    calm = [latency for t, latency, failed, _ in records if t < calm_seconds and not failed]
    attacked = [(latency, failed) for t, latency, failed, _ in records if t >= calm_seconds]
    normal = float(np.percentile(calm, 99)) if calm else float("inf")
    within = sum(not failed and latency <= normal for latency, failed in attacked)
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    longest: dict[str, float] = defaultdict(float)
    for event in events:
        outcomes[event.kind][event.outcome] += 1
        longest[event.kind] = max(longest[event.kind], event.took)
    return {
        "calm_seconds": calm_seconds,
        "calm_p99_ms": round(normal * 1000, 1),
        "good_requests_under_attack": len(attacked),
        "good_failures_under_attack": sum(failed for _, failed in attacked),
        "good_within_calm_p99": within,
        "good_within_calm_p99_share": round(within / len(attacked), 4) if attacked else None,
        "attacks": {
            kind: {"outcomes": dict(counts), "longest_s": longest[kind]} for kind, counts in outcomes.items()
        },
    }


def per_minute(records: list[tuple[float, float, bool, bool]]) -> list[dict[str, object]]:
    minutes: dict[int, list[tuple[float, bool, bool]]] = defaultdict(list)
    for t, latency, failed, changed in records:
        minutes[int(t // 60)].append((latency, failed, changed))
    rows = []
    for minute in sorted(minutes):
        latencies = np.array([latency for latency, failed, _ in minutes[minute] if not failed])
        rows.append(
            {
                "minute": minute + 1,
                "requests": len(minutes[minute]),
                "failures": sum(failed for _, failed, _ in minutes[minute]),
                "changed_transcripts": sum(changed for _, _, changed in minutes[minute]),
                "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies.size else None,
                "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1) if latencies.size else None,
            }
        )
    return rows


def write_report(result: dict[str, object], settings: dict[str, object], output: Path) -> dict[str, object]:
    """soak.json (summary), soak_minutes.csv, soak_rss.csv and soak.png into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    rows = per_minute(result["records"])
    samples: list[Sample] = result["samples"]
    by_process: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_process[sample.process].append(sample)
    memory = {
        name: {
            "first_mb": points[0].rss_mb,
            "peak_mb": max(p.rss_mb for p in points),
            "last_mb": points[-1].rss_mb,
        }
        for name, points in by_process.items()
    }
    summary = {
        **settings,
        **({"attack": result["attack"]} if "attack" in result else {}),
        "requests": sum(r["requests"] for r in rows),
        "failures": sum(r["failures"] for r in rows),
        "changed_transcripts": sum(r["changed_transcripts"] for r in rows),
        "minutes": rows,
        "memory": memory,
    }
    (output / "soak.json").write_text(json.dumps(summary, indent=1))
    with (output / "soak_minutes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["minute"])
        writer.writeheader()
        writer.writerows(rows)
    with (output / "soak_rss.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["seconds", "process", "rss_mb"])
        writer.writeheader()
        writer.writerows(asdict(sample) for sample in samples)
    _plot(rows, by_process, output / "soak.png", settings)
    return summary


def _plot(
    rows: list[dict[str, object]], by_process: dict[str, list[Sample]], png: Path, settings: dict
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    minutes = [r["minute"] for r in rows]
    left.plot(minutes, [r["p50_ms"] for r in rows], marker="o", label="p50")
    left.plot(minutes, [r["p99_ms"] for r in rows], marker="o", label="p99")
    left.set(xlabel="minute", ylabel="latency (ms)", title="latency per minute")
    left.legend()
    for name, points in sorted(by_process.items()):
        right.plot([p.seconds / 60 for p in points], [p.rss_mb for p in points], label=name)
    right.set(xlabel="minute", ylabel="RSS (MB)", title="resident memory per process")
    right.legend(fontsize=7)
    figure.suptitle(
        f"soak: {settings.get('clients')} gRPC clients, {settings.get('minutes')} min, "
        f"{settings.get('clips')} clips"
    )
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
