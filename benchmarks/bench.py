"""`vaani bench`: Triton against what users would build instead, in one run, on one table.

Same machine, same model, same clips, same thread budget for every system:

(a) the Hugging Face ASR pipeline in process (PyTorch eager), clips one after another;
(b) the exported ONNX graph on ONNX Runtime in process, clips one after another;
(c) the `asr` ensemble on Triton, over HTTP and gRPC, driven by Locust at one user and at the
    saturation user count;
(d) FastAPI + uvicorn around the same Hugging Face pipeline, driven by the same Locust load.

The bench starts and stops its own servers on free ports, so one command measures everything.
Servers run one at a time: on a small CPU an idle-but-running neighbour is still a neighbour.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vaani.benchmarks.bench_report import BenchRow, write_all
from vaani.build.repository import RepositorySettings
from vaani.build.tensorrt.route import PlanOptions
from vaani.errors import UserFacingError
from vaani.loadtest.clips import Clip
from vaani.loadtest.runner import run_locust
from vaani.loadtest.stats import RequestRecord, summarize_runs
from vaani.serving.contract import ACOUSTIC, version_dir
from vaani.supervision.process import free_port

BASE_RANDOM = "base-random"


@dataclass(frozen=True)
class BenchPlan:
    """What to measure and how hard; every field is a `vaani bench` option."""

    model: str
    output: Path  # the table, CSV and plot: small, meant to be kept
    work: Path  # models, repository, clips, Locust files, server logs: large, regenerated
    sources: Path
    settings: RepositorySettings
    threads: int
    users: int = 8
    seconds: float = 60.0
    check_clips: int = 6
    rounds: int = 3
    name: str = ""


def base_random_model(directory: Path, seed: int = 0) -> Path:
    """A base-size wav2vec2 CTC (≈95 M parameters) with random weights, in the real model's family.

    `Wav2Vec2Config()` defaults are the base shape; layer-norm feature encoder and stable layer
    norm are what indicwav2vec-hindi uses. Compute per audio-second is what matters for the bench,
    not the words, so nothing is downloaded.
    """
    if (directory / "config.json").exists():
        return directory
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from vaani.recipe import hindi
    from vaani.recipe.tiny_model import save_processor

    vocab = hindi.ctc_vocabulary()
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        pad_token_id=vocab[hindi.PAD],
        bos_token_id=vocab[hindi.BOS],
        eos_token_id=vocab[hindi.EOS],
    )
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(config).save_pretrained(str(directory), safe_serialization=True)
    save_processor(directory)
    return directory


def resolve_model(model: str, output: Path) -> Path:
    from vaani.build.source import resolve

    if model == BASE_RANDOM:
        return base_random_model(output / "models" / "wav2vec2-base-random")
    return resolve(model)


def clean_text(text: str, special_tokens: list[str]) -> str:
    """The pipeline's text as the project's CTC decoder writes it: no special tokens, single spaces."""
    for token in special_tokens:
        text = text.replace(token, "")
    return " ".join(text.split())


class InProcess:
    """Clips one after another through a transcribe function, continuing where the last round stopped."""

    def __init__(self, clips: list[Clip], transcribe: Callable[[np.ndarray], str], label: str) -> None:
        self.clips = clips
        self.transcribe = transcribe
        self.label = label
        self._next = itertools.cycle(clips)

    def texts(self, clips: list[Clip]) -> list[str]:
        """One transcript per clip (also the warm-up: first calls allocate what later calls reuse)."""
        from tqdm import tqdm

        return [self.transcribe(c.audio) for c in tqdm(clips, desc=f"{self.label} warm-up", leave=False)]

    def measure(self, seconds: float, round_number: int = 0) -> list[RequestRecord]:
        """At least one request, then requests until ``seconds`` have passed."""
        from tqdm import tqdm

        records: list[RequestRecord] = []
        began = time.monotonic()
        with tqdm(desc=f"{self.label} round {round_number + 1}", unit="clip", leave=False) as bar:
            while not records or time.monotonic() - began < seconds:
                clip = next(self._next)
                start = time.time()
                tick = time.perf_counter()
                text = self.transcribe(clip.audio)
                latency = (time.perf_counter() - tick) * 1000
                records.append(
                    RequestRecord(start, latency, clip.seconds, self.label, "", 1, bool(text.strip()))
                )
                bar.update()
        return records


def row(
    system: str, protocol: str, concurrency: int, runs: list[list[RequestRecord]], match: float
) -> BenchRow:
    s = summarize_runs(runs)
    return BenchRow(
        system,
        protocol,
        concurrency,
        s.requests,
        s.failures,
        s.requests_per_s,
        s.audio_seconds_per_s,
        s.p50_ms,
        s.p90_ms,
        s.p99_ms,
        s.mean_rtf,
        match,
    )


def agreement(texts: list[str], references: list[str]) -> float:
    return sum(a == b for a, b in zip(texts, references)) / max(1, len(references))


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserFacingError(f"the server behind {url} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise UserFacingError(f"{url} was not ready within {timeout:.0f} s")


def _post_audio(url: str, audio: np.ndarray) -> str:
    import json

    request = urllib.request.Request(
        url, data=audio.astype(np.float32).tobytes(), headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())["text"]


@dataclass
class Measurement:
    """One row of the table: how to measure a round of it, and the rounds measured so far."""

    system: str
    protocol: str
    concurrency: int
    measure: Callable[[float, int], list[RequestRecord]]
    match: float
    runs: list[list[RequestRecord]] = field(default_factory=list)


class Bench:
    """One bench run: every system set up and warmed, then measured in interleaved rounds.

    Each round gives every row ``seconds / rounds`` in turn, so that load from elsewhere on a
    shared machine spreads over all systems instead of falsifying one of them.
    """

    def __init__(self, plan: BenchPlan, clips: list[Clip], manifest: Path) -> None:
        self.plan = plan
        self.clips = clips
        self.manifest = manifest
        self.model_dir = resolve_model(plan.model, plan.work)
        self.check = sorted(clips, key=lambda c: c.seconds)[:: max(1, len(clips) // plan.check_clips)]
        self.references: dict[str, str] = {}
        self.rows: list[Measurement] = []

    def _log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    def run(self) -> Path:
        import torch
        from tqdm import tqdm

        torch.set_num_threads(self.plan.threads)
        repository = self.build_repository()
        with ExitStack() as servers:
            self.hugging_face()
            self.onnxruntime(version_dir(repository, ACOUSTIC) / "model.onnx")
            self.triton(repository, servers)
            self.fastapi(servers)
            share = self.plan.seconds / self.plan.rounds
            self._log(
                f"measuring {len(self.rows)} rows in {self.plan.rounds} interleaved rounds of {share:.0f} s"
            )
            for number in tqdm(range(self.plan.rounds), desc="rounds", unit="round"):
                for measurement in self.rows:
                    measurement.runs.append(measurement.measure(share, number))
        rows = [row(m.system, m.protocol, m.concurrency, m.runs, m.match) for m in self.rows]
        return write_all(rows, self.conditions(), self.plan.output)

    def build_repository(self) -> Path:
        from vaani.build.pipeline import build

        repository = self.plan.work / "repository"
        for source in self.plan.sources.glob("*/1/model.py"):
            target = repository / source.relative_to(self.plan.sources)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        self._log(f"building the Triton repository for {self.model_dir}")
        return build(str(self.model_dir), repository, self.plan.settings, plan=self.gate())

    def gate(self) -> PlanOptions:
        """The accuracy gate of `--quantize`: the bench's own clips. Random weights have no accuracy
        to keep, so for base-random the gate reports its numbers without a limit; the table's
        transcripts column shows how far INT8 moved them."""
        limit = math.inf if self.plan.model == BASE_RANDOM else PlanOptions.max_cer_increase
        return PlanOptions(manifest=self.manifest, max_cer_increase=limit)

    def hugging_face(self) -> None:
        from transformers import pipeline

        self._log("(a) Hugging Face pipeline in process: reference transcripts")
        asr = pipeline("automatic-speech-recognition", model=str(self.model_dir), device=-1)
        specials = [t for t in asr.tokenizer.all_special_tokens if t != asr.tokenizer.word_delimiter_token]
        self._clean = lambda text: clean_text(text, specials)
        runner = InProcess(self.clips, lambda audio: asr(audio)["text"], "hf-pipeline")
        self.references = {c.path: self._clean(t) for c, t in zip(self.clips, runner.texts(self.clips))}
        self.rows.append(Measurement("hf-pipeline", "in process", 1, runner.measure, 1.0))

    def onnxruntime(self, onnx: Path) -> None:
        from vaani.build.hf_model import HfModel
        from vaani.serving.engines.onnxruntime import OnnxRuntimeEngine

        self._log("(b) ONNX Runtime in process")
        hf = HfModel.load(self.model_dir)
        engine = OnnxRuntimeEngine(onnx, threads=self.plan.threads)

        def transcribe(audio: np.ndarray) -> str:
            values, mask = hf.features([audio])
            ids = engine(values, mask).argmax(-1)[0]
            return hf.decode(ids[: hf.spec_frames(len(audio))])

        runner = InProcess(self.clips, transcribe, "onnxruntime")
        match = self._match(runner.texts(self.clips), self.clips)
        self.rows.append(Measurement("onnxruntime", "in process", 1, runner.measure, match))

    def _match(self, texts: list[str], clips: list[Clip]) -> float:
        return agreement([self._clean(t) for t in texts], [self.references[c.path] for c in clips])

    def _locust(
        self, host: str, target: str, users: int, grpc_url: str | None = None
    ) -> Callable[[float, int], list[RequestRecord]]:
        def measure(seconds: float, number: int) -> list[RequestRecord]:
            name = f"{target}-c{users}-r{number + 1}"
            run = run_locust(
                host,
                [target],
                self.manifest,
                self.plan.work / "locust" / name,
                users=users,
                seconds=seconds,
                grpc_url=grpc_url,
                label=f"locust {name}",
                seed=number,
            )
            if not run.records:
                raise UserFacingError(f"Locust run {name} recorded no requests; see {run.log}")
            return run.records

        return measure

    def _concurrencies(self) -> list[int]:
        return sorted({1, self.plan.users})

    def triton(self, repository: Path, servers: ExitStack) -> None:
        from tqdm import tqdm

        from vaani.client.api import TranscriptionClient
        from vaani.supervision.process import Ports, TritonProcess

        self._log("(c) Triton ensemble over HTTP and gRPC")
        ports = Ports(free_port(), free_port(), free_port())
        log = self.plan.work / "tritonserver.log"
        server = servers.enter_context(TritonProcess(repository, ports, log_file=log))
        server.wait_ready()
        client = TranscriptionClient(server.http_url, "http")
        texts = [client.transcribe(c.audio) for c in tqdm(self.check, desc="triton warm-up", leave=False)]
        client.close()
        match = self._match(texts, self.check)
        for users in self._concurrencies():
            for protocol in ("http", "grpc"):
                measure = self._locust(f"http://{server.http_url}", protocol, users, server.grpc_url)
                self.rows.append(Measurement("triton", protocol, users, measure, match))

    def fastapi(self, servers: ExitStack) -> None:
        from tqdm import tqdm

        self._log("(d) FastAPI + uvicorn around the Hugging Face pipeline")
        port = free_port()
        command = [sys.executable, "-m", "vaani.benchmarks.fastapi_baseline", "--model", str(self.model_dir)]
        command += ["--port", str(port), "--threads", str(self.plan.threads)]
        log = servers.enter_context(open(self.plan.work / "fastapi.log", "w"))  # noqa: SIM115 - the stack closes it
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        servers.callback(process.wait, timeout=60)
        servers.callback(process.terminate)
        _wait_http(f"http://127.0.0.1:{port}/health", process)
        url = f"http://127.0.0.1:{port}/transcribe"
        texts = [_post_audio(url, c.audio) for c in tqdm(self.check, desc="fastapi warm-up", leave=False)]
        match = self._match(texts, self.check)
        for users in self._concurrencies():
            self.rows.append(
                Measurement(
                    "fastapi",
                    "http",
                    users,
                    self._locust(f"http://127.0.0.1:{port}", "fastapi", users),
                    match,
                )
            )

    def conditions(self) -> dict[str, object]:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(self.model_dir))
        lengths = [c.seconds for c in self.clips]
        parameters = _parameter_count(self.model_dir)
        label = self.plan.model if self.plan.model == BASE_RANDOM else Path(self.plan.model).name
        settings = asdict(self.plan.settings)
        return {
            "title": self.plan.name or f"vaani bench: {label}",
            "model": f"{self.plan.model} (hidden {config.hidden_size}, {config.num_hidden_layers} layers)",
            "parameters": f"{parameters / 1e6:.1f} M",
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "threads": f"{self.plan.threads} for every system (PyTorch intra-op, ONNX Runtime intra-op x "
            f"{settings['acoustic_instances']} Triton instance(s))",
            "date": datetime.date.today().isoformat(),
            "clips": f"{len(lengths)} clips, {min(lengths):.1f}-{max(lengths):.1f} s, "
            f"mean {np.mean(lengths):.1f} s (synthetic Hindi speech, espeak-ng)",
            "load": f"Locust closed loop (no wait), {self.plan.seconds:.0f} s per row in {self.plan.rounds} "
            "interleaved rounds (every row once per round); in-process rows: clips one after another",
            "triton": ", ".join(f"{k}={v}" for k, v in settings.items() if not k.startswith("profile_")),
            "python": platform.python_version(),
        }


def _parameter_count(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), "np") as weights:
            total += sum(int(np.prod(weights.get_slice(k).get_shape())) for k in weights.keys())  # noqa: SIM118
    return total


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
