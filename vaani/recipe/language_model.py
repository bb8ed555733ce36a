"""The bundled model's n-gram LM: KenLM's own `lmplz`/`build_binary` over the training sentences only.

Written in Hugging Face's `Wav2Vec2ProcessorWithLM` layout (``language_model/`` with the KenLM
binary, ``unigrams.txt``, ``attrs.json``) so `vaani build` picks it up like any model's LM. Alpha
and beta are chosen on the validation split (synthesized with espeak-ng), never the test split,
among the settings that are no worse than greedy decoding on the out-of-vocabulary plan
(``benchmarks/oov-plan.jsonl``: sentences written apart from the corpus grammar).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from vaani.errors import UserFacingError
from vaani.recipe.corpus import hindi_text, synth
from vaani.scoring import score
from vaani.serving.beam import ATTRS_FILE, LM_DIR, UNIGRAMS_FILE, BeamDecoder
from vaani.serving.ctc import GreedyDecoder

TRAIN_SENTENCES = 40_000  # the bundled model's training split (models/tiny-hindi/corpus.json)
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.8, 1.2)
BETAS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def kenlm_tool(name: str, bin_dir: Path | None) -> str:
    path = shutil.which(name, path=str(bin_dir) if bin_dir else None)
    if path is None:
        raise UserFacingError(
            f"KenLM's `{name}` not found: build it from the `kenlm` source distribution "
            "(cmake + Debian's libboost-program-options-dev libboost-system-dev libboost-thread-dev "
            "libboost-test-dev zlib1g-dev) and pass --kenlm-bin DIR"
        )
    return path


def build_lm(output: Path, order: int, bin_dir: Path | None, seed: int = 0) -> Path:
    """Write ``output/language_model/`` from the training sentences; returns the folder."""
    train = hindi_text.sentences("train", TRAIN_SENTENCES, seed=seed)
    assert all(hindi_text.split_of(s) == "train" for s in train)
    folder = output / LM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        arpa = Path(work) / "lm.arpa"
        subprocess.run(
            [kenlm_tool("lmplz", bin_dir), "-o", str(order), "--discount_fallback", "-S", "20%", "-T", work],
            input="\n".join(train).encode("utf-8"),
            stdout=arpa.open("wb"),
            stderr=subprocess.DEVNULL,
            check=True,
        )
        subprocess.run(
            [
                kenlm_tool("build_binary", bin_dir),
                "-q",
                "8",
                "-b",
                "8",
                "trie",
                str(arpa),
                str(folder / "lm.bin"),
            ],
            stdout=subprocess.DEVNULL,
            check=True,
        )
    words = sorted({w for s in train for w in s.split()})
    (folder / UNIGRAMS_FILE).write_text("\n".join(words) + "\n", encoding="utf-8")
    attrs = {"alpha": 0.5, "beta": 1.5, "unk_score_offset": -10.0, "score_boundary": True}
    (folder / ATTRS_FILE).write_text(json.dumps(attrs, indent=1) + "\n", encoding="utf-8")
    return folder


def validation_logits(
    model_dir: Path, count: int, seed: int = 0
) -> tuple[list[str], list[np.ndarray], object]:
    """Logits of ``count`` validation utterances (espeak-ng) from the FP32 reference model."""
    return plan_logits(model_dir, synth.plan("validation", count, seed=seed))


def plan_logits(
    model_dir: Path, utterances: list[synth.Utterance]
) -> tuple[list[str], list[np.ndarray], object]:
    """Texts and FP32 reference logits of ``utterances``, spoken by espeak-ng."""
    from vaani.build.hf_model import HfModel

    hf = HfModel.load(model_dir)
    spec = hf.spec()
    texts, logits = [], []
    for utterance in utterances:
        audio = synth.synthesize(utterance.text, utterance.voice, utterance.speed, utterance.pitch)
        values, mask = hf.features([audio])
        texts.append(utterance.text)
        logits.append(hf.logits(values, mask)[0][: spec.frames(len(audio))])
    return texts, logits, spec


def tune(
    folder: Path,
    texts: list[str],
    logits: list[np.ndarray],
    spec,
    beam_width: int,
    guard: tuple[list[str], list[np.ndarray]] | None = None,
) -> dict:
    """Grid-search alpha and beta for the lowest validation WER (then CER); writes them into ``attrs.json``.

    With ``guard`` (the out-of-vocabulary sentences' texts and logits) only settings whose WER and CER
    there are no worse than greedy decoding's compete (all do if none is), and ties on validation go
    to the lower guard WER, then CER, then the lower alpha and beta.
    """
    attrs_path = folder / ATTRS_FILE
    attrs = json.loads(attrs_path.read_text(encoding="utf-8"))
    greedy = GreedyDecoder(spec)
    floor = None
    if guard is not None:
        floor = score(guard[0], [greedy.decode_ids(lg.argmax(axis=-1)) for lg in guard[1]])
        print(f"out-of-vocabulary guard, greedy: WER {100 * floor.wer:.2f}% CER {100 * floor.cer:.2f}%")
    results = []
    for alpha, beta in itertools.product(ALPHAS, BETAS):
        attrs_path.write_text(json.dumps({**attrs, "alpha": alpha, "beta": beta}), encoding="utf-8")
        decoder = BeamDecoder(spec, folder, beam_width)
        start = time.perf_counter()
        result = score(texts, [decoder.decode_one(lg)[0] for lg in logits])
        line = f"alpha {alpha:.2f} beta {beta:.1f}: WER {100 * result.wer:.2f}% CER {100 * result.cer:.2f}%"
        oov = (0.0, 0.0)
        if guard is not None:
            found = score(guard[0], [decoder.decode_one(lg)[0] for lg in guard[1]])
            oov = (found.wer, found.cer)
            line += f", out-of-vocabulary WER {100 * found.wer:.2f}% CER {100 * found.cer:.2f}%"
        results.append(((result.wer, result.cer, *oov, alpha, beta), oov))
        print(f"{line} ({time.perf_counter() - start:.1f} s)")
    safe = [key for key, oov in results if floor is None or (oov[0] <= floor.wer and oov[1] <= floor.cer)]
    wer, *_, alpha, beta = min(safe or [key for key, _ in results])
    attrs.update(alpha=alpha, beta=beta)
    attrs_path.write_text(json.dumps(attrs, indent=1) + "\n", encoding="utf-8")
    print(f"chosen on {len(texts)} validation utterances: alpha {alpha}, beta {beta} (WER {100 * wer:.2f}%)")
    return attrs
