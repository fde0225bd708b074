"""The fuzz target runs every input of its seed corpus, in the normal test run (and so
under the sanitizers of tools/sanitize.sh): the inputs that once found a bug stay
regression tests, and the target itself keeps working."""

from __future__ import annotations

from pathlib import Path

import fuzz_api
import pytest

CORPUS = sorted((Path(__file__).parent / "corpus").iterdir())


@pytest.mark.parametrize("chunk", range(4))
def test_seed_corpus_runs_clean(chunk: int) -> None:
    for path in CORPUS[chunk::4]:
        try:
            fuzz_api.test_one_input(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"{path.name}: {exc!r}") from exc


def test_seed_corpus_holds_the_inputs_that_found_bugs() -> None:
    names = {p.name for p in CORPUS}
    assert {"atomic-add-at-aliasing"} <= names
