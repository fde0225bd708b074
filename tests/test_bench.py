"""The benchmark suite runs end to end in a tiny configuration, so that it cannot rot.

Speed is not checked here (that is what the benchmarks' own ratios are for): this
checks that `python bench/run.py` runs every benchmark, that their results make
sense (exact counters, correct sums, gunicorn stopped with nothing left behind), and
that it writes the JSON, the report and, with matplotlib installed, the charts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="the memory figures come from /proc/PID/smaps_rollup"),
    pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "bench", "run.py")),
                       reason="needs the source tree's bench/"),
]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    # every process of the run turns warnings into errors, as the test suite does
    env = dict(os.environ, PYTHONWARNINGS="error")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke",
                           "--out", str(out), "--name", "smoke"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "smoke.json") as f:
        return json.load(f), str(out)


def test_every_benchmark_ran(smoke_run: tuple[dict, str]) -> None:
    data, _ = smoke_run
    assert data["meta"]["mode"] == "smoke"
    assert data["meta"]["machine"]["python"] == sys.version.split()[0]
    bench = data["benchmarks"]
    assert set(bench) == {"access", "counters", "sync", "handoff", "ecosystem", "gunicorn",
                          "scaling"}
    assert not [name for name, res in bench.items() if "error" in res]
    for name in ("access", "counters", "sync", "handoff", "ecosystem"):
        for t in bench[name]["targets"]:
            assert t["status"] in {"PASS", "MISS", "n/a"}, t


def test_counters_are_exact(smoke_run: tuple[dict, str]) -> None:
    counters = smoke_run[0]["benchmarks"]["counters"]
    for name in ("cowbuf", "cowbuf padded", "Value+lock"):
        two = counters["peers"][name]["two"]
        assert two["exact"], (name, two)
    assert counters["bulk"]["exact"]


def test_sync_locks_are_exact_and_survive_their_holder(smoke_run: tuple[dict, str]) -> None:
    sync = smoke_run[0]["benchmarks"]["sync"]
    for name, runs in sync["two"].items():
        assert all(r["exact"] for r in runs), name
    assert None not in sync["killed"]["cowbuf"]
    survival = sync["survival"]
    assert survival["lock"]["cowbuf"].startswith("got it"), survival
    assert "owner_died" in survival["lock"]["cowbuf"], survival
    assert survival["semaphore"]["cowbuf tracked"].startswith("got it"), survival
    assert survival["condition"]["cowbuf"].startswith("returned"), survival
    assert survival["barrier"]["cowbuf"].startswith("BrokenBarrierError"), survival


def test_handoff_sends_cowbuf_by_reference(smoke_run: tuple[dict, str]) -> None:
    handoff = smoke_run[0]["benchmarks"]["handoff"]
    assert handoff["config"]["cowbuf_by_reference"]
    for method, res in handoff["methods"].items():
        assert "cowbuf" in res["median"], method


def test_ecosystem_leaves_no_file_and_measures_every_peer(smoke_run: tuple[dict, str]) -> None:
    eco = smoke_run[0]["benchmarks"]["ecosystem"]
    assert eco["files_left"] == 0
    assert set(eco["median"]["pickle"]) == {"protocol 5, out of band", "in band"}
    if _installed("joblib"):
        assert "cowbuf, Parallel per call" in eco["median"]["joblib"]
    if _installed("ray"):
        assert set(eco["median"]["ray"]) == {"cowbuf Array", "numpy array"}


def test_gunicorn_experiment(smoke_run: tuple[dict, str]) -> None:
    gun = smoke_run[0]["benchmarks"]["gunicorn"]
    expected = {"list-nopreload", "list", "list-gcfreeze", "numpy", "mmap-struct",
                "mmap-memoryview", "shared_memory", "rawarray", "cowbuf"}
    if _installed("joblib"):
        expected.add("joblib")
    assert set(gun["strategies"]) == expected, gun["skipped"]
    for name, res in gun["strategies"].items():
        # stopped by SIGTERM, nothing had to be killed afterwards
        assert res["exit_code"] == 0 and res["leftovers"] == [], name
        assert set(res["phases"]) == {"boot", "idle", "read", "load"}, name
        assert len(res["first_read_seconds"]) == gun["config"]["workers"], name
        workers = [s for s in res["series"] if s["role"] == "worker"]
        assert len(workers) == gun["config"]["workers"], name
        assert all(s["uss"] and s["pss"] for s in workers), name
        assert res["load"]["requests"] > 0 and res["load"]["errors"] == 0, name
        for pid in [s["pid"] for s in res["series"]]:
            assert not os.path.exists(f"/proc/{pid}") or _zombie_or_reused(pid), name


def _zombie_or_reused(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"gunicorn" not in f.read()
    except OSError:
        return True


def test_report_and_charts(smoke_run: tuple[dict, str]) -> None:
    _data, out = smoke_run
    with open(os.path.join(out, "smoke.md")) as f:
        report = f.read()
    for title in ("gunicorn", "Element access", "Shared counters", "Locks, events", "Hand an",
                  "Scaling"):
        assert title in report
    charts = ["smoke-memory.png", "smoke-total.png", "smoke-scaling.png"]
    if _installed("matplotlib"):
        for chart in charts:
            with open(os.path.join(out, chart), "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
            assert f"]({chart})" in report
    else:
        assert not any(os.path.exists(os.path.join(out, c)) for c in charts)
