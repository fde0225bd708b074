"""cowbuf.registry and cowbuf.pool_kwargs(): named shared objects for pool workers."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import warnings
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ProcessPoolExecutor

import pytest
import sharing_workers as w

import cowbuf

START_METHODS = [m for m in ("fork", "forkserver", "spawn") if m in mp.get_all_start_methods()]


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    cowbuf.registry.clear()
    yield
    cowbuf.registry.clear()


def test_is_a_mutable_mapping() -> None:
    reg = cowbuf.registry
    assert isinstance(reg, MutableMapping)
    a, c, r = cowbuf.array("q", 3), cowbuf.Counter(), cowbuf.Region(10)
    reg["a"], reg["c"], reg["r"] = a, c, r
    assert reg["a"] is a and reg["c"] is c and reg["r"] is r
    assert len(reg) == 3 and sorted(reg) == ["a", "c", "r"] and "a" in reg
    assert reg.get("missing") is None
    del reg["a"]
    assert "a" not in reg
    with pytest.raises(KeyError):
        del reg["a"]
    assert repr(reg) == "<cowbuf.registry ['c', 'r']>"


def test_missing_name_lists_what_is_there() -> None:
    cowbuf.registry["prices"] = cowbuf.array("d", 3)
    cowbuf.registry["hits"] = cowbuf.Counter()
    missing = r"'volumes' is not in the cowbuf registry.*\['hits', 'prices'\]"
    with pytest.raises(KeyError, match=missing):
        cowbuf.registry["volumes"]


def test_rejects_other_values_and_names() -> None:
    with pytest.raises(TypeError, match=r"cowbuf objects \(Region, Array, Counter.*\), not list"):
        cowbuf.registry["x"] = [1, 2, 3]  # type: ignore[assignment]
    with pytest.raises(TypeError, match="names are str"):
        cowbuf.registry[1] = cowbuf.Counter()  # type: ignore[index]
    assert len(cowbuf.registry) == 0


def test_forked_children_see_entries_registered_before_the_fork() -> None:
    a = cowbuf.array("q", range(100))
    cowbuf.registry["a"] = a
    p = mp.get_context("fork").Process(target=w.registry_view, args=("a",))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert a[0] == 1000


def test_fork_while_another_thread_holds_the_lock() -> None:
    cowbuf.registry["a"] = cowbuf.array("q", 4)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cowbuf.registry._lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        with warnings.catch_warnings():
            # forking with a thread alive is the point of this test (3.12+ warns)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: the holder thread does not exist here
            try:
                cowbuf.registry["b"] = cowbuf.Counter(1)
                ok = sorted(cowbuf.registry) == ["a", "b"] and cowbuf.registry["a"][0] == 0
            finally:
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child deadlocked on the registry lock")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join()
    assert sorted(cowbuf.registry) == ["a"]


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_kwargs_installs_the_registry_in_pool_workers(method: str) -> None:
    ctx = mp.get_context(method)
    a = cowbuf.array("q", range(1000))
    cowbuf.registry["a"] = a
    cowbuf.registry["hits"] = cowbuf.Counter()
    kwargs = cowbuf.pool_kwargs(w.user_initializer, ("x", 1))
    with ctx.Pool(2, **kwargs) as pool:
        names, total = pool.apply(w.registry_view, ("a",))
        assert names == ["a", "hits"]
        assert total == sum(range(1000)) + 1000
        assert pool.apply(w.initializer_calls) == [("x", 1)]
    assert a[0] == 1000  # the worker's write is the parent's memory


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_kwargs_with_process_pool_executor(method: str) -> None:
    a = cowbuf.array("q", range(10))
    cowbuf.registry["a"] = a
    with ProcessPoolExecutor(1, mp_context=mp.get_context(method),
                             **cowbuf.pool_kwargs()) as executor:
        assert executor.submit(w.registry_view, "a").result() == (["a"], 45 + 1000)
    assert a[0] == 1000


def test_pool_kwargs_takes_a_snapshot() -> None:
    cowbuf.registry["a"] = cowbuf.array("q", 1)
    kwargs = cowbuf.pool_kwargs()
    cowbuf.registry["later"] = cowbuf.Counter()
    entries, initializer, initargs = kwargs["initargs"]
    assert sorted(entries) == ["a"] and initializer is None and initargs == ()
