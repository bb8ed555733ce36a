"""Requests served in turns: each request in a step gets one bounded slice of work per round.

Why: Triton hands a python step a batch and hands it no other until ``execute()`` returns. A
10-minute recording ran all its windows in one `wav2vec2` execution and all its beam-search pieces
in one `ctc_decoder` execution, so a 2 s request that arrived meanwhile waited for all of it. Triton
offers no way to interrupt an execution: request rescheduling needs iterative sequence batching, not
the dynamic batcher the steps use, and a decoupled step makes the ensemble decoupled, which Triton's
HTTP endpoint does not serve. What the python backend of 2.51 does allow is a non-decoupled model
that answers through each request's response sender instead of ``execute()``'s return value, so
``execute()`` may return before its requests are answered. Here ``execute()`` only admits requests
(each checked on its own; a refused one is answered at once) into the step's pool, and one thread
serves the pool in rounds: every request in it gets one slice of work per round (a share of windows,
one beam-search piece), so a request that arrives while a long one runs waits for the round in
progress, and its own round holds one slice of the long one beside it.

The pool holds at most ``capacity`` requests (the step's ``max_batch_size``, what one execution held
before): past that ``execute()`` waits, and requests wait in Triton's queue, where its bounds and
timeouts apply as before. A request that Triton reports cancelled (``is_cancelled()``) is answered
CANCELLED before its next slice (tritonserver 2.51 was not seen to report it for a request a step
holds: a gRPC deadline is enforced while it queues and between the ensemble's steps); a slice that
raises fails the requests of its round, not the step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import triton_python_backend_utils as pb_utils

from vaani.serving.steps.boundary import cancelled, failed


@dataclass
class Job:
    """One admitted request and the step's state of its work (``work``), until it is answered."""

    request: Any
    work: Any
    done: bool = False

    def answer(self, response: pb_utils.InferenceResponse) -> None:
        """The request's one response (outputs or an error): sent, and the request released.

        A send that fails (Triton closed the sender) is logged: the thread that serves every other
        request must not end with it."""
        self.done = True
        try:
            sender = self.request.get_response_sender()
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as error:
            pb_utils.Logger.log_warn(f"a response could not be sent: {type(error).__name__}: {error}")


class Turns:
    """A step's pool of admitted requests and the thread that serves it in rounds.

    ``serve_round(jobs)`` does one slice of each job's work and answers the jobs it finishes
    (`Job.answer`); ``what`` names the step in the error of a round that raised.
    """

    def __init__(self, serve_round: Callable[[list[Job]], None], capacity: int, what: str) -> None:
        self._serve_round = serve_round
        self._capacity = max(1, capacity)
        self._what = what
        self._pool: list[Job] = []
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=f"{what} turns", daemon=True)
        self._thread.start()

    def admit(self, requests: list[Any], check: Callable[[Any], Any]) -> None:
        """``execute()``'s work: ``check(request)`` gives a request's work, or the response it gets now
        (an `InferenceResponse`: refused, say); the work joins the pool. Returns once the pool has room."""
        admitted = []
        for request in requests:
            job = Job(request, None)
            if request.is_cancelled():
                job.answer(cancelled())
                continue
            work = check(request)
            if isinstance(work, pb_utils.InferenceResponse):
                job.answer(work)
                continue
            job.work = work
            admitted.append(job)
        with self._changed:
            self._pool += admitted
            self._changed.notify_all()
            self._changed.wait_for(lambda: len(self._pool) < self._capacity or self._closing)

    def close(self) -> None:
        """``finalize()``: the requests in the pool are served, then the thread ends."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pool or self._closing)
                if not self._pool:
                    return
                jobs = list(self._pool)
            try:
                for job in jobs:
                    if job.request.is_cancelled():
                        job.answer(cancelled())
                self._serve_round([job for job in jobs if not job.done])
            except Exception as error:  # a slice that raises fails its round's requests, not the step
                for job in jobs:
                    if not job.done:
                        job.answer(failed(self._what, error))
            with self._changed:
                self._pool = [job for job in self._pool if not job.done]
                self._changed.notify_all()
