from vaani.serving.steps.ctc_decoder import TritonPythonModel  # noqa: F401
