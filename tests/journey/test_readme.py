"""Every shell and Python example of the README and docs/ runs in CI, or says on its first line why not."""

from __future__ import annotations

import re

from tests.journey.readme import DOCUMENTS, NOT_RUN, ROOT, RUN_BY, blocks

EXAMPLE_LANGUAGES = ("bash", "sh", "python", "")  # an untagged block reads as a shell example


def test_every_example_runs_in_ci_or_says_why_not() -> None:
    unaccounted = [
        f"{b.place}: {b.code.splitlines()[0] if b.code.strip() else '(empty)'}"
        for b in blocks()
        if b.language in EXAMPLE_LANGUAGES
        and not b.code.startswith(NOT_RUN)
        and not any(text in b.code for text in RUN_BY)
    ]
    assert not unaccounted, "examples that neither run in CI nor say why not:\n" + "\n".join(unaccounted)


def test_each_run_example_is_found_once() -> None:
    for text in RUN_BY:
        assert sum(text in b.code for b in blocks()) == 1, f"{text!r} must find exactly one documented block"


def test_a_reason_is_given() -> None:
    for b in blocks():
        if b.code.startswith(NOT_RUN):
            assert len(b.code.splitlines()[0]) > len(NOT_RUN) + 10, f"{b.place}: no reason given"


def test_relative_links_lead_somewhere() -> None:
    """The README and docs/ link each other and the recorded results: a moved file breaks no link."""
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and not re.match(r"[a-z]+:", path) and not (document.parent / path).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)
