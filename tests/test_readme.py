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


def _generated(section: str) -> tuple[str, str]:
    """(what the README shows between the markers of `section`, what bench/report.py
    generates there from bench/results/latest.json)."""
    sys.path.insert(0, str(BENCH))
    try:
        import report
        with open(BENCH / "results" / "latest.json") as f:
            data = json.load(f)
        if section == "performance":
            expected = report.readme_section(data)
            begin, end = report.README_BEGIN, report.README_END
        else:
            expected = report.readme_quickstart(data)
            begin, end = report.QUICKSTART_BEGIN, report.QUICKSTART_END
    finally:
        sys.path.remove(str(BENCH))
    text = README.read_text()
    assert begin in text and end in text
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n"), expected


needs_results = pytest.mark.skipif(not (BENCH / "results" / "latest.json").exists(),
                                   reason="needs the source tree's bench/ and its results")


@needs_results
def test_performance_section_shows_the_committed_run() -> None:
    """The README's figures are those of bench/results/latest.json, the run whose charts
    it shows: after a new run, `python bench/report.py --readme bench/results/latest.json`."""
    shown, expected = _generated("performance")
    assert shown == expected
    for chart in re.findall(r"!\[[^]]*\]\(([^)]+)\)", shown):
        assert (README.parent / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_results
def test_quick_start_table_is_the_demo_of_the_committed_run() -> None:
    """The quick start's table is `python -m cowbuf.demo --json` of that run, rendered
    as the demo prints it: no figure typed in."""
    shown, expected = _generated("quickstart")
    assert shown == expected


def test_the_demo_prints_the_table_of_its_json(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cowbuf import demo

    result = {"items": 10, "workers": 2, "python": "3", "system": "Linux", "cpus": 2,
              "rows": [{"name": name, "growth_kib": [2048, 1024], "total_pss_kib": 5120,
                        "read_seconds": 0.25} for name, _ in demo.STRATEGIES]}
    monkeypatch.setattr(demo, "run", lambda items, workers: result)
    assert demo.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert demo.main([]) == 0
    printed = capsys.readouterr().out
    assert demo.table(result) in printed
    assert "2.0, 1.0" in demo.table(result)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads smaps_rollup")
def test_the_demo_shows_the_list_copied_and_cowbuf_shared() -> None:
    done = subprocess.run([sys.executable, "-m", "cowbuf.demo", "--json", "--items", "300000",
                           "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["rows"]}
    assert list(rows) == ["list", "list + gc.freeze()", "cowbuf.array('q')"]
    # 300,000 ints are ~9 MB of objects: every worker copies the pages it reads
    for name in ("list", "list + gc.freeze()"):
        assert min(rows[name]["growth_kib"]) > 4096, rows[name]
    assert max(rows["cowbuf.array('q')"]["growth_kib"]) < 1024, rows


@pytest.mark.skipif(not (README.parent / "docs").is_dir(), reason="needs the source tree's docs/")
@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md", "docs/guarantees.md",
                                  "docs/array.md"])
def test_every_test_the_docs_name_exists(page: str) -> None:
    """A promise backed by a test names it; a renamed or deleted test must not leave the
    promise pointing at nothing."""
    text = (README.parent / page).read_text()
    named = re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", text)
    for path, name in named:
        source = (README.parent / path).read_text()
        assert re.search(rf"^(async )?def {name}\(|^{name} = ", source, re.M), f"{path}::{name}"
