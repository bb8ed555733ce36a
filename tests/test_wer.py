"""`vaani wer`: its numbers must be exactly jiwer's on the normalized strings, with or without a server."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from vaani.cli import main
from vaani.client import wer
from vaani.client.api import TranscriptionError
from vaani.errors import UserFacingError
from vaani.scoring import normalize
from vaani.serving.contract import ENSEMBLE, SAMPLING_RATE

from .conftest import BUNDLED_MODEL

# References with the things normalization handles; hypotheses with real errors of each kind.
REFERENCES = [
    "मैं घर जा रहा हूँ।",
    "\u095b\u0930\u0942\u0930, आज बारिश होगी॥",  # ज़रूर with a precomposed ज़
    "राम ने\u200d सीता को फूल दिए",
    "वह बहुत   अच्छा गाता है",
]
HYPOTHESES = [
    "मैं घर जा रहा हूँ",  # correct once punctuation is gone
    "\u091c\u093c\u0930\u0942\u0930 आज बारिश",  # decomposed ज़, one deletion
    "राम ने सीता को फल दिए",  # one substitution
    "वह बहुत ही अच्छा गाता है",  # one insertion
]


def test_score_equals_jiwer_on_normalized_strings() -> None:
    refs = [normalize(text) for text in REFERENCES]
    hyps = [normalize(text) for text in HYPOTHESES]
    expected_words = jiwer.process_words(refs, hyps)

    scores = wer.score(REFERENCES, HYPOTHESES)

    assert scores.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert scores.cer == pytest.approx(jiwer.cer(refs, hyps))
    assert (scores.substitutions, scores.deletions, scores.insertions, scores.hits) == (
        expected_words.substitutions,
        expected_words.deletions,
        expected_words.insertions,
        expected_words.hits,
    )
    assert (scores.substitutions, scores.deletions, scores.insertions) == (1, 1, 1)
    # Normalization made the nukta and punctuation variants agree: no error counted for them.
    assert scores.utterances[0].wer == 0.0
    assert scores.utterances[1].alignment == "ज़रूर आज बारिश [D होगी]"


def test_per_utterance_rates_equal_jiwer_per_pair_and_alignment_shows_each_error() -> None:
    scores = wer.score(REFERENCES, HYPOTHESES)
    for reference, hypothesis, utterance in zip(REFERENCES, HYPOTHESES, scores.utterances, strict=True):
        assert utterance.reference == normalize(reference)
        assert utterance.hypothesis == normalize(hypothesis)
        assert utterance.wer == pytest.approx(jiwer.wer(utterance.reference, utterance.hypothesis))
        assert utterance.cer == pytest.approx(jiwer.cer(utterance.reference, utterance.hypothesis))
    assert scores.utterances[2].alignment == "राम ने सीता को [S फूल→फल] दिए"
    assert scores.utterances[3].alignment == "वह बहुत [I ही] अच्छा गाता है"


def test_empty_reference_counts_its_insertions_in_the_corpus_rate() -> None:
    scores = wer.score(["एक दो", "।"], ["एक दो", "तीन"])
    assert scores.insertions == 1
    assert scores.wer == pytest.approx(0.5)
    assert math.isnan(scores.utterances[1].wer)
    with pytest.raises(UserFacingError, match="empty"):
        wer.score(["।"], ["कुछ"])


def _write_wav(path: Path, seconds: float) -> None:
    sf.write(path, np.zeros(round(seconds * SAMPLING_RATE), dtype=np.float32), SAMPLING_RATE)


def _manifest(folder: Path, texts: list[str]) -> Path:
    """Wavs of distinct lengths (0.5 s, 0.6 s, …) so a fake client can tell them apart."""
    (folder / "audio").mkdir()
    lines = []
    for index, text in enumerate(texts):
        seconds = 0.5 + 0.1 * index
        path = folder / "audio" / f"{index}.wav"
        _write_wav(path, seconds)
        # Alternate relative and absolute paths: both must resolve.
        name = str(path) if index % 2 else f"audio/{index}.wav"
        lines.append(
            json.dumps({"audio_filepath": name, "text": text, "duration": seconds}, ensure_ascii=False)
        )
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


class FakeClient:
    """Stands in for `TranscriptionClient`: answers by audio length, records being closed."""

    closed = 0

    def __init__(self, url: str | None = None, protocol: str = "http", model: str = ENSEMBLE) -> None:
        self.url = url

    def is_ready(self) -> bool:
        return True

    def transcribe(self, audio: np.ndarray) -> str:
        index = round((len(audio) / SAMPLING_RATE - 0.5) / 0.1)
        if index >= len(HYPOTHESES):
            raise TranscriptionError("audio longer than the configured maximum")
        return HYPOTHESES[index]

    def close(self) -> None:
        FakeClient.closed += 1


def test_read_manifest_resolves_relative_and_absolute_paths(tmp_path: Path) -> None:
    entries = wer.read_manifest(_manifest(tmp_path, REFERENCES))
    assert [entry.text for entry in entries] == REFERENCES
    assert all(entry.audio_path.is_file() for entry in entries)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"audio_filepath": "missing.wav", "text": "एक"}\n', "audio file not found"),
        ('{"text": "एक"}\n', "manifest.jsonl:1"),
        ("not json\n", "expected a JSON object"),
        ("\n", "no entries"),
    ],
)
def test_read_manifest_reports_problems_with_line_numbers(tmp_path: Path, content: str, message: str) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(content, encoding="utf-8")
    with pytest.raises(UserFacingError, match=message):
        wer.read_manifest(manifest)


def test_transcribe_all_keeps_manifest_order_under_concurrency(tmp_path: Path) -> None:
    from vaani.audio import load_audio

    entries = wer.read_manifest(_manifest(tmp_path, REFERENCES))
    FakeClient.closed = 0
    results, wall_seconds = wer.transcribe_all(entries, FakeClient, load_audio, concurrency=3, progress=False)
    assert [result.hypothesis for result in results] == HYPOTHESES
    assert [result.entry for result in results] == entries
    assert [result.audio_seconds for result in results] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert wall_seconds > 0
    assert 1 <= FakeClient.closed <= 3


def test_transcribe_all_stops_on_a_server_error_and_names_the_file(tmp_path: Path) -> None:
    from vaani.audio import load_audio

    entries = wer.read_manifest(_manifest(tmp_path, [*REFERENCES, "एक और"]))
    with pytest.raises(UserFacingError, match=r"4\.wav failed: audio longer"):
        wer.transcribe_all(entries, FakeClient, load_audio, concurrency=2, progress=False)


def test_wer_command_without_server_writes_reports_and_published_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wer, "TranscriptionClient", FakeClient)
    manifest = _manifest(tmp_path, REFERENCES)
    output = tmp_path / "out"
    argv = ["wer", str(manifest), "--output", str(output), "--model-name", "ai4bharat/indicwav2vec-hindi"]

    assert main([*argv, "--concurrency", "2", "--no-progress"]) == 0

    summary = _check_reports(output, len(REFERENCES))
    refs = [normalize(text) for text in REFERENCES]
    hyps = [normalize(text) for text in HYPOTHESES]
    assert summary["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert summary["audio_hours"] == pytest.approx(2.6 / 3600)
    assert summary["published"]["model"] == "indicwav2vec-hindi"
    printed = capsys.readouterr().out
    assert "Kathbath" in printed and "12.2" in printed and "14.7" in printed
    assert f"{100 * summary['wer']:.2f}" in printed


def test_published_numbers_only_for_known_models() -> None:
    assert wer.published_results("ai4bharat/indicwav2vec-hindi")[0] == "indicwav2vec-hindi"
    assert wer.published_results("models/tiny-hindi") == ("", ())
    assert wer.published_results("tiny", "indicwav2vec-hindi")[0] == "indicwav2vec-hindi"
    with pytest.raises(UserFacingError, match="no published numbers"):
        wer.published_results("tiny", "whisper")


def test_wer_command_reports_missing_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wer", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path)]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_wer_command_reports_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path, REFERENCES)
    # Port 9 (discard) on localhost: nothing listens there.
    assert main(["wer", str(manifest), "--url", "127.0.0.1:9", "--output", str(tmp_path / "out")]) == 2
    assert "is the server running" in capsys.readouterr().err


def _check_reports(output: Path, manifest_size: int) -> dict:
    """Every report file is there and summary.json agrees with jiwer on the CSV's normalized columns."""
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    for key in (
        "wer",
        "cer",
        "substitutions",
        "deletions",
        "insertions",
        "hits",
        "utterances",
        "audio_hours",
        "rtf",
        "latency_ms",
        "model",
        "url",
        "protocol",
        "date",
    ):
        assert key in summary, key
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99"}
    with (output / "utterances.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == manifest_size == summary["utterances"]
    assert set(rows[0]) == set(wer.CSV_COLUMNS)
    refs = [row["reference_normalized"] for row in rows]
    hyps = [row["hypothesis_normalized"] for row in rows]
    assert refs == [normalize(row["reference"]) for row in rows]
    assert hyps == [normalize(row["hypothesis"]) for row in rows]
    assert summary["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert summary["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert (output / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


# Sentences for the server test: punctuation and a precomposed nukta letter in the references, so the
# normalization is exercised on what the server really returns.
SPOKEN = [
    ("मैं घर जा रहा हूँ।", "hi"),
    ("आज मौसम बहुत अच्छा है, चलो बाहर चलें!", "hi+f3"),
    ("वह रोज़ किताब पढ़ता है॥", "hi+m2"),
]


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wer_command_against_the_server(triton, tmp_path: Path, protocol: str) -> None:
    from vaani.audio import load_audio
    from vaani.client.api import TranscriptionClient
    from vaani.recipe.corpus.synth import synthesize

    (tmp_path / "audio").mkdir()
    lines = []
    for index, (text, voice) in enumerate(SPOKEN):
        path = tmp_path / "audio" / f"{index}.wav"
        audio = synthesize(text.rstrip("।॥!"), voice=voice)
        sf.write(path, audio, SAMPLING_RATE)
        record = {
            "audio_filepath": f"audio/{index}.wav",
            "text": text,
            "duration": len(audio) / SAMPLING_RATE,
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    url = triton.http_url if protocol == "http" else triton.grpc_url
    output = tmp_path / "out"

    argv = ["wer", str(manifest), "--url", url, "--protocol", protocol, "--output", str(output)]
    assert main([*argv, "--concurrency", "2", "--no-progress", "--reference", str(BUNDLED_MODEL)]) == 0

    summary = _check_reports(output, len(SPOKEN))
    # The FP32 PyTorch reference on the same audio: identical transcripts, identical numbers.
    reference = summary["reference"]
    assert reference["identical_transcripts"] == len(SPOKEN), reference["differing"]
    assert (reference["wer"], reference["cer"]) == (summary["wer"], summary["cer"])
    assert (summary["url"], summary["protocol"]) == (url, protocol)
    assert summary["model"]
    assert "published" not in summary  # the bundled model has no published numbers
    assert summary["hits"] + summary["substitutions"] + summary["deletions"] == sum(
        len(normalize(text).split()) for text, _ in SPOKEN
    )
    # The CSV reports what the server says for each file, in manifest order.
    with (output / "utterances.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    client = TranscriptionClient(triton.http_url)
    try:
        for row in rows:
            assert row["hypothesis"] == client.transcribe(load_audio(row["audio_filepath"]))
    finally:
        client.close()
