"""The README's quick start: `python -m cowbuf.demo`, run as a user runs it.

Ten million integers held as a list, as a list after gc.freeze() and as a cowbuf array;
three forked workers each read all of them once in Python. The figures (each worker's
USS growth, the total PSS, the median read time) come from `python -m cowbuf.demo
--json` in a fresh interpreter; the README's quick-start table is generated from them
(bench/report.py --readme), never typed in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from _common import REPO_DIR, bench_main, progress


def run(quick: bool = False, smoke: bool = False) -> dict[str, Any]:
    items = 200_000 if smoke else 10_000_000
    workers = 3
    progress(f"demo: python -m cowbuf.demo --json --items {items:,} --workers {workers}")
    done = subprocess.run([sys.executable, "-m", "cowbuf.demo", "--json", "--items", str(items),
                           "--workers", str(workers)], capture_output=True, text=True,
                          check=True, cwd=REPO_DIR)
    result: dict[str, Any] = json.loads(done.stdout)
    return {"name": "demo", "title": "The quick start: python -m cowbuf.demo",
            "config": {"items": items, "workers": workers}, "result": result,
            "targets": []}


def format_result(result: dict[str, Any]) -> str:
    from cowbuf import demo
    cfg = result["config"]
    return "\n".join([
        f"### {result['title']}", "",
        f"{cfg['items']:,} integers, {cfg['workers']} forked workers, each reads every value "
        "once in Python: each worker's USS growth, the total PSS of the parent and the "
        "workers, and the median time of a full read.", "",
        "```", demo.table(result["result"]), "```"])


if __name__ == "__main__":
    bench_main(run, format_result)
