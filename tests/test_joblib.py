"""joblib and loky: cowbuf objects, and numpy views of cowbuf memory, reach the workers
of both backends by reference, whichever of cowbuf and joblib is imported first."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import sharing_workers as w
from helpers import run_python

import cowbuf

joblib = pytest.importorskip("joblib")
from joblib import Parallel, delayed  # noqa: E402

BACKENDS = ["loky", "multiprocessing"]
LINUX = sys.platform.startswith("linux")


@pytest.fixture(autouse=True)
def _no_leftover_workers():
    yield
    # loky keeps a reusable executor: stop it so no process outlives the test
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_workers_writes_are_seen_by_the_parent(backend, tmp_path):
    a = cowbuf.array("q", 10_000)
    counter = cowbuf.Counter()
    results = Parallel(n_jobs=2, backend=backend, temp_folder=tmp_path)(
        delayed(w.mark_and_sum)(a, counter, i) for i in range(8))
    assert a[:8].tolist() == [100 + i for i in range(8)]
    assert counter.value == 8
    assert all(total >= 100 for total in results)
    assert list(tmp_path.iterdir()) == []  # nothing was memory-mapped to a file


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_views_of_cowbuf_memory_go_by_reference(backend, tmp_path):
    # joblib dumps every numpy array over max_nbytes to a file; a view of cowbuf
    # memory goes by reference instead, writable, strides and offset kept.
    a = cowbuf.array("d", 2_000_000)
    view = np.asarray(a).reshape(1000, 2000)[10:20, ::-2]
    Parallel(n_jobs=2, backend=backend, max_nbytes="1K", temp_folder=tmp_path)(
        delayed(w.set_row)(view, i) for i in range(10))
    expected = np.zeros((1000, 2000))
    expected[10:20, ::-2] = np.arange(10)[:, None] + 1
    assert np.array_equal(np.asarray(a).reshape(1000, 2000), expected)
    assert list(tmp_path.iterdir()) == []
    frozen = cowbuf.array("q", range(1_000_000))
    frozen.freeze()
    flags = Parallel(n_jobs=2, backend=backend, max_nbytes="1K", temp_folder=tmp_path)(
        delayed(w.writeable_and_sum)(np.asarray(frozen)[::3]) for _ in range(2))
    assert flags == [(False, sum(range(0, 1_000_000, 3)))] * 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not LINUX, reason="reads /proc/PID/smaps_rollup")
def test_workers_reading_80_mb_keep_their_private_memory_flat(tmp_path):
    a = cowbuf.array("q", range(10_000_000))  # 80 MB
    growth = Parallel(n_jobs=2, backend="loky", temp_folder=tmp_path)(
        delayed(w.uss_growth_reading)(a) for _ in range(2))
    assert max(growth) < 1024, growth  # KiB


@pytest.mark.parametrize("order", ["cowbuf first", "joblib first", "loky first"])
def test_by_reference_whichever_is_imported_first(order):
    run_python(f"""
        import sys
        order = {order!r}
        if order == "joblib first":
            import joblib
        elif order == "loky first":
            import joblib.externals.loky.backend.reduction
        import cowbuf
        if order == "cowbuf first":
            assert "joblib" not in sys.modules  # importing cowbuf does not import joblib
        from joblib import Parallel, delayed
        import sharing_workers as w

        for backend in ("loky", "multiprocessing"):
            a = cowbuf.array("q", 1000)
            counter = cowbuf.Counter()
            Parallel(n_jobs=2, backend=backend)(
                delayed(w.mark_and_sum)(a, counter, i) for i in range(4))
            assert a[:4].tolist() == [100, 101, 102, 103], (backend, a[:4].tolist())
            assert counter.value == 4
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor().shutdown(wait=True)
        print("ok")
    """, timeout=180)


@pytest.mark.skipif(not LINUX, reason="the /proc route is Linux's")
def test_a_sender_that_is_not_dumpable_takes_another_route():
    # Other processes of the user cannot open the fds of a process that is not
    # dumpable (after a credential change, or prctl): the hand-off must not use
    # /proc then, and the workers still get the memory.
    run_python("""
        import ctypes, multiprocessing as mp
        import cowbuf
        from cowbuf import _core
        import sharing_workers as w

        libc = ctypes.CDLL(None, use_errno=True)
        a = cowbuf.array("q", 1000)
        counter = cowbuf.Counter()
        with mp.get_context("spawn").Pool(1) as pool:
            pool.apply(w.mark_and_sum, (a, counter, 0))
            mapping = _core._region_state(a.region)[0]
            assert libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
            assert _core._outbox_send(mapping) is None
            pool.apply(w.mark_and_sum, (a, counter, 1))
        assert a[:2].tolist() == [100, 101] and counter.value == 2
        print("ok")
    """, timeout=120)
