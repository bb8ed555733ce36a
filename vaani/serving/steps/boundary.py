"""Where the python steps meet Triton: what a request holds, and every answer that is not a step's outputs.

A client may call any step directly, so each request of an execution is read and answered on its
own: one that breaks the tensor contract is refused (INVALID_ARG, HTTP 400, the message naming the
problem) while the others are served; one whose client gave up is answered CANCELLED before more is
spent on it; one the step fails on (its engine, its decoder) gets INTERNAL (HTTP 500), the exception
named. ``WINDOW_LAYOUT`` is read here, checked before any offset in it is trusted, into the windows
that a step passes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.contract import NUM_SAMPLES, WINDOW_LAYOUT, WINDOWS
from vaani.serving.windowing import Window, Windowing, from_tensor, layout_problem, request_problem, split


class Refused(ValueError):
    """A request breaks the tensor contract; the message, for its client, names the problem."""


def refused(message: str) -> pb_utils.InferenceResponse:
    """The answer to a request that breaks the contract: the client's error, INVALID_ARG (HTTP 400)."""
    return passed_on(pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def failed(what: str, error: Exception) -> pb_utils.InferenceResponse:
    """The answer to a request that ``what`` (a step, an engine) failed on: INTERNAL (HTTP 500)."""
    message = f"{what} failed: {type(error).__name__}: {error}"
    return passed_on(pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))


def cancelled() -> pb_utils.InferenceResponse:
    """The answer to a request whose client gave up: CANCELLED, so Triton drops it."""
    return passed_on(pb_utils.TritonError("cancelled by the client", pb_utils.TritonError.CANCELLED))


def passed_on(error: pb_utils.TritonError) -> pb_utils.InferenceResponse:
    """The answer carrying ``error`` as it is: one of the above, or another model's (a BLS call's)."""
    return pb_utils.InferenceResponse(error=error)


class Unanswered(Exception):
    """A model this step called (BLS) did not answer with outputs; ``answer`` is what the step's own
    request gets instead: that model's error passed on, or CANCELLED."""

    def __init__(self, answer: pb_utils.InferenceResponse) -> None:
        super().__init__()
        self.answer = answer


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.as_numpy()


def read(request: Any, name: str) -> np.ndarray:
    """A required input (Triton refuses a request without it before any step sees it)."""
    return _numpy(pb_utils.get_input_tensor_by_name(request, name))


def optional(request: Any, name: str) -> np.ndarray | None:
    """An optional input, None when the request does not send it."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else _numpy(tensor)


def asked_for(request: Any, name: str) -> bool:
    """Whether the client asked for the optional output ``name``: a step makes none it was not asked for."""
    return name in request.requested_output_names()


def strings(name: str, values: list[str]) -> pb_utils.Tensor:
    """A STRING output of one UTF-8 string per row, ``[rows, 1]``."""
    return pb_utils.Tensor(name, np.array([[v.encode("utf-8")] for v in values], dtype=np.object_))


def layout(
    request: Any, num_samples: np.ndarray, windowing: Windowing, max_samples: int
) -> list[Window] | None:
    """The windows of the request's optional ``WINDOW_LAYOUT`` (None without one), checked against its
    ``NUM_SAMPLES`` as `preprocess` would have made them; refused otherwise."""
    tensor = optional(request, WINDOW_LAYOUT)
    if tensor is None:
        return None
    problem = layout_problem(tensor, num_samples.reshape(-1, 1), windowing, max_samples)
    if problem:
        raise Refused(problem)
    return from_tensor(tensor)


@dataclass(frozen=True)
class Windowed:
    """One request's audio as `preprocess` cut it, checked: its windows and each one's ``[rows, samples]``."""

    windows: list[Window]
    audio: list[np.ndarray]


def windowed(
    request: Any,
    windowing: Windowing,
    max_samples: int,
    host: Callable[[Any], np.ndarray] = _numpy,
) -> Windowed:
    """The request's ``WINDOWS`` cut by its ``WINDOW_LAYOUT``, both checked with ``NUM_SAMPLES``; refused
    when they are not what `preprocess` sends.

    ``host`` reads a Triton tensor into numpy: `wav2vec2` passes its engine's reader (DLPack, which
    keeps INT64 exact in a numpy 2 stub).
    """
    flat, tensor, num_samples = (
        host(pb_utils.get_input_tensor_by_name(request, name))
        for name in (WINDOWS, WINDOW_LAYOUT, NUM_SAMPLES)
    )
    problem = request_problem(flat, tensor, num_samples, windowing, max_samples)
    if problem:
        raise Refused(problem)
    windows = from_tensor(tensor)
    return Windowed(windows, split(flat, windows))
