"""vaani: wav2vec2 CTC speech recognition served from an NVIDIA Triton model repository."""

__version__ = "0.1.0"
