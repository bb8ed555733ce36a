"""sys.path for tritonserver's python-backend stubs on the GPU machine (installed by gpu-machine.sh).

The stub's embedded interpreter ignores PYTHONPATH but runs site.py, so a .pth file imports
this module. The server alone gets VAANI_STUB_PATH (numpy<2 first, then vaani): the stub's
numpy conversions (`as_numpy`, `Tensor(ndarray)`) need numpy<2. The steps named in
VAANI_STUB_NUMPY2_FOR exchange tensors only through DLPack and import transformers, whose
compiled dependencies on that machine (scipy, …) are built for numpy 2: they skip numpy<2.
"""

import os
import sys


def _stub_path() -> list[str]:
    paths = [p for p in os.environ.get("VAANI_STUB_PATH", "").split(os.pathsep) if p]
    numpy1 = os.environ.get("VAANI_STUB_NUMPY1", "")
    keep_numpy2 = [m for m in os.environ.get("VAANI_STUB_NUMPY2_FOR", "").split(",") if m]
    if paths and numpy1 and keep_numpy2:
        try:
            with open("/proc/self/cmdline", "rb") as f:
                command = f.read().decode(errors="replace")
        except OSError:
            command = ""
        if any(f"/{model}/" in command for model in keep_numpy2):
            paths = [p for p in paths if p != numpy1]
    return paths


sys.path[0:0] = _stub_path()
