"""WER/CER evaluation of the served `asr` model on a NeMo-style manifest.

The scoring, summary, CSV and plot functions are pure (lists in, values or files out) so tests
check them without a server; only :func:`transcribe_all` and :func:`served_model_name` talk to
Triton. Scores are corpus-level — one `jiwer` call over every (reference, hypothesis) pair after
:func:`vaani.scoring.normalize` — because that is how published WERs are computed: an
average of per-utterance rates would over-weight short utterances.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from vaani.audio import AudioFileError, load_audio
from vaani.errors import UserFacingError
from vaani.manifest import ManifestEntry, read_manifest
from vaani.scoring import Scores, score
from vaani.serving.contract import DECODER, ENSEMBLE, SAMPLING_RATE

from .api import DEFAULT_URLS, TranscriptionClient, TranscriptionError
from .decoders import ServedDecoder
from .transcription import Transcription


@dataclass(frozen=True)
class PublishedResult:
    """One published WER of a model, with where it comes from."""

    source: str
    test_set: str
    wer_percent: float


# Published WERs (%) to print beside a measured run of the same model: the Vistaar benchmark
# (greedy decoding) and the IndicWav2Vec paper's MUCS numbers.
PUBLISHED: dict[str, tuple[PublishedResult, ...]] = {
    "indicwav2vec-hindi": (
        PublishedResult("Vistaar", "Kathbath", 12.2),
        PublishedResult("Vistaar", "FLEURS", 18.3),
        PublishedResult("Vistaar", "Common Voice", 20.2),
        PublishedResult("Vistaar", "MUCS", 22.9),
        PublishedResult("Vistaar", "average", 21.0),
        PublishedResult("IndicWav2Vec paper", "MUCS, greedy", 16.0),
        PublishedResult("IndicWav2Vec paper", "MUCS, KenLM", 14.7),
    ),
}


class Transcriber(Protocol):
    """The part of `TranscriptionClient` the evaluation uses (a fake in tests)."""

    def transcribe(self, audio: np.ndarray) -> str: ...

    def close(self) -> None: ...


def published_results(
    model_name: str, explicit: str | None = None
) -> tuple[str, tuple[PublishedResult, ...]]:
    """The published numbers for ``explicit`` or for a known model named inside ``model_name``.

    Returns ("", ()) when there is nothing to compare with: the tiny bundled model has no
    published results, and printing indicwav2vec's beside it would invite a wrong comparison.
    """
    if explicit is not None:
        if explicit not in PUBLISHED:
            raise UserFacingError(f"no published numbers for {explicit!r}; known: {', '.join(PUBLISHED)}")
        return explicit, PUBLISHED[explicit]
    for name, results in PUBLISHED.items():
        if name in model_name.lower():
            return name, results
    return "", ()


def build_summary(
    transcriptions: Sequence[Transcription],
    scores: Scores,
    *,
    wall_seconds: float,
    model: str,
    url: str,
    protocol: str,
    manifest: Path,
    published_model: str = "",
    published: Sequence[PublishedResult] = (),
) -> dict[str, Any]:
    """The content of ``summary.json``.

    ``rtf`` is summed request time over audio time (what one stream would see); the
    ``audio_seconds_per_second`` throughput divides by wall time, so it shows what concurrency
    bought.
    """
    audio_seconds = sum(t.audio_seconds for t in transcriptions)
    latencies_ms = np.array([t.latency_s * 1000.0 for t in transcriptions])
    p50, p90, p99 = (float(v) for v in np.percentile(latencies_ms, [50, 90, 99]))
    summary: dict[str, Any] = {
        "wer": scores.wer,
        "cer": scores.cer,
        "substitutions": scores.substitutions,
        "deletions": scores.deletions,
        "insertions": scores.insertions,
        "hits": scores.hits,
        "utterances": len(transcriptions),
        "audio_hours": audio_seconds / 3600.0,
        "rtf": float(latencies_ms.sum() / 1000.0 / audio_seconds),
        "audio_seconds_per_second": audio_seconds / wall_seconds if wall_seconds > 0 else math.inf,
        "wall_seconds": wall_seconds,
        "latency_ms": {"p50": p50, "p90": p90, "p99": p99},
        "model": model,
        "url": url,
        "protocol": protocol,
        "manifest": str(manifest),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if published:
        summary["published"] = {
            "model": published_model,
            "wer_percent": [
                {"source": r.source, "test_set": r.test_set, "wer_percent": r.wer_percent} for r in published
            ],
        }
    return summary


CSV_COLUMNS = (
    "audio_filepath",
    "duration_s",
    "latency_ms",
    "reference",
    "hypothesis",
    "reference_normalized",
    "hypothesis_normalized",
    "wer",
    "cer",
    "alignment",
)


def write_utterances_csv(transcriptions: Sequence[Transcription], scores: Scores, path: Path) -> None:
    """One row per utterance in manifest order, with normalized strings and the word alignment."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for transcription, utterance in zip(transcriptions, scores.utterances, strict=True):
            writer.writerow(
                [
                    str(transcription.entry.audio_path),
                    f"{transcription.audio_seconds:.3f}",
                    f"{transcription.latency_s * 1000.0:.2f}",
                    transcription.entry.text,
                    transcription.hypothesis,
                    utterance.reference,
                    utterance.hypothesis,
                    f"{utterance.wer:.6f}",
                    f"{utterance.cer:.6f}",
                    utterance.alignment,
                ]
            )


def write_report_png(transcriptions: Sequence[Transcription], scores: Scores, path: Path) -> None:
    """Two panels: per-utterance WER/CER distribution and request latency distribution.

    Uses `Figure` directly instead of pyplot: no global state and no GUI backend, so it works
    headless and from any thread.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    errors_axis, latency_axis = figure.subplots(1, 2)
    wers = [100.0 * u.wer for u in scores.utterances if not math.isnan(u.wer)]
    cers = [100.0 * u.cer for u in scores.utterances if not math.isnan(u.cer)]
    top = max([100.0, *wers, *cers])
    bins = np.linspace(0.0, top, 21)
    errors_axis.hist(wers, bins=bins, alpha=0.6, label=f"WER (corpus {100 * scores.wer:.1f} %)")
    errors_axis.hist(cers, bins=bins, alpha=0.6, label=f"CER (corpus {100 * scores.cer:.1f} %)")
    errors_axis.set_xlabel("per-utterance error rate (%)")
    errors_axis.set_ylabel("utterances")
    errors_axis.set_title("Error-rate distribution")
    errors_axis.legend()
    latencies = np.array([t.latency_s * 1000.0 for t in transcriptions])
    latency_axis.hist(latencies, bins=30, color="tab:green")
    for quantile, style in ((50, "-"), (90, "--"), (99, ":")):
        value = float(np.percentile(latencies, quantile))
        latency_axis.axvline(value, color="black", linestyle=style, label=f"p{quantile} {value:.1f} ms")
    latency_axis.set_xlabel("request latency (ms)")
    latency_axis.set_ylabel("requests")
    latency_axis.set_title("Latency distribution")
    latency_axis.legend()
    for axis in (errors_axis, latency_axis):
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.savefig(path, dpi=110)


def format_summary(summary: dict[str, Any]) -> str:
    """The table printed at the end of a run, with published numbers beside it when known."""
    latency = summary["latency_ms"]
    lines = [
        f"model      {summary['model']}  ({summary['protocol']}://{summary['url']})",
        f"manifest   {summary['manifest']}",
        f"audio      {summary['utterances']} utterances, {summary['audio_hours'] * 60:.2f} min",
        "",
        f"{'metric':<28}{'measured':>14}",
        f"{'WER %':<28}{100 * summary['wer']:>14.2f}",
        f"{'CER %':<28}{100 * summary['cer']:>14.2f}",
        f"{'substitutions':<28}{summary['substitutions']:>14d}",
        f"{'deletions':<28}{summary['deletions']:>14d}",
        f"{'insertions':<28}{summary['insertions']:>14d}",
        f"{'hits':<28}{summary['hits']:>14d}",
        f"{'RTF (request time / audio)':<28}{summary['rtf']:>14.4f}",
        f"{'audio s per wall s':<28}{summary['audio_seconds_per_second']:>14.1f}",
        f"{'latency p50 / p90 / p99 ms':<28}"
        f"{latency['p50']:>8.1f} / {latency['p90']:.1f} / {latency['p99']:.1f}",
    ]
    reference = summary.get("reference")
    if reference:
        lines += [
            "",
            f"FP32 PyTorch reference ({reference['model']}, {reference['decoder']}) on the same audio",
            f"{'':<28}{'served':>10}{'pytorch':>10}",
            f"{'WER %':<28}{100 * summary['wer']:>10.2f}{100 * reference['wer']:>10.2f}",
            f"{'CER %':<28}{100 * summary['cer']:>10.2f}{100 * reference['cer']:>10.2f}",
            f"{'identical transcripts':<28}{reference['identical_transcripts']:>10d}"
            f" of {reference['utterances']}",
        ]
    published = summary.get("published")
    if published:
        lines += [
            "",
            f"WER % of {published['model']}: this run beside the published numbers",
            f"{'source':<22}{'test set':<18}{'WER %':>8}",
            f"{'this run':<22}{Path(summary['manifest']).name:<18}{100 * summary['wer']:>8.1f}",
        ]
        lines += [
            f"{r['source']:<22}{r['test_set']:<18}{r['wer_percent']:>8.1f}" for r in published["wer_percent"]
        ]
    return "\n".join(lines)


def transcribe_all(
    entries: Sequence[ManifestEntry],
    make_client: Callable[[], Transcriber],
    load: Callable[[Path], np.ndarray],
    concurrency: int = 1,
    progress: bool = True,
) -> tuple[list[Transcription], float]:
    """Transcribe every entry with ``concurrency`` threads; returns results in manifest order and wall time.

    Each thread gets its own client: tritonclient's HTTP client is not safe to share between
    threads. Latency covers the request only, not reading the file. The first failure stops the
    run and names the file, since a WER over a silently reduced set would not be comparable.
    """
    local = threading.local()
    clients: list[Transcriber] = []

    def one(entry: ManifestEntry) -> Transcription:
        if not hasattr(local, "client"):
            local.client = make_client()
            clients.append(local.client)
        try:
            audio = load(entry.audio_path)
        except AudioFileError as error:
            raise UserFacingError(str(error)) from None
        start = time.perf_counter()
        try:
            hypothesis = local.client.transcribe(audio)
        except TranscriptionError as error:
            raise UserFacingError(f"transcribing {entry.audio_path} failed: {error}") from None
        latency = time.perf_counter() - start
        return Transcription(entry, hypothesis, latency, len(audio) / SAMPLING_RATE)

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = [pool.submit(one, entry) for entry in entries]
            try:
                completed = as_completed(futures)
                bar = tqdm(completed, "transcribing", len(futures), unit="utt", disable=not progress)
                for future in bar:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        for client in clients:
            client.close()
    return [future.result() for future in futures], time.perf_counter() - start


def served_config(url: str, protocol: str, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model``'s config and metadata as the server reports them, as JSON-shaped dicts."""
    if protocol == "http":
        import tritonclient.http as triton

        client = triton.InferenceServerClient(url)
        try:
            return client.get_model_config(model), client.get_model_metadata(model)
        finally:
            client.close()
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(url)
    try:
        return client.get_model_config(model, as_json=True)["config"], client.get_model_metadata(
            model, as_json=True
        )
    finally:
        client.close()


def _parameter(config: dict[str, Any], name: str) -> str | None:
    return config.get("parameters", {}).get(name, {}).get("string_value")


def served_model_name(url: str, protocol: str, model: str) -> str:
    """What the server says it serves as ``model``: its ``source_model`` config parameter if set.

    Falls back to the Triton model name and ready versions, which at least tells runs against
    different repositories apart.
    """
    config, metadata = served_config(url, protocol, model)
    source = _parameter(config, "source_model")
    if source:
        return str(source)
    return f"{model} (Triton, versions {', '.join(metadata.get('versions', [])) or '?'})"


def served_decoder(url: str, protocol: str) -> ServedDecoder:
    """How the server's `ctc_decoder` decodes: the reference decodes its logits the same way, so
    that "identical transcripts" compares engines, not decoders."""
    config, _ = served_config(url, protocol, DECODER)
    return ServedDecoder(
        _parameter(config, "decoder") or "greedy", int(_parameter(config, "beam_width") or 0)
    )


def evaluate(
    manifest: Path,
    output: Path,
    *,
    url: str | None = None,
    protocol: str = "http",
    model: str = ENSEMBLE,
    concurrency: int = 1,
    model_name: str | None = None,
    published: str | None = None,
    progress: bool = True,
    reference_model: Path | None = None,
) -> dict[str, Any]:
    """The whole `vaani wer` run: transcribe, score, write the three files; returns the summary.

    With ``reference_model`` the summary also holds the FP32 PyTorch reference on the same audio.
    """
    entries = read_manifest(manifest)
    url = url or DEFAULT_URLS[protocol]
    probe = TranscriptionClient(url, protocol, model)
    try:
        if not probe.is_ready():
            raise UserFacingError(
                f"no ready model {model!r} at {protocol}://{url}: is the server running (`make serve`)?"
            )
    finally:
        probe.close()
    name = model_name or served_model_name(url, protocol, model)
    published_model, published_rows = published_results(name, published)
    transcriptions, wall_seconds = transcribe_all(
        entries,
        lambda: TranscriptionClient(url, protocol, model),
        load_audio,
        concurrency=concurrency,
        progress=progress,
    )
    scores = score([t.entry.text for t in transcriptions], [t.hypothesis for t in transcriptions])
    summary = build_summary(
        transcriptions,
        scores,
        wall_seconds=wall_seconds,
        model=name,
        url=url,
        protocol=protocol,
        manifest=manifest,
        published_model=published_model,
        published=published_rows,
    )
    if reference_model is not None:
        from vaani.client.reference import compare_with_reference

        decoder = served_decoder(url, protocol)
        summary["reference"] = compare_with_reference(transcriptions, reference_model, decoder, progress)
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    write_utterances_csv(transcriptions, scores, output / "utterances.csv")
    write_report_png(transcriptions, scores, output / "report.png")
    return summary
