"""The `TritonPythonModel` of each python-backend step of `asr`, one module per step.

Each step's tracked ``model_repository/<step>/1/model.py`` is one import of its class from
here, so the code Triton runs is ordinary, importable, testable package code.
"""
