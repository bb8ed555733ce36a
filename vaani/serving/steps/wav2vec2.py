"""Step 2 of `asr` for python-backend engines: a turn of every request it holds in one engine call a round.

`preprocess` sends each recording as its windows end to end (``WINDOWS``, ``WINDOW_LAYOUT``).
The step serves the requests it holds in rounds (`vaani.serving.steps.turns`): each round takes
the next ``turn_samples`` of audio (one window at least) of every request and runs them in one
engine call (packed on a GPU), so long recordings and short clips share the same runs and a long
one never holds the engine for more than a round, with no BLS hop between steps (the `windows`
step does this by BLS for a TensorRT plan, which cannot). A request whose last window ran gets its
logits joined from its windows' kept frames. The engine bounds the audio of each run
(`Limits.max_batch_samples`), so memory stays bounded however long the recording. The decoder
gets what it reads: each frame's best token for greedy decoding (the engine takes them where the
logits are), else the logits.

The step can be called directly, so each request is checked on its own when it is admitted: a
bad one gets its own error at once. A request Triton reports cancelled is dropped before its next
round (`vaani.serving.steps.turns`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import triton_python_backend_utils as pb_utils

from vaani.serving.batching import turn_end
from vaani.serving.contract import FRAME_TOKENS, LOGITS
from vaani.serving.ctc import best_tokens
from vaani.serving.engines.base import Limits, host_array
from vaani.serving.engines.registry import instance_device, load_engine
from vaani.serving.step import StepContext
from vaani.serving.steps.boundary import Refused, Windowed, refused, windowed
from vaani.serving.steps.turns import Job, Turns
from vaani.serving.windowing import SILENT, join, silence_logits


@dataclass
class Progress:
    """One request's windows and the logits of those that ran: the work it has had turns for."""

    recording: Windowed
    done: int = 0  # windows that ran
    logits: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.logits = [None] * len(self.recording.windows)

    def turn(self, budget: int) -> range:
        """The windows of this request's next turn (`turn_end`), counted as run."""
        sizes = [0 if w.kind == SILENT else w.samples for w in self.recording.windows]
        start, self.done = self.done, turn_end(sizes, self.done, budget)
        return range(start, self.done)

    @property
    def finished(self) -> bool:
        return self.done == len(self.recording.windows)


class TritonPythonModel:
    def initialize(self, args):
        context = StepContext(args)
        self.spec = context.spec()
        self.windowing = context.windowing()
        self.max_samples = context.max_samples()
        self.max_padding = context.number("max_padding", 1.0)
        self.output = context.parameters.get("decoder_input", LOGITS)
        device = instance_device(context.instance_kind, context.device_id)
        self.engine = load_engine(
            context.parameters["engine"], context.version_dir, context.parameters, device
        )
        self.engine.limits = Limits(
            min_samples=self.spec.receptive_field,
            max_samples=self.windowing.longest,
            max_batch_samples=int(context.number("max_batch_samples", Limits.max_batch_samples)),
        )
        self.engine.best_tokens = self.output == FRAME_TOKENS  # taken on the engine's device
        self.engine.warm()
        self.turn_samples = int(context.number("turn_samples", 0))
        self.turns = Turns(self._round, context.max_batch_size, "wav2vec2 engine")

    def execute(self, requests):
        self.turns.admit(requests, self._admit)

    def finalize(self):
        self.turns.close()

    def _admit(self, request) -> Progress | pb_utils.InferenceResponse:
        try:
            return Progress(windowed(request, self.windowing, self.max_samples, host_array))
        except Refused as error:
            return refused(str(error))

    def _round(self, jobs: list[Job]) -> None:
        """One turn of each request: its next windows, up to ``turn_samples`` of audio, all in one
        engine call; a request whose last window ran is answered."""
        turns = [(job.work, job.work.turn(self.turn_samples)) for job in jobs]
        audible = [
            (progress, k)
            for progress, turn in turns
            for k in turn
            if progress.recording.windows[k].kind != SILENT
        ]
        arrays = [self.engine.view(progress.recording.audio[k]) for progress, k in audible]
        lengths = [[a.shape[1]] * a.shape[0] for a in arrays]
        ran = self.engine.run_groups(arrays, lengths, self.spec.frames, self.max_padding)
        for (progress, k), logits in zip(audible, ran):
            progress.logits[k] = np.asarray(logits)
        for job, (progress, turn) in zip(jobs, turns):
            for k in turn:
                window, piece = progress.recording.windows[k], progress.recording.audio[k]
                if window.kind == SILENT:
                    progress.logits[k] = silence_logits(
                        piece.shape[0], window.keep_to, self.spec.vocab_size, self.spec.blank_id
                    )
                    if self.engine.best_tokens:
                        progress.logits[k] = best_tokens(progress.logits[k])
            if progress.finished:
                job.answer(self._response(join(progress.logits, progress.recording.windows)))

    def _response(self, output: np.ndarray):
        """The joined logits, or best tokens (the engine took them where the logits were)."""
        return pb_utils.InferenceResponse([self.engine.to_triton(pb_utils.Tensor, self.output, output)])
