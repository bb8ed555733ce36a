"""`vaani transcribe` on real files prints what the 16 kHz array itself would get."""

from __future__ import annotations

import json
import re
from itertools import pairwise
from math import gcd

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from vaani.audio import to_model_input
from vaani.build.parity import probe_audio
from vaani.cli import main
from vaani.client.api import TranscriptionClient
from vaani.serving.contract import SAMPLING_RATE

SOURCE = probe_audio((2.6,), seed=5)[0]


def _sixteen_khz(path) -> np.ndarray:
    """The file's samples as the 16 kHz mono array a script would send."""
    samples, rate = sf.read(str(path), dtype="float32")
    return to_model_input(samples, rate)


def _scipy_sixteen_khz(path) -> np.ndarray:
    """The same, by an independent resampler (scipy polyphase) and an explicit channel mean."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    g = gcd(rate, SAMPLING_RATE)
    return resample_poly(samples.mean(axis=1), SAMPLING_RATE // g, rate // g).astype(np.float32)


def test_conversion_to_16k_mono_is_faithful(tmp_path):
    for path in _files(tmp_path):
        ours, theirs = _sixteen_khz(path), _scipy_sixteen_khz(path)
        assert ours.dtype == np.float32 and ours.ndim == 1
        assert abs(len(ours) - len(theirs)) <= 1
        n = min(len(ours), len(theirs))
        core = slice(200, n - 200)  # filter edges differ between resamplers, and so do transition bands:
        # -30 dB bounds that while catching a wrong rate, a lost channel or a sign error
        error = max(np.sum((ours[core] - theirs[core]) ** 2) / np.sum(theirs[core] ** 2), 1e-12)
        assert 10 * np.log10(error) < -30, f"{path.name}: resamplers differ by {10 * np.log10(error):.1f} dB"


def _files(tmp_path):
    stereo_8k = resample_poly(SOURCE, 1, 2).astype(np.float32)
    files = {
        "8k-stereo.wav": (np.stack([stereo_8k, 0.5 * stereo_8k], axis=1), 8_000),
        "44k-mono.wav": (resample_poly(SOURCE, 441, 160).astype(np.float32), 44_100),
        "16k.flac": (SOURCE, SAMPLING_RATE),
    }
    paths = []
    for name, (audio, rate) in files.items():
        path = tmp_path / name
        sf.write(str(path), audio, rate)
        paths.append(path)
    return paths


def test_cli_transcripts_match_direct_arrays(triton, tmp_path, capsys):
    paths = _files(tmp_path)
    client = TranscriptionClient(triton.http_url)
    expected = {str(p): client.transcribe(_sixteen_khz(p)) for p in paths}
    assert (
        main(["transcribe", *map(str, paths), "--url", triton.http_url, "--json", "--concurrency", "2"]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {row["file"]: row["transcript"] for row in rows} == expected
    assert all(row["latency_ms"] > 0 and row["duration_s"] > 2.5 for row in rows)


def test_cli_grpc_plain_output(triton, tmp_path, capsys):
    path = _files(tmp_path)[2]
    assert main(["transcribe", str(path), "--url", triton.grpc_url, "--protocol", "grpc"]) == 0
    expected = TranscriptionClient(triton.http_url).transcribe(_sixteen_khz(path))
    assert capsys.readouterr().out.strip() == expected


def test_unreadable_file_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio")
    assert main(["transcribe", str(bogus)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_truncated_directory_and_missing_files_name_the_file_and_the_problem(triton, tmp_path, capsys):
    whole = tmp_path / "whole.wav"
    sf.write(whole, probe_audio()[0], SAMPLING_RATE, subtype="PCM_16")
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    cases = {truncated: "is truncated", tmp_path: "is a directory", tmp_path / "absent.wav": "no such file"}
    for path, problem in cases.items():
        assert main(["transcribe", "--url", triton.http_url, str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and problem in err, err


def test_an_unreachable_server_is_exit_status_3_over_both_protocols(tmp_path, capsys):
    from vaani.supervision.process import free_port

    clip = tmp_path / "clip.wav"
    sf.write(clip, probe_audio()[0], SAMPLING_RATE)
    for protocol in ("http", "grpc"):
        url = f"127.0.0.1:{free_port()}"
        assert main(["transcribe", "--protocol", protocol, "--url", url, str(clip)]) == 3
        assert "no server answers" in capsys.readouterr().err


def test_subtitles_parse_and_hold_every_word_in_order(triton, tmp_path, capsys):
    import srt
    import webvtt

    from vaani.recipe.corpus.recordings import long_recording

    audio, _ = long_recording(8, seed=2031)
    clip = tmp_path / "talk.wav"
    sf.write(clip, audio, SAMPLING_RATE)
    assert main(["transcribe", "--url", triton.http_url, "--format", "json", str(clip)]) == 0
    result = json.loads(capsys.readouterr().out)
    words = [w["word"] for w in result["words"]]
    assert words and " ".join(words) == result["transcript"]
    out = tmp_path / "subtitles"
    for form in ("srt", "vtt"):
        argv = ["transcribe", "--url", triton.http_url, "--format", form, "--output-dir", str(out), str(clip)]
        assert main(argv) == 0
    cues = list(srt.parse((out / "talk.srt").read_text(encoding="utf-8")))
    assert " ".join(cue.content for cue in cues).split() == words
    assert all(a.end <= b.start for a, b in pairwise(cues))
    captions = webvtt.read(str(out / "talk.vtt"))
    assert " ".join(caption.text for caption in captions).split() == words


def _cue_options(command: str, capsys) -> list[str]:
    """The subtitle options ``vaani COMMAND --help`` lists (the lines that declare them), checking that
    none of the former spellings survives anywhere in the help."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--max-cue" not in text and "--cue-pause" not in text
    return sorted(re.findall(r"^\s+(--cue-[a-z-]+)", text, re.MULTILINE))


def test_transcribe_and_gateway_spell_the_cue_options_alike(tmp_path, capsys):
    expected = ["--cue-max-chars", "--cue-max-pause", "--cue-max-seconds"]
    assert _cue_options("transcribe", capsys) == _cue_options("gateway", capsys) == expected
    clip = tmp_path / "clip.wav"
    sf.write(clip, probe_audio()[0], SAMPLING_RATE)
    for argv in (["transcribe", str(clip)], ["gateway"]):
        assert main([*argv, "--cue-max-chars", "0"]) == 2, "refused before any request or server start"
        assert "max_chars >= 1" in capsys.readouterr().err
