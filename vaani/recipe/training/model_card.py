"""The model card (`README.md`) of a trained model, written from the training report.

Numbers in the card come from the run itself, never typed by hand, so the card cannot
drift from the weights beside it.
"""

from __future__ import annotations


def render(report: dict, train_command: str, corpus: dict | None) -> str:
    test = report["test"]
    best = report["validation"]["best"]
    corpus = corpus or {}
    voices = ", ".join(f"`{v}`" for v in corpus.get("voices", [])) or "see corpus.json"
    corpus_command = corpus.get("command", "vaani corpus --output CORPUS")
    examples = (
        "\n".join(f"| {e['reference']} | {e['hypothesis']} |" for e in test.get("examples", [])[:5])
        or "| (none) | |"
    )
    model_rows = "\n".join(
        f"| {name} | {value} |"
        for name, value in (
            ("parameters", f"{report['parameters'] / 1e6:.2f} M"),
            (
                "architecture",
                "layer-norm conv feature encoder (320-sample hop), stable layer norm transformer, "
                "attention mask: the family of indicwav2vec-hindi, scaled down",
            ),
            (
                "alphabet",
                "indicwav2vec-hindi's (`vaani.hindi`): Devanagari letters and marks, "
                "nukta as a separate mark, `|` between words",
            ),
            (
                "input",
                "16 kHz mono float32, normalized per utterance by `Wav2Vec2FeatureExtractor` "
                "(zero mean, unit variance), `attention_mask` for padded batches",
            ),
            ("decoding", "greedy CTC (`<pad>` is the blank)"),
        )
    )
    speed = corpus.get("speed_wpm", ["?", "?"])
    pitch = corpus.get("pitch", ["?", "?"])
    return f"""---
language: hi
license: apache-2.0
pipeline_tag: automatic-speech-recognition
tags: [wav2vec2, ctc, synthetic-speech, vaani]
---

# tiny-hindi: a small wav2vec2 CTC model for synthetic Hindi speech

A `Wav2Vec2ForCTC` trained from scratch by `vaani train` on synthetic Hindi speech that
`vaani corpus` makes with espeak-ng. It exists so that every accuracy statement of the
project can be tested offline: it recognises espeak-ng Hindi of the corpus vocabulary
well, and real human speech not at all. Use `ai4bharat/indicwav2vec-hindi` for real audio.

## Model

| | |
| --- | --- |
{model_rows}

## Data

Synthetic speech from espeak-ng ({corpus.get("espeak_ng", "espeak-ng")}), voices {voices};
speed {speed[0]}–{speed[1]} words per minute, pitch {pitch[0]}–{pitch[1]}. Sentences of 2–12 words from a
seeded generator over 350+ common Hindi words (`vaani/corpus/hindi_text.py`). A sentence's
split is a hash of its text, so train, validation and test share no sentence: test
sentences are new combinations of the training words.

| split | utterances | audio |
| --- | --- | --- |
| train | {report["train"]["utterances"]:,} | {report["train"]["hours"]:.2f} h |
| validation | {report["validation"]["utterances"]:,} | {report["validation"]["hours"] * 60:.1f} min |
| test | {test["utterances"]:,} | {test["hours"] * 60:.1f} min |

Training augments every batch with speed perturbation and white noise, and masks short
time spans inside the model (SpecAugment-style).

## How it was made

```sh
{corpus_command}
{train_command}
```

Trained for {report["steps"]:,} steps ({report["epochs"]:g} epochs)
in {report["training_minutes"]:.1f} minutes on {report["device"]}; the checkpoint with the best
validation CER was kept (step {best["step"]:,}: CER {best["cer"]:.2%}).

## Results (held-out test set, greedy, PyTorch FP32)

| CER | WER | utterances | sentences with an error |
| --- | --- | --- | --- |
| {test["cer"]:.2%} | {test["wer"]:.2%} | {test["utterances"]} | {test["sentence_errors"]} |

Some of the errors:

| reference | transcript |
| --- | --- |
{examples}

## Reproduce the test numbers

`testset.jsonl` beside the weights is the test split's plan (text, voice, speed, pitch per
utterance); espeak-ng output is deterministic for one espeak-ng version, so the audio is
regenerated instead of committed:

```sh
vaani corpus --split test --plan models/tiny-hindi/testset.jsonl --output data/tiny-hindi-test
vaani reference-eval data/tiny-hindi-test/test.jsonl --model models/tiny-hindi   # PyTorch
vaani wer data/tiny-hindi-test/test.jsonl --output results/wer                    # through the server
```

or `make testset` and, with `make serve MODEL=models/tiny-hindi` running, `make wer`.

(`vaani corpus --split test --output DIR` with the default seed and size draws the same plan.)

## Limits

Trained on one synthesiser: it does not transcribe human speech, words outside the
corpus vocabulary come out as near spellings, and numbers are only those written as words.
"""
