"""The `model.py` of every python step of `asr`: Triton loads it from <repository>/<step>/1/.

It holds no code of its own: the step's class is `vaani.serving.steps.<step>.TritonPythonModel`,
picked by the name of the model folder it sits in. `vaani build` installs this file (package
data, so a non-editable install works too); the tracked copies in `model_repository/` equal it.
"""

from importlib import import_module
from pathlib import Path

TritonPythonModel = import_module(f"vaani.serving.steps.{Path(__file__).parents[1].name}").TritonPythonModel
