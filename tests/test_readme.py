"""Every Python example in the README runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if README.exists() else []


@pytest.mark.skipif(not EXAMPLES, reason="needs the source tree's README.md")
@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"example{index}.py"
    script.write_text(EXAMPLES[index])
    done = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


BENCH = README.parent / "bench"


@pytest.mark.skipif(not (BENCH / "results" / "latest.json").exists(),
                    reason="needs the source tree's bench/ and its results")
def test_performance_section_shows_the_committed_run() -> None:
    """The README's figures are those of bench/results/latest.json, the run whose charts
    it shows: after a new run, `python bench/report.py --readme bench/results/latest.json`."""
    import json
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
