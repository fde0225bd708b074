"""The fuzz target runs every input of its seed corpus, in the normal test run (and so
under the sanitizers of tools/sanitize.sh): the inputs that once found a bug stay
regression tests, and the target itself keeps working."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import fuzz_api
import pytest

CORPUS = sorted((Path(__file__).parent / "corpus").iterdir())
# Inputs named after the bug they found, and the event of the target that shows
# they still reach it.
REGRESSIONS = {"atomic-add-at-aliasing": "atomic_add_at-aliasing",
               # not a bug: the seed that drives a Queue through puts and gets
               "queue-round-trips": "queue-round-trip"}


@pytest.mark.parametrize("chunk", range(4))
def test_seed_corpus_runs_clean(chunk: int) -> None:
    for path in CORPUS[chunk::4]:
        try:
            fuzz_api.test_one_input(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"{path.name}: {exc!r}") from exc


def test_seed_corpus_reaches_threads_forks_cycles_and_crafted_pickles() -> None:
    events: Counter[str] = Counter()
    for path in CORPUS[::7]:
        events.update(fuzz_api.test_one_input(path.read_bytes()))
    for event in ("thread", "fork", "cycle", "cycle-with-export", "crafted-by-value",
                  "crafted-by-reference"):
        assert events[event] >= 3, events


@pytest.mark.parametrize("name", REGRESSIONS)
def test_seed_corpus_holds_the_inputs_that_found_bugs(name: str) -> None:
    path = Path(__file__).parent / "corpus" / name
    assert REGRESSIONS[name] in fuzz_api.test_one_input(path.read_bytes())
