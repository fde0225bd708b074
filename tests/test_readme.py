"""Every Python example in the README runs as written and prints what the README says
it prints; the README's figures are those of the runs that produced them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BENCH = README.parent / "bench"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def _examples(text: str) -> list[tuple[str, str | None]]:
    """(code, printed output or None) of each python block. A block's output is the
    text block that follows it with at most one line of prose between them."""
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(text)]
    examples = []
    for k, (lang, body, _, end) in enumerate(blocks):
        if lang != "python":
            continue
        output = None
        if k + 1 < len(blocks):
            next_lang, next_body, next_start, _ = blocks[k + 1]
            between = text[end:next_start].strip()
            if next_lang == "text" and "\n" not in between:
                output = next_body
        examples.append((body, output))
    return examples


EXAMPLES = _examples(README.read_text()) if README.exists() else []


@pytest.mark.skipif(not EXAMPLES, reason="needs the source tree's README.md")
@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    code, output = EXAMPLES[index]
    # an example that prints says what: its output is checked, not just its exit
    assert output is not None or "print(" not in code, "an example prints, unchecked"
    script = tmp_path / f"example{index}.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    if output is not None:
        assert done.stdout == output


def test_readme_examples_are_found() -> None:
    if not README.exists():
        pytest.skip("needs the source tree's README.md")
    printed = [output for _, output in EXAMPLES if output is not None]
    assert len(EXAMPLES) >= 3 and len(printed) >= 2


@pytest.mark.skipif(not (BENCH / "results" / "latest.json").exists(),
                    reason="needs the source tree's bench/ and its results")
def test_performance_section_shows_the_committed_run() -> None:
    """The README's figures are those of bench/results/latest.json, the run whose charts
    it shows: after a new run, `python bench/report.py --readme bench/results/latest.json`."""
    sys.path.insert(0, str(BENCH))
    try:
        import report
        with open(BENCH / "results" / "latest.json") as f:
            expected = report.readme_section(json.load(f))
        begin, end = report.README_BEGIN, report.README_END
    finally:
        sys.path.remove(str(BENCH))
    text = README.read_text()
    assert begin in text and end in text
    shown = text.split(begin, 1)[1].split(end, 1)[0].strip("\n")
    assert shown == expected
    for chart in re.findall(r"!\[[^]]*\]\(([^)]+)\)", shown):
        assert (README.parent / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
