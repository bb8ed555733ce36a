"""The baseline of `vaani bench`: what users build instead of Triton — FastAPI + uvicorn around a
Hugging Face `pipeline("automatic-speech-recognition")`.

It is written the way a careful hand-rolled server would be, so that the comparison is with a
fair alternative rather than a straw man: the model is loaded once, requests carry raw float32
PCM (no WAV decoding on the server, like Triton's binary tensors), PyTorch gets the same thread
budget as Triton, and inference runs off the event loop under a lock. The lock matters on a
small CPU: PyTorch's intra-op pool already uses every core, so two concurrent pipeline calls
would only oversubscribe the cores.

    python -m vaani.benchmarks.fastapi_baseline --model models/tiny-hindi --port 8010
    curl --data-binary @audio.f32 -H 'Content-Type: application/octet-stream' localhost:8010/transcribe
"""

from __future__ import annotations

import argparse
import asyncio
import threading

import numpy as np
from fastapi import FastAPI, HTTPException, Request


def create_app(model: str, threads: int) -> FastAPI:
    """A FastAPI app serving ``model`` at POST /transcribe (float32 PCM, 16 kHz mono) and GET /health."""
    import torch
    from transformers import pipeline

    if threads > 0:
        torch.set_num_threads(threads)
    asr = pipeline("automatic-speech-recognition", model=model, device=-1)
    lock = threading.Lock()
    app = FastAPI(title="vaani FastAPI baseline", description=__doc__)

    def infer(audio: np.ndarray) -> str:
        with lock, torch.inference_mode():
            return asr(audio)["text"]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/transcribe")
    async def transcribe(request: Request) -> dict[str, str]:
        body = await request.body()
        if not body or len(body) % 4:
            raise HTTPException(
                400, "body must be float32 PCM samples (16 kHz mono), a non-empty multiple of 4 bytes"
            )
        audio = np.frombuffer(body, dtype=np.float32)
        if not np.isfinite(audio).all():
            raise HTTPException(400, "audio holds NaN or Inf")
        return {"text": await asyncio.to_thread(infer, audio)}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m vaani.benchmarks.fastapi_baseline",
        description="Serve a Hugging Face ASR pipeline with FastAPI + uvicorn (`vaani bench` baseline).",
    )
    parser.add_argument("--model", required=True, help="model directory or Hugging Face id")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument(
        "--threads", type=int, default=0, help="PyTorch intra-op threads (0: PyTorch's default)"
    )
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.model, args.threads), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
