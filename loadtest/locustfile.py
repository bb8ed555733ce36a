"""Locust load for the `asr` ensemble (HTTP and gRPC) and for the FastAPI baseline of `vaani bench`.

Every user sends the clips of one manifest of mixed lengths, back to back (a closed loop: the
number of users is the concurrency), each user in its own seeded order so that runs repeat.
Requests are timed around the whole client call and reported through `events.request`, so
Locust's tables and charts are the real end-to-end latencies; an error or an empty transcript is
a failure. Beside Locust's own CSV/HTML, a run writes ``<csv prefix>_requests.csv`` (one row per
request, with its audio length) and ``<csv prefix>_audio.csv`` (requests/s, audio-seconds/s,
real-time factor and percentiles per protocol and per user count), and prints the latter.

    python -m locust -f loadtest/locustfile.py --headless -u 4 -t 60s --host http://127.0.0.1:8000 \
        --csv results/locust TritonHttpUser TritonGrpcUser

Without class names Locust runs the Triton users (HTTP and gRPC). The users of other servers run
only when named, with that server as ``--host``: `GatewayUser` (the OpenAI-compatible gateway,
``--host http://127.0.0.1:8080``) and `FastApiUser` (the baseline of `vaani bench`). `TritonStreamUser`
(live recognition: real-time streams to `asr_stream`) also runs only when named, against Triton.

Options beside Locust's own:
    --grpc-host          Triton's gRPC address for `TritonGrpcUser` (also VAANI_GRPC_URL; default:
                         --host's name and the port above its port, Triton's pairing of 8000 and 8001)
    --give-up-after      stop the run, exit status 3, once this many requests in a row (all users
                         together) got no answer from any server (default 10; 0: never)

A request that no server answers (connection refused, unknown host, time-out) is a failure like any
other, and its user then waits before the next one: 0.1 s, doubling with each further one, at most
5 s. Against an address where nothing listens a run therefore stops after ten failures (with two
users, within two seconds) and says why, instead of counting thousands of instant connection errors.

Environment:
    VAANI_MANIFEST       NeMo JSONL manifest of the clips (default: the mixed-length clips of
                         `vaani loadtest`, made from the synthetic corpus once and kept in VAANI_CLIPS)
    VAANI_CLIPS          folder of those clips (default: vaani/locust-clips in the user's cache folder)
    VAANI_SEED           seed of the users' clip orders (default 0; same seed, same requests)
    VAANI_STEP_USERS     e.g. "1,2,4,8": opt in to the step ramp, one step per user count
    VAANI_STEP_SECONDS   length of each ramp step (default 30)
"""

from __future__ import annotations

# gRPC's C core must cooperate with gevent before any channel exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, ClassVar  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from locust import LoadTestShape, User, events, task  # noqa: E402
from locust.argument_parser import LocustArgumentParser  # noqa: E402
from locust.env import Environment  # noqa: E402

from vaani.errors import ServerUnreachable  # noqa: E402
from vaani.loadtest.clips import Clip, ClipPlan, load_clips, make_clips  # noqa: E402
from vaani.loadtest.runner import grpc_address  # noqa: E402
from vaani.loadtest.stats import RequestRecord, by_key, write_records, write_summaries  # noqa: E402

if TYPE_CHECKING:
    from vaani.client.api import TranscriptionClient

LENGTH_BUCKETS = ((0, 5), (5, 10), (10, 10_000))
RECORDS: list[RequestRecord] = []
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
GIVE_UP_AFTER = 10
LOG = logging.getLogger("vaani.locust")


class EmptyTranscriptError(Exception):
    """The server answered, but with no text: for speech that is a wrong answer, not a success."""


@cache
def clips() -> tuple[Clip, ...]:
    """VAANI_MANIFEST's clips, or `vaani loadtest`'s default clips, made on the first run and then reused."""
    manifest = os.environ.get("VAANI_MANIFEST")
    if manifest:
        return tuple(load_clips(Path(manifest)))
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(os.environ.get("VAANI_CLIPS") or cache_home / "vaani" / "locust-clips")
    return tuple(load_clips(make_clips(folder, ClipPlan())))


def named_on_command_line(user_class: str) -> bool:
    """Whether Locust was asked for ``user_class`` by name. Users of servers other than Triton are
    abstract otherwise, so that a bare ``locust -f locustfile.py --host <triton>`` runs only users
    that can succeed against Triton."""
    return user_class in sys.argv[1:]


def length_bucket(seconds: float) -> str:
    """Request name by clip length, so Locust's table shows how latency grows with audio."""
    low, high = next((lo, hi) for lo, hi in LENGTH_BUCKETS if seconds < hi)
    return f"{low}-{high} s" if high < 10_000 else f">={low} s"


def _option(environment: Environment, name: str, default: object) -> object:
    """One of this locustfile's options; Locust run as a library, with no command line, gets ``default``."""
    return getattr(environment.parsed_options, name, default)


def _give_up(environment: Environment, message: str) -> None:
    """Stop the whole run with ServerUnreachable's exit status, so that `vaani loadtest` can tell a
    missing server from failed requests. Quitting kills every user, the calling one too, so it runs
    in a greenlet of its own."""
    LOG.error(message)
    environment.process_exit_code = ServerUnreachable.exit_status
    gevent.spawn(environment.runner.quit)


class Silence:
    """Requests in a row, over every user of this process, that no server answered, and the last
    such failure of each kind of user: what it takes to stop a run that loads nothing, and to say
    which addresses it tried."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, str] = {}

    def heard(self) -> None:
        self.count = 0
        self.last.clear()

    def unanswered(self, user: AsrUser, error: Exception) -> None:
        self.count += 1
        self.last[user.request_type] = f"{user.request_type} at {user.server_url()}: {error!r}"
        if self.count == _option(user.environment, "give_up_after", GIVE_UP_AFTER):
            _give_up(
                user.environment,
                f"stopping: no server answered the last {self.count} requests "
                f"({'; '.join(self.last.values())}). Is the server running at those addresses?",
            )


SILENCE = Silence()


class AsrUser(User):
    """Sends clips back to back and reports each request with its audio length."""

    abstract = True
    request_type = ""
    _numbers = itertools.count()
    _unanswered = 0  # this user's requests in a row that no server answered

    def on_start(self) -> None:
        order = list(clips())
        random.Random(f"{os.environ.get('VAANI_SEED', '0')}:{next(self._numbers)}").shuffle(order)
        self._clips = itertools.cycle(order)

    def wait_time(self) -> float:
        """No wait while a server answers (a closed loop: users are the concurrency); after a request
        that nobody answered 0.1 s, doubling with each further one up to 5 s."""
        if not self._unanswered:
            return 0.0
        return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (self._unanswered - 1))

    def server_url(self) -> str:
        """The address this user sends to (host:port)."""
        return _address(self.host)

    def transcribe(self, clip: Clip) -> str:
        raise NotImplementedError

    def answered(self, error: Exception) -> bool:
        """Whether a server sent ``error`` (a refusal is an answer) rather than nobody answering:
        a refused connection, an unknown host or a time-out is an OSError."""
        return not isinstance(error, OSError)

    def _note(self, error: Exception | None) -> None:
        """An answer, even a refusal, ends the back-off; a request nobody answered lengthens it and
        counts towards giving up."""
        if error is None or self.answered(error):
            self._unanswered = 0
            SILENCE.heard()
        else:
            self._unanswered += 1
            SILENCE.unanswered(self, error)

    @task
    def send(self) -> None:
        clip = next(self._clips)
        started = time.time()
        began = time.perf_counter()
        text, error = "", None
        try:
            text = self.transcribe(clip)
        except Exception as exc:
            error = exc
        latency_ms = (time.perf_counter() - began) * 1000
        if error is None and not text.strip():
            error = EmptyTranscriptError(f"empty transcript for {Path(clip.path).name}")
        self.environment.events.request.fire(
            request_type=self.request_type,
            name=length_bucket(clip.seconds),
            response_time=latency_ms,
            response_length=len(text.encode()),
            exception=error,
            context={
                "audio_seconds": clip.seconds,
                "start": started,
                "users": self.environment.runner.user_count,
            },
        )
        self._note(error)


def _address(host: str | None) -> str:
    """``http://127.0.0.1:8000`` → ``127.0.0.1:8000`` (tritonclient takes no scheme)."""
    if not host:
        raise RuntimeError("give the server address with --host, e.g. --host http://127.0.0.1:8000")
    return urlsplit(host if "//" in host else f"//{host}").netloc


class _TritonUser(AsrUser):
    """The `asr` ensemble through `TranscriptionClient`; subclasses pick the protocol and address."""

    abstract = True
    protocol = ""
    open_clients: ClassVar[set[TranscriptionClient]] = set()

    def on_start(self) -> None:
        from vaani.client.api import TranscriptionClient

        super().on_start()
        self._client = TranscriptionClient(self.server_url(), self.protocol)
        self.open_clients.add(self._client)

    def on_stop(self) -> None:
        self._client.close()
        self.open_clients.discard(self._client)

    def transcribe(self, clip: Clip) -> str:
        return self._client.transcribe(clip.audio)

    def answered(self, error: Exception) -> bool:
        """tritonclient's gRPC errors read alike whether a server sent them or none was reached,
        so the server is asked whether it is there."""
        return super().answered(error) and self._client.is_live()


class TritonHttpUser(_TritonUser):
    """The `asr` ensemble over Triton's HTTP/REST protocol (binary tensor data)."""

    request_type = "triton-http"
    protocol = "http"


class TritonGrpcUser(_TritonUser):
    """The `asr` ensemble over Triton's gRPC protocol, at --grpc-host, else next to --host."""

    request_type = "triton-grpc"
    protocol = "grpc"

    def server_url(self) -> str:
        chosen = _option(self.environment, "grpc_host", "")
        return _resolved(_address(chosen) if chosen else grpc_address(_address(self.host)))


class TritonStreamUser(AsrUser):
    """Live recognition: each clip held as one real-time stream to `asr_stream` (gRPC, 200 ms chunks
    sent at the pace a microphone would), at --grpc-host, else next to --host. Runs only when named.

    Each chunk is reported as a ``triton-stream-chunk`` request (chunk sent → its answer; a refused
    chunk is a failure), each whole stream as a ``triton-stream`` request: its latency over its audio
    (the RTF column) is 1.0 while the server keeps up, more when it falls behind.
    """

    abstract = not named_on_command_line("TritonStreamUser")
    request_type = "triton-stream"
    chunk_seconds = 0.2

    def server_url(self) -> str:
        return TritonGrpcUser.server_url(self)  # type: ignore[arg-type]

    def transcribe(self, clip: Clip) -> str:
        from vaani.client.streaming import stream_audio

        def report(answer) -> None:
            self.environment.events.request.fire(
                request_type=f"{self.request_type}-chunk",
                name="chunk",
                response_time=answer.latency * 1000,
                response_length=len(answer.transcript.encode()),
                exception=RuntimeError(answer.error) if answer.error else None,
                context={
                    "audio_seconds": self.chunk_seconds,
                    "start": time.time(),
                    "users": self.environment.runner.user_count,
                },
            )

        answers = stream_audio(clip.audio, self.server_url(), self.chunk_seconds, pace=1.0, on_answer=report)
        return answers[-1].transcript


def _resolved(address: str) -> str:
    """``host:port`` with the host looked up here, through gevent's resolver as the HTTP users' is.

    gRPC's own resolvers misbehave in this gevent-patched process inside a container network: c-ares
    cancelled its queries (issue 18) and the native one left every gRPC user of a CI run without an
    answer for the whole run while the HTTP users were served; an address needs no resolver.
    """
    host, _, port = address.rpartition(":")
    try:
        return f"{socket.gethostbyname(host)}:{port}"
    except OSError:
        return address  # nobody answers for that name: the first request fails and says so


class FastApiUser(AsrUser):
    """The FastAPI baseline (`vaani.benchmarks.fastapi_baseline`): raw float32 PCM in, JSON out."""

    abstract = not named_on_command_line("FastApiUser")
    request_type = "fastapi"

    def on_start(self) -> None:
        from geventhttpclient import HTTPClient

        super().on_start()
        self._client = HTTPClient.from_url(
            f"http://{self.server_url()}/", concurrency=1, connection_timeout=60, network_timeout=300
        )

    def on_stop(self) -> None:
        self._client.close()

    def transcribe(self, clip: Clip) -> str:
        response = self._client.post(
            "/transcribe", body=clip.audio.tobytes(), headers={"Content-Type": "application/octet-stream"}
        )
        body = response.read()
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {body[:200].decode('utf-8', 'replace')}")
        return json.loads(body)["text"]


class GatewayUser(AsrUser):
    """The OpenAI-compatible gateway (`vaani gateway`, ``--host`` its address): each clip uploaded as a
    WAV file to ``/v1/audio/transcriptions``, as an OpenAI client would, so the time includes the
    upload, decoding in the gateway and the gRPC hop to Triton."""

    abstract = not named_on_command_line("GatewayUser")
    request_type = "gateway"
    boundary = "vaani-locust-boundary"
    _uploads: ClassVar[dict[str, bytes]] = {}

    def on_start(self) -> None:
        from geventhttpclient import HTTPClient

        super().on_start()
        self._client = HTTPClient.from_url(
            f"http://{self.server_url()}/", concurrency=1, connection_timeout=60, network_timeout=300
        )

    def on_stop(self) -> None:
        self._client.close()

    @classmethod
    def upload(cls, clip: Clip) -> bytes:
        """The multipart body for ``clip``, made once per clip so that timing excludes encoding."""
        if clip.path not in cls._uploads:
            cls._uploads[clip.path] = cls._multipart(clip)
        return cls._uploads[clip.path]

    @classmethod
    def _multipart(cls, clip: Clip) -> bytes:
        import soundfile

        from vaani.serving.contract import SAMPLING_RATE

        wav = io.BytesIO()
        soundfile.write(wav, clip.audio, SAMPLING_RATE, format="WAV", subtype="FLOAT")
        name = Path(clip.path).name
        head = (
            f'--{cls.boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nvaani\r\n'
            f'--{cls.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        )
        return head.encode() + wav.getvalue() + f"\r\n--{cls.boundary}--\r\n".encode()

    def transcribe(self, clip: Clip) -> str:
        response = self._client.post(
            "/v1/audio/transcriptions",
            body=self.upload(clip),
            headers={"Content-Type": f"multipart/form-data; boundary={self.boundary}"},
        )
        body = response.read()
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {body[:200].decode('utf-8', 'replace')}")
        return json.loads(body)["text"]


class StepRamp(LoadTestShape):
    """Hold each user count of VAANI_STEP_USERS for VAANI_STEP_SECONDS: where audio-s/s stops growing
    while latency climbs is the saturation point. Only active when VAANI_STEP_USERS is set."""

    abstract = not os.environ.get("VAANI_STEP_USERS")

    def __init__(self) -> None:
        super().__init__()
        self.steps = [int(n) for n in os.environ.get("VAANI_STEP_USERS", "1").split(",") if n.strip()]
        self.step_seconds = float(os.environ.get("VAANI_STEP_SECONDS", "30"))

    def tick(self) -> tuple[int, float] | None:
        step = int(self.get_run_time() // self.step_seconds)
        if step >= len(self.steps):
            return None
        return self.steps[step], float(max(self.steps))


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--grpc-host",
        default="",
        env_var="VAANI_GRPC_URL",
        help="Triton's gRPC address (host:port) for TritonGrpcUser; default: --host's name and the "
        "port above its port (Triton's pairing: HTTP 8000, gRPC 8001)",
    )
    parser.add_argument(
        "--give-up-after",
        type=int,
        default=GIVE_UP_AFTER,
        help="stop the run (exit status 3) once this many requests in a row got no answer from any "
        "server (0: never); until then each such user waits 0.1 s, doubling up to 5 s",
    )


@events.init.add_listener
def _preload(environment: Environment, **_: object) -> None:
    """Make (on a first run) and decode the clips when Locust starts, before the run's clock does:
    no request waits for disk, and making clips does not eat into ``--run-time``."""
    from locust.runners import MasterRunner

    if not isinstance(environment.runner, MasterRunner):
        clips()


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    exception: BaseException | None,
    context: dict | None,
    **_: object,
) -> None:
    if "audio_seconds" in (context or {}):
        RECORDS.append(
            RequestRecord(
                start=context["start"],
                latency_ms=response_time,
                audio_seconds=context["audio_seconds"],
                request_type=request_type,
                name=name,
                users=context["users"],
                ok=exception is None,
            )
        )


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict) -> None:
    """Workers send their records to the master with each stats report."""
    data["vaani_records"] = [tuple(vars(r).values()) for r in RECORDS]
    RECORDS.clear()


@events.worker_report.add_listener
def _collect(client_id: str, data: dict) -> None:
    RECORDS.extend(RequestRecord(*values) for values in data.get("vaani_records", []))


@events.quit.add_listener
def _close_clients(**_: object) -> None:
    """Close the Triton clients of users killed before their ``on_stop`` ran. Python would close
    their gRPC channels from a finalizer at exit, where grpc's gevent support waits forever: the
    run would end, print everything and never exit."""
    for client in list(_TritonUser.open_clients):
        client.close()
    _TritonUser.open_clients.clear()


@events.quitting.add_listener
def _report(environment: Environment, **_: object) -> None:
    """Audio throughput beside Locust's own numbers: printed, and written next to Locust's CSVs."""
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner) or not RECORDS:
        return
    rows = []
    for (kind, users), s in by_key(RECORDS, lambda r: (r.request_type, r.users)).items():
        rows.append({"request_type": kind, "users": users, **s.as_dict()})
    print(
        f"\n{'protocol':<12} {'users':>5} {'req':>6} {'fail':>5} {'req/s':>7} {'audio s/s':>9} "
        f"{'RTF':>6} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for row in rows:
        print(
            f"{row['request_type']:<12} {row['users']:>5} {row['requests']:>6} {row['failures']:>5} "
            f"{row['requests_per_s']:>7.2f} {row['audio_seconds_per_s']:>9.2f} {row['mean_rtf']:>6.3f} "
            f"{row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f}"
        )
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        write_records(RECORDS, Path(f"{prefix}_requests.csv"))
        write_summaries(rows, Path(f"{prefix}_audio.csv"))
