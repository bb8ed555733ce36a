"""Where a model comes from: a local `save_pretrained` directory or a Hugging Face Hub id."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vaani.errors import UserFacingError

MODEL_FILES = (
    "config.json",
    "vocab.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "processor_config.json",
    "model.safetensors",
    "pytorch_model.bin",
)
OFFLINE_CHOICE = "models/tiny-hindi"


def resolve(model: str) -> Path:
    """Return a local directory holding ``model``'s files, downloading from the Hub if needed."""
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").exists():
            raise UserFacingError(f"{local} has no config.json: expected a `save_pretrained` directory")
        return local.resolve()
    if local.exists() or model.startswith((".", "/")):
        raise UserFacingError(f"model path {model!r} is not a directory")
    return _download(model)


def _download(model_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(model_id, allow_patterns=list(MODEL_FILES)))
    except RepositoryNotFoundError as error:
        raise UserFacingError(f"no model {model_id!r} on the Hugging Face Hub: {error}") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise UserFacingError(
            f"could not download {model_id!r} from the Hugging Face Hub and it is not in the local cache "
            f"({type(error).__name__}). The Hub looks unreachable from this machine: use the bundled "
            f"offline model with MODEL={OFFLINE_CHOICE} (or pass a local save_pretrained directory)."
        ) from None


def fingerprint(directory: Path, extra: bytes = b"") -> str:
    """Content hash of the model's files plus ``extra`` (settings, exporter code)."""
    digest = hashlib.sha256(extra)
    for name in MODEL_FILES:
        path = directory / name
        if path.exists():
            digest.update(name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
