"""Live recognition at scale: real-time streams to `asr_stream` served with the `torch` engine on a GPU.

Why a module of its own: issue 23's GPU goal (1,000 real-time streams at p95 ≤ 300 ms per chunk) is
about the large shape, and no large Hindi checkpoint travels to the GPU machine (nothing can be
downloaded there). So this writes a model folder `vaani build` takes as it would a real checkpoint:
random wav2vec2-large weights (`gpu_workloads.large_config`, the shape the GPU benchmark times) saved
with the Hindi tokenizer and feature extractor (`vaani.recipe.tiny_model.save_processor`). Random
weights decode to nonsense, but a stream's work does not depend on the words: the segments are cut
by the audio's pauses, and the acoustic model, greedy decoder and every step run the same per
chunk. ``--shape tiny`` (a random tiny model) checks the whole route on a CPU in a minute;
``--shape bundled`` serves models/tiny-hindi, the model of the earlier H100 record.

It builds the repository (greedy decoding, the GPU-sized settings below as options), starts
tritonserver on free ports (with the python-backend stub's paths of `benchmarks/gpu-streaming.sh`
where given), warms every acoustic bucket up, then runs `vaani.benchmarks.streaming` against it at
each stream count: its table and JSON land under ``--out``/streaming, with this run's settings and the
server log's tail beside them.

    python -m vaani.benchmarks.gpu_streaming --out OUT --recordings RECORDINGS.npz --shape large
"""

from __future__ import annotations

import argparse
import json
import os
import site
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vaani.benchmarks import streaming
from vaani.benchmarks.gpu_workloads import large_config, speechlike
from vaani.build.repository import ENGINES, RepositorySettings, settings_changes
from vaani.serving.contract import ACOUSTIC

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("large", "tiny", "bundled")
BUNDLED = ROOT / "models" / "tiny-hindi"


def model_folder(shape: str, work: Path, bundled: Path = BUNDLED, seed: int = 0) -> Path:
    """A folder `vaani build` takes: random ``shape`` weights with the Hindi processor, or ``bundled``."""
    if shape == "bundled":
        return bundled
    from vaani.recipe.tiny_model import make_untrained, save_processor

    folder = work / f"model-{shape}"
    if shape == "tiny":
        return make_untrained(folder, seed)
    import torch
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(seed)
    Wav2Vec2ForCTC(large_config()).save_pretrained(str(folder), safe_serialization=True)
    save_processor(folder)
    return folder


def settings_from(args: argparse.Namespace) -> RepositorySettings:
    """Greedy decoding and this run's options; the rest `vaani build`'s defaults."""
    return RepositorySettings(
        engine=args.engine,
        decoder="greedy",
        max_batch_size=args.max_batch_size,
        acoustic_instances=args.acoustic_instances,
        python_instances=args.python_instances,
        stream_instances=args.stream_instances,
        stream_partial_seconds=args.partial_seconds,
        max_streams=max(args.max_streams, *(int(n) for n in args.streams.split(","))),
        max_queue_size=args.max_queue_size,
        **settings_changes(args.settings),
    )


def _stub_environment(numpy1: str) -> dict[str, str]:
    """What the python-backend stubs on the GPU machine need (see benchmarks/vaani_stub_path.py)."""
    if not numpy1:
        return {}
    paths = [numpy1, os.environ.get("PYTHONPATH", ""), *site.getsitepackages()]
    return {
        "VAANI_STUB_PATH": os.pathsep.join(p for p in paths if p),
        "VAANI_STUB_NUMPY1": numpy1,
        "VAANI_STUB_NUMPY2_FOR": ACOUSTIC,  # DLPack only; transformers' compiled deps need numpy 2
    }


def warm_up(url: str, longest_s: float, concurrency: int = 32) -> None:
    """`asr` on clips from 0.2 s to ``longest_s`` (a segment's cap), many at once: the engine's graphs
    and allocator for every length a stream's partial or segment can have, before anything is timed."""
    from vaani.client.api import TranscriptionClient

    lengths = [0.2 * k for k in range(1, round(longest_s / 0.2) + 1)]
    clips = speechlike(lengths * 2, seed=11)

    def one(clip) -> None:
        client = TranscriptionClient(url, "grpc")
        client.transcribe(clip)
        client.close()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, clips))


def _gpu() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "none (no nvidia-smi)"
    return done.stdout.strip() or "none"


class _HelpFormat(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The module's docstring as written, and every option's default."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.gpu_streaming",
        description=__doc__,
        formatter_class=_HelpFormat,
    )
    parser.add_argument("--out", type=Path, required=True, help="results: streaming/table.md, .json, logs")
    parser.add_argument(
        "--recordings",
        type=Path,
        required=True,
        help="the streams' audio (.npz; --make-recordings writes one)",
    )
    parser.add_argument(
        "--make-recordings", action="store_true", help="only write --recordings (needs espeak-ng) and stop"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/vaani-gpu-streaming"), help="model, repo")
    parser.add_argument("--shape", choices=SHAPES, default="large", help="the served model (see above)")
    parser.add_argument("--bundled-model", type=Path, default=BUNDLED, help="--shape bundled serves this")
    parser.add_argument("--engine", choices=ENGINES, default="torch", help="onnxruntime: the CPU check")
    parser.add_argument("--streams", default="1,250,500,1000", help="concurrent real-time streams, per row")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every stream count")
    parser.add_argument("--partial-seconds", type=float, default=RepositorySettings().stream_partial_seconds,
                        help="--stream-partial-seconds of the server")  # fmt: skip
    parser.add_argument("--stream-instances", type=int, default=8, help="asr_stream instances")
    parser.add_argument("--acoustic-instances", type=int, default=2, help="wav2vec2 instances")
    parser.add_argument("--python-instances", type=int, default=4, help="preprocess, ctc_decoder instances")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument(
        "--settings",
        default="",
        metavar="FIELD=VALUE,…",
        help="more RepositorySettings fields, e.g. host_steps_queue_delay_us=0 (recorded with the results)",
    )
    parser.add_argument("--max-queue-size", type=int, default=4096, help="per step: BLS of every stream")
    parser.add_argument("--max-streams", type=int, default=2048, help="raised to the most --streams")
    parser.add_argument("--client-processes", type=int, default=12, help="the streams are spread over")
    parser.add_argument("--server-pythonpath", default="", help="numpy<2 for the stubs (gpu-streaming.sh)")
    args = parser.parse_args(argv)
    if args.make_recordings:
        made = streaming.load_recordings(args.recordings, max(streaming.CONCURRENCY), sentences=4)
        print(f"{len(made)} recordings → {args.recordings}")
        return 0
    if not args.recordings.is_file():
        parser.error(f"no {args.recordings}: write it where espeak-ng is, with --make-recordings")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    settings = settings_from(args)

    from vaani.build.pipeline import build
    from vaani.supervision.process import Ports, TritonProcess, free_port

    model = model_folder(args.shape, args.work, args.bundled_model)
    repository = build(str(model), args.work / "model_repository", settings)
    log = args.work / "tritonserver.log"
    record = {
        "command": "python -m vaani.benchmarks.gpu_streaming " + " ".join(argv or sys.argv[1:]),
        "gpu": _gpu(),
        "shape": args.shape,
        "settings": settings.__dict__,
    }
    (args.out / "settings.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    ports = Ports(free_port(), free_port(), free_port())
    stub = _stub_environment(args.server_pythonpath)
    os.environ.update(stub)  # the server's alone: the clients' interpreters must not take numpy<2
    try:
        server = TritonProcess(repository, ports, log_file=log)
    finally:
        for key in stub:
            del os.environ[key]
    try:
        with server:
            server.wait_ready(timeout=600)
            url = f"localhost:{ports.grpc}"
            warm_up(url, settings.stream_segment_seconds)
            status = streaming.main(
                [
                    "--url", url, "--concurrency", args.streams, "--chunk-lengths", "",
                    "--repeats", str(args.repeats), "--recordings", str(args.recordings),
                    "--client-processes", str(args.client_processes), "--manifest", "",
                    "--output", str(args.out / "streaming"),
                ]
            )  # fmt: skip
    finally:
        if log.exists():
            text = log.read_text()
            (args.out / "tritonserver-tail.log").write_text(text[-20_000:])
            # What the engine said when it started (graphs captured or turned off), long before the tail.
            said = [line for line in text.splitlines() if line.startswith("torch engine:")]
            (args.out / "engine-messages.log").write_text("\n".join(said) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
