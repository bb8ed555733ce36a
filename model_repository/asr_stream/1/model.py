from vaani.serving.steps.asr_stream import TritonPythonModel  # noqa: F401
