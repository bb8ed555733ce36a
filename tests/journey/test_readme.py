"""Every shell and Python example of the README runs in CI, or says on its first line why it cannot."""

from __future__ import annotations

from tests.journey.readme import NOT_RUN, RUN_BY, blocks

EXAMPLE_LANGUAGES = ("bash", "sh", "python", "")  # an untagged block reads as a shell example


def test_every_example_runs_in_ci_or_says_why_not() -> None:
    unaccounted = [
        f"README.md:{b.line}: {b.code.splitlines()[0] if b.code.strip() else '(empty)'}"
        for b in blocks()
        if b.language in EXAMPLE_LANGUAGES
        and not b.code.startswith(NOT_RUN)
        and not any(text in b.code for text in RUN_BY)
    ]
    assert not unaccounted, "README examples neither run in CI nor say why not:\n" + "\n".join(unaccounted)


def test_each_run_example_is_found_once() -> None:
    for text in RUN_BY:
        assert sum(text in b.code for b in blocks()) == 1, f"{text!r} must find exactly one README block"


def test_a_reason_is_given() -> None:
    for b in blocks():
        if b.code.startswith(NOT_RUN):
            assert len(b.code.splitlines()[0]) > len(NOT_RUN) + 10, f"README.md:{b.line}: no reason given"
