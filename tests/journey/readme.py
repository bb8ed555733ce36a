"""The documentation's code blocks, as the journey runs them: found by their text, ports substituted.

A shell or Python block of the README or a page under docs/ either runs in CI (the journey names it
in `RUN_BY`) or says on its first line, visibly, why it cannot run here: ``# not run in CI: REASON``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
NOT_RUN = "# not run in CI: "
RUN_BY: dict[str, str] = {  # text that finds a block → what runs it
    "make setup && make serve": "tests/journey/test_journey.py (make serve; make test sets up)",
    "make test\n": ".ci/run",
    "espeak-ng -v hi": "tests/journey/test_journey.py",
    "from vaani.client.api import transcribe": "tests/journey/test_journey.py",
    "-F response_format=srt": "tests/journey/test_journey.py",
    "from openai import OpenAI": "tests/journey/test_journey.py",
    "ffmpeg -f lavfi -i anullsrc": "tests/journey/test_journey.py",
    "client.realtime.connect": "tests/test_gateway_streaming.py (docs/api.md's realtime example)",
    "vaani transcribe --stream": "tests/test_streaming.py (the README's live recognition example)",
}
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    place: str  # document:line of the opening fence
    language: str
    code: str


def blocks() -> list[Block]:
    return [b for document in DOCUMENTS for b in _blocks(document)]


def _blocks(document: Path) -> list[Block]:
    lines = document.read_text(encoding="utf-8").splitlines()
    found, start, language = [], None, ""
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if fence and start is None:
            start, language = number, fence.group(1)
        elif line.strip() == "```" and start is not None:
            code = "\n".join(lines[start : number - 1]) + "\n"
            found.append(Block(f"{document.relative_to(ROOT)}:{start}", language, code))
            start = None
    return found


def block(containing: str, language: str = "bash") -> Block:
    """The one documented block of ``language`` whose code holds ``containing``."""
    matches = [b for b in blocks() if b.language == language and containing in b.code]
    assert len(matches) == 1, f"{len(matches)} documented {language} blocks hold {containing!r}"
    return matches[0]


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int
    gateway: int


def substitute(code: str, ports: Ports) -> str:
    """The README's default ports replaced by the journey's; a `vaani transcribe` without `--url`
    (it defaults to localhost:8000/8001) and `transcribe(audio)` from Python get the journey's."""
    code = (
        code.replace("localhost:8000", f"localhost:{ports.http}")
        .replace("localhost:8001", f"localhost:{ports.grpc}")
        .replace("localhost:8080", f"localhost:{ports.gateway}")
    )
    lines = []
    for line in code.splitlines():
        command, hash_, comment = line.partition("  #")
        if "vaani transcribe" in command and "--url" not in command:
            port = ports.grpc if "--protocol grpc" in command else ports.http
            command = f"{command.rstrip()} --url localhost:{port}"
        lines.append(command + (f" {hash_.strip()}{comment}" if hash_ else ""))
    code = "\n".join(lines)
    return code.replace(
        'transcribe(load_audio("hello.wav"))',
        f'transcribe(load_audio("hello.wav"), url="localhost:{ports.http}")',
    )
