from vaani.serving.steps.wav2vec2 import TritonPythonModel  # noqa: F401
