"""Train a small `Wav2Vec2ForCTC` from scratch with CTC on a `vaani corpus` directory.

The architecture is the real model's family scaled down (`vaani.recipe.tiny_model.tiny_config`:
layer-norm feature encoder, stable layer norm, attention mask), so the bundled model goes
through exactly the serving path indicwav2vec-hindi does. The schedule runs on steps or on
a wall-clock budget, whichever ends first, so one command fits a CPU or a GPU session.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vaani.errors import UserFacingError
from vaani.manifest import read_manifest
from vaani.recipe.corpus import synth
from vaani.recipe.training import data, evaluate
from vaani.recipe.training.augment import Augmentation, augment


@dataclass
class Architecture:
    hidden_size: int = 256
    layers: int = 6
    heads: int = 4
    intermediate_size: int = 768
    conv_channels: int = 128

    def overrides(self) -> dict:
        return dict(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate_size,
            conv_dim=(self.conv_channels,) * 5 + (self.conv_channels * 3 // 2,) * 2,
            num_conv_pos_embedding_groups=16,
            # SpecAugment-style time masking inside the model: short spans, because most
            # utterances are only 1-5 s long and CTC must still see every word.
            mask_time_prob=0.05,
            mask_time_length=5,
            mask_time_min_masks=1,
        )


@dataclass
class Settings:
    corpus: Path
    output: Path
    epochs: int = 30
    max_minutes: float = 40.0
    learning_rate: float = 1.5e-3
    warmup: float = 0.06
    batch_seconds: float = 80.0
    eval_every: int = 500
    seed: int = 0
    device: str = "auto"
    init: Path | None = None
    architecture: Architecture = field(default_factory=Architecture)
    augmentation: Augmentation = field(default_factory=Augmentation)


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserFacingError("--device cuda asked for, but PyTorch sees no CUDA device")
    return requested


def learning_rate(peak: float, progress: float, warmup: float) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if progress < warmup:
        return peak * progress / warmup
    remaining = min(1.0, (progress - warmup) / (1.0 - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * remaining)))


def validate(model, tokenizer, split: data.Split, batch_seconds: float) -> dict[str, float]:
    """Greedy CER/WER on a held-out split, with the training-time normalization."""
    import torch

    model.eval()
    hypotheses = [""] * len(split)
    lengths = split.lengths.tolist()
    with torch.inference_mode():
        for batch in data.length_batches(lengths, int(batch_seconds * data.SAMPLING_RATE)):
            audio, mask = data.gather(split, batch)
            mask = mask.long()
            logits = model(data.normalize(audio, mask.bool()), attention_mask=mask).logits.float()
            for index, text in zip(
                batch, evaluate.greedy_transcripts(model, tokenizer, logits, mask), strict=True
            ):
                hypotheses[index] = text
    model.train()
    return evaluate.error_rates(split.texts, hypotheses)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(settings: Settings) -> dict:
    """Train, keep the checkpoint with the best validation CER, save it, and score the test split."""
    import torch
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC

    from vaani.recipe.tiny_model import save_processor, tiny_config

    started = time.monotonic()
    device = pick_device(settings.device)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    manifests = {split: settings.corpus / f"{split}.jsonl" for split in ("train", "validation", "test")}
    for path in manifests.values():
        if not path.is_file():
            raise UserFacingError(
                f"{path} is missing: write the corpus with `vaani corpus --output {settings.corpus}`"
            )
    train_split = data.load_split(manifests["train"], device)
    validation_split = data.load_split(manifests["validation"], device)
    log(
        f"train: {len(train_split)} utterances, {train_split.hours:.2f} h; "
        f"validation: {len(validation_split)} utterances "
        f"({time.monotonic() - started:.0f} s to load) on {device}"
    )

    settings.output.mkdir(parents=True, exist_ok=True)
    save_processor(settings.output)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(str(settings.output))
    if settings.init is not None:
        # Continue from a saved model (another budget, another corpus); its architecture wins.
        model = Wav2Vec2ForCTC.from_pretrained(str(settings.init)).to(device)
    else:
        model = Wav2Vec2ForCTC(tiny_config(**settings.architecture.overrides())).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"model: {parameters / 1e6:.2f} M parameters")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.98), weight_decay=0.01
    )
    max_samples = int(settings.batch_seconds * data.SAMPLING_RATE)
    lengths = train_split.lengths.tolist()
    steps_per_epoch = len(data.length_batches(lengths, max_samples))
    total_steps = settings.epochs * steps_per_epoch
    budget = settings.max_minutes * 60.0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    best = {"cer": math.inf, "wer": math.inf, "step": 0}
    best_state = None
    history: list[dict] = []
    step, progress, running_loss, epoch, skipped = 0, 0.0, 0.0, 0, 0
    train_started = time.monotonic()
    model.train()
    while progress < 1.0:
        epoch += 1
        for batch in data.length_batches(lengths, max_samples, rng):
            progress = max(step / total_steps, (time.monotonic() - train_started) / budget)
            if progress >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(settings.learning_rate, progress, settings.warmup)
            audio, mask = data.gather(train_split, batch)
            audio, mask = augment(audio, mask, settings.augmentation, rng, generator)
            labels = data.pad_labels([train_split.labels[i] for i in batch], device)
            with autocast:
                loss = model(data.normalize(audio, mask), attention_mask=mask.long(), labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            step += 1
            # A rare overflow must not poison the weights: skip that update instead.
            if not (torch.isfinite(loss) and torch.isfinite(norm)):
                skipped += 1
                continue
            optimizer.step()
            running_loss += float(loss.detach())
            if step % settings.eval_every == 0:
                rates = validate(model, tokenizer, validation_split, settings.batch_seconds)
                elapsed = time.monotonic() - train_started
                history.append({"step": step, "epoch": epoch, "minutes": elapsed / 60, **rates})
                log(
                    f"step {step}/{total_steps} epoch {epoch} loss {running_loss / settings.eval_every:.3f} "
                    f"lr {optimizer.param_groups[0]['lr']:.2e} validation CER {rates['cer']:.2%} "
                    f"WER {rates['wer']:.2%} ({elapsed / 60:.1f} min, {skipped} updates skipped)"
                )
                running_loss = 0.0
                if rates["cer"] < best["cer"]:
                    best = {**rates, "step": step}
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    rates = validate(model, tokenizer, validation_split, settings.batch_seconds)
    history.append(
        {"step": step, "epoch": epoch, "minutes": (time.monotonic() - train_started) / 60, **rates}
    )
    log(f"final: validation CER {rates['cer']:.2%} WER {rates['wer']:.2%} after {step} steps")
    if best_state is not None and best["cer"] < rates["cer"]:
        model.load_state_dict(best_state)
    else:
        best = {**rates, "step": step}
    training_minutes = (time.monotonic() - train_started) / 60

    model.to("cpu").save_pretrained(str(settings.output), safe_serialization=True)
    test_entries = read_manifest(manifests["test"])
    synth.write_plan(
        [synth.Utterance.from_json(json.dumps(e.fields)) for e in test_entries],
        settings.output / "testset.jsonl",
    )
    test = evaluate.evaluate_manifest(settings.output, manifests["test"], device)
    log(
        f"test (reference path): CER {test['cer']:.2%} WER {test['wer']:.2%} "
        f"on {test['utterances']} utterances"
    )
    report = {
        "parameters": parameters,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "steps": step,
        "skipped_updates": skipped,
        "epochs": round(step / steps_per_epoch, 2),
        "training_minutes": training_minutes,
        "train": {"utterances": len(train_split), "hours": train_split.hours},
        "validation": {"utterances": len(validation_split), "hours": validation_split.hours, "best": best},
        "test": test,
        "history": history,
        "settings": json.loads(json.dumps(asdict(settings), default=str)),
    }
    return report
