"""The `TritonPythonModel` of each python-backend step of `asr`, one module per step.

Each step's ``model_repository/<step>/1/model.py`` is one line importing its class from here
(`vaani build` writes it), so the code Triton runs is ordinary, importable, testable package
code. `boundary` is what every step shares at Triton's edge: reading a request, answering it.
"""
