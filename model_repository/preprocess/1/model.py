from vaani.serving.steps.preprocess import TritonPythonModel  # noqa: F401
