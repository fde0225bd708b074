"""Shared fixtures: running test bodies in real worker processes.

Tests that need other processes take the ``run_workers`` fixture. It starts one
process per argument tuple with the multiprocessing context of the ``start_method``
fixture, waits for all of them, and returns their results in order, re-raising a
worker's exception (with its traceback) in the test. Every start method of the
platform is listed: cowbuf objects reach spawn and forkserver workers by reference
(multiprocessing pickles the arguments), so the same test body runs under each.
Tests about fork itself (what a forked child inherits) use the fork context directly.

Hypothesis searches: every run draws a new seed, printed at the start and at the end
of the run, from which every test draws its examples (COWBUF_HYPOTHESIS_SEED=N runs
the same tests the same way again), after replaying the examples of the regression
corpus in tests/hypothesis-corpus: examples that failed once. New failing examples go
to the local database (.hypothesis/) and are printed; with COWBUF_HYPOTHESIS_SAVE=1
they go into the corpus itself, to be committed with the fix. (pytest's
--hypothesis-seed would fix the seed too, but Hypothesis then leaves the database,
and with it the corpus, alone.)
"""

import multiprocessing
import os
import random
import threading
import traceback
from pathlib import Path

import pytest

try:
    import hypothesis.core
    from hypothesis import HealthCheck, settings
    from hypothesis.database import (
        DirectoryBasedExampleDatabase,
        MultiplexedDatabase,
        ReadOnlyDatabase,
    )
except ImportError:  # the property tests skip themselves
    settings = None

HYPOTHESIS_CORPUS = Path(__file__).parent / "hypothesis-corpus"


def _hypothesis_database():
    corpus = DirectoryBasedExampleDatabase(HYPOTHESIS_CORPUS)
    if os.environ.get("COWBUF_HYPOTHESIS_SAVE"):
        return corpus
    local = DirectoryBasedExampleDatabase(Path(__file__).parent.parent / ".hypothesis" / "examples")
    return MultiplexedDatabase(ReadOnlyDatabase(corpus), local)


if settings is not None:
    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("cowbuf-ci", deadline=None, print_blob=True,
                              database=_hypothesis_database(), suppress_health_check=_quiet)
    settings.register_profile("cowbuf-dev", deadline=None, max_examples=2000,
                              stateful_step_count=100, database=_hypothesis_database(),
                              suppress_health_check=_quiet)
    settings.load_profile(os.environ.get("COWBUF_HYPOTHESIS_PROFILE", "cowbuf-ci"))


HYPOTHESIS_SEED = None


def pytest_configure(config):
    # One seed for the run, from which Hypothesis draws the seed of each test that has
    # none of its own (its random module, seeded here). A seed given to pytest
    # (--hypothesis-seed) takes precedence and turns the database off.
    global HYPOTHESIS_SEED
    threadlocal = getattr(hypothesis.core, "threadlocal", None) if settings else None
    if hasattr(threadlocal, "_hypothesis_global_random"):
        HYPOTHESIS_SEED = int(os.environ.get("COWBUF_HYPOTHESIS_SEED")
                              or random.randrange(2**32))
        threadlocal._hypothesis_global_random = random.Random(HYPOTHESIS_SEED)


def pytest_collection_modifyitems(config, items):
    config._cowbuf_hypothesis = any(item.get_closest_marker("hypothesis") for item in items)


def _seed_line(config):
    if config.getoption("hypothesis_seed", None) is not None or HYPOTHESIS_SEED is None:
        return None
    if not getattr(config, "_cowbuf_hypothesis", True):
        return None
    return (f"hypothesis seed: {HYPOTHESIS_SEED} "
            f"(the same examples again: COWBUF_HYPOTHESIS_SEED={HYPOTHESIS_SEED})")


def pytest_report_header(config):
    return _seed_line(config)


def pytest_terminal_summary(terminalreporter, config):
    line = _seed_line(config)
    if line:
        terminalreporter.write_line(line)

START_METHODS = [m for m in ("fork", "forkserver", "spawn")
                 if m in multiprocessing.get_all_start_methods()]


@pytest.fixture(params=START_METHODS)
def start_method(request):
    """A multiprocessing start method under which the workers of a test run."""
    return request.param


@pytest.fixture
def mp_context(start_method):
    return multiprocessing.get_context(start_method)


class WorkerError(AssertionError):
    """A worker raised: carries its formatted traceback."""


def _worker_main(conn, target, args):
    # Runs in the worker: report the result or the traceback through the pipe.
    try:
        result = target(*args)
    except BaseException:
        conn.send((False, traceback.format_exc()))
    else:
        conn.send((True, result))
    finally:
        conn.close()


def run_in_workers(ctx, target, arg_tuples, timeout=120, while_running=None):
    """Run target(*args) in one new process per tuple of `arg_tuples`, all at once;
    return their results in order. `while_running()`, if given, runs in this
    process once all workers have started. Raises WorkerError for a worker that
    raised, died (a crash shows as its exit code, e.g. -11 for SIGSEGV) or did not
    exit cleanly."""
    # A fork while other threads run can deadlock the child (Python 3.12+ warns,
    # and the suite turns warnings into errors): keep the test process
    # single-threaded. Pipes, unlike multiprocessing.Queue, start no feeder thread.
    assert threading.active_count() == 1, threading.enumerate()
    workers = []
    try:
        for args in arg_tuples:
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, args=(writer, target, tuple(args)))
            proc.start()
            writer.close()
            workers.append((proc, reader))
        if while_running is not None:
            while_running()
        results = []
        failures = []
        for proc, reader in workers:
            try:
                if not reader.poll(timeout):
                    raise WorkerError(f"worker {proc.pid} did not finish in {timeout} s")
                ok, value = reader.recv()
            except EOFError:
                proc.join(timeout)
                failures.append(f"worker {proc.pid} died with exit code {proc.exitcode}")
                results.append(None)
                continue
            if not ok:
                failures.append(f"worker {proc.pid} raised:\n{value}")
            results.append(value)
            proc.join(timeout)
            if ok and proc.exitcode != 0:
                failures.append(f"worker {proc.pid} exited with code {proc.exitcode}")
        if failures:
            raise WorkerError("\n".join(failures))
        return results
    finally:
        for proc, reader in workers:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()
            reader.close()
            proc.close()


@pytest.fixture
def run_workers(mp_context):
    """run_workers(target, arg_tuples, timeout=120, while_running=None) -> results:
    see run_in_workers."""

    def run(target, arg_tuples, timeout=120, while_running=None):
        return run_in_workers(mp_context, target, arg_tuples, timeout, while_running)

    return run


@pytest.fixture
def run_forked():
    """Like run_workers, always with fork: for what a forked child inherits."""

    def run(target, arg_tuples, timeout=120, while_running=None):
        return run_in_workers(multiprocessing.get_context("fork"), target, arg_tuples,
                              timeout, while_running)

    return run
