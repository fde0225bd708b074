#!/usr/bin/env python3
"""Deliberate breakages that the test suite must catch (issue 17).

A promise is only as good as the breakage that would make its test fail. Each mutant
below breaks one promise the way a plausible change would (an add made non-atomic, a
buffer never freed, a check dropped, the defect a fix removed) and names the tests
that must then fail. This tool applies the mutants to a scratch copy of the source,
builds it, runs only those tests for each mutant, and fails unless every mutant is
killed: the tests fail (or crash, or hang into their timeout) with the mutant and pass
without it.

One build serves every mutant of the extension: each breakage is compiled in behind
a switch (`if _MUTANT == k:` the broken code, `else:` the original), and the run of a
mutant's tests sets COWBUF_MUTANT=k, so each mutant still gets a verdict of its own.
The mutants that cannot be switched at run time (a class decorator) get a build of
their own. The same targeted tests run once with no mutant switched on first: they
must pass there, or a kill proves nothing. Mutants of the Python modules, the
examples and the README need no build: they are applied, tested and reverted.

    python tools/mutants.py              every mutant (CI: .ci/run)
    python tools/mutants.py --list       the mutants and the tests that must kill them
    python tools/mutants.py NAME...      only these
    python tools/mutants.py --separate   each mutant of the extension in a build of its
                                         own, applied as plain text (slow; checks that
                                         the switches change nothing)

Self-contained: a scratch directory with its own virtualenv (the build and test
requirements of pyproject.toml) and its own build; the source tree is left untouched.
Environment: PYTHON (default: this interpreter) makes the virtualenv; COWBUF_SCRATCH
keeps and reuses the scratch directory.

Add a mutant with every defect fixed: the breakage that brings it back, and the test
written for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The switch every mutant of the extension is compiled behind (in the scratch copy).
SWITCH = """
# tools/mutants.py: the deliberate breakage switched on in this process (0: none)
cdef int _MUTANT = int(os.environ.get("COWBUF_MUTANT", "0") or "0")
"""
SWITCH_FILE = "cowbuf/_constants.pxi"
TEST_TIMEOUT = 900  # seconds for one mutant's tests (a hang is a kill)


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace `old`, which occurs exactly once in `path`, by `new`. In the extension
    both are whole lines at one indentation, so that they can be switched."""

    path: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str  # the promise, in a few words
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids: at least one must fail
    switch: bool = True  # False: a build of its own

    @property
    def compiled(self) -> bool:
        return any(e.path.startswith("cowbuf/") and not e.path.endswith(".py")
                   for e in self.edits)


def _lines(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _at(indent: int, text: str) -> str:
    return textwrap.indent(_lines(text), " " * indent)


ADD_AT = "cowbuf/_add_at.pxi"
REGION = "cowbuf/_region.pxi"
ATOMIC_TESTS = "tests/test_atomic.py::test_atomic_add_at_is_exact_under_contention_on_both_paths"
LEAK_TEST = "tests/test_leaks.py::test_no_c_level_leak_in_any_allocating_path"
GUNICORN_TEST = "tests/test_gunicorn.py::test_preloaded_workers_read_everything_without_copying"
APP = "examples/gunicorn/app.py"
PRELOAD_OFF = Edit("examples/gunicorn/gunicorn.conf.py", "preload_app = True\n",
                   "preload_app = False\n")
APP_LIST = (
    Edit(APP, _at(4, """
        data = cowbuf.array("q", range(ITEMS))
        data.freeze()  # read-only for good, in every worker
        cowbuf.registry["data"] = data
        """), _at(4, """
        pass
        """) + "DATA = list(range(ITEMS))\n"),
    Edit(APP, _at(4, """
        values = cowbuf.registry["data"]
        assert isinstance(values, cowbuf.Array)
        """), _at(4, """
        values = DATA
        """)),
)

MUTANTS = [
    # -- issue 17: breakages 0.1.0's suite did not see ------------------------------
    Mutant("add_at_per_item_not_atomic",
           "atomic_add_at into long arrays is atomic",
           (Edit(ADD_AT, _at(8, """
                if wide:
                    cowbuf_fetch_add_u64(<uint64_t*>(base + i * stride), delta)
                else:
                    cowbuf_add_fetch_u32(<uint32_t*>(base + i * stride), <uint32_t>delta)
                """), _at(8, """
                if wide:
                    (<uint64_t*>(base + i * stride))[0] += delta
                else:
                    (<uint32_t*>(base + i * stride))[0] += <uint32_t>delta
                """)),),
           (f"{ATOMIC_TESTS}[fork-q-per-item]", f"{ATOMIC_TESTS}[fork-i-per-item]")),
    Mutant("add_at_combining_not_atomic",
           "atomic_add_at into arrays of up to 65,536 items is atomic",
           (Edit(ADD_AT, _at(16, """
                if wide:
                    cowbuf_fetch_add_u64(<uint64_t*>(base + i * stride), sums[i])
                else:
                    cowbuf_add_fetch_u32(<uint32_t*>(base + i * stride), <uint32_t>sums[i])
                """), _at(16, """
                if wide:
                    (<uint64_t*>(base + i * stride))[0] += sums[i]
                else:
                    (<uint32_t*>(base + i * stride))[0] += <uint32_t>sums[i]
                """)),),
           (f"{ATOMIC_TESTS}[fork-q-combining]", f"{ATOMIC_TESTS}[fork-i-combining]")),
    Mutant("leak_add_at_table",
           "no call leaks C memory (the combining table is freed)",
           (Edit(ADD_AT, _at(8, """
                free(sums)
                """), _at(8, """
                pass
                """)),),
           (LEAK_TEST,)),
    Mutant("leak_converted_indices",
           "no call leaks C memory (converted indices are freed)",
           (Edit(ADD_AT, _at(8, """
                PyMem_Free(self.owned)
                """), _at(8, """
                pass
                """)),),
           (LEAK_TEST, "tests/test_torture.py::test_no_memory_leak_in_any_call_or_error_path")),
    Mutant("freeze_not_protected",
           "frozen memory is read-only in hardware and sealed",
           (Edit(REGION, _at(12, """
                rc = cowbuf_shm_protect_readonly(m.addr, <size_t>m.size, m.fd)
                """), _at(12, """
                rc = 0
                """)),),
           ("tests/test_region.py::test_frozen_memory_cannot_be_written_through_its_fd",
            "tests/test_fork.py::test_frozen_region_is_read_only_in_hardware_in_a_forked_child")),
    Mutant("ranges_filled_with_zeros",
           "the README's examples print what they compute",
           (Edit("cowbuf/_construct.pxi", _at(8, """
                _store(tc, p + i * size, v)
                """), _at(8, """
                pass
                """)),),
           ("tests/test_readme.py::test_readme_example_runs[0]",)),
    Mutant("iterables_filled_with_zeros",
           "the README's examples print what they compute",
           (Edit("cowbuf/_construct.pxi", _at(8, """
                _store(tc, p + count * size, v)
                """), _at(8, """
                pass
                """)),),
           ("tests/test_readme.py::test_readme_example_runs[2]",)),
    Mutant("closed_is_type_error",
           "any use after close() is ValueError",
           (Edit(REGION, _at(4, """
                raise ValueError("operation on a closed region")
                """), _at(4, """
                raise TypeError("operation on a closed region")
                """)),),
           ("tests/fuzz/test_fuzz_corpus.py::test_seed_corpus_runs_clean[0]",
            "tests/test_stress.py::test_use_after_close_is_value_error_in_every_method[getitem]")),
    Mutant("gunicorn_preload_off",
           "gunicorn workers share the master's pages",
           (PRELOAD_OFF,), (GUNICORN_TEST,)),
    Mutant("gunicorn_list_preloaded",
           "reading the data in the workers does not copy it",
           APP_LIST, (GUNICORN_TEST,)),
    Mutant("gunicorn_list_no_preload",
           "gunicorn workers share the master's pages",
           (*APP_LIST, PRELOAD_OFF), (GUNICORN_TEST,)),

    # -- issue 16: the thirteen defects of 0.1.0, each brought back ------------------
    Mutant("gc_clears_regions",  # 1
           "a buffer released from cyclic garbage finds its owner whole",
           (Edit(REGION, "@cython.no_gc\n@cython.final\ncdef class Region:\n",
                 "@cython.final\ncdef class Region:\n"),
            Edit("cowbuf/_array.pxi", "@cython.no_gc\n@cython.final\ncdef class Array:\n",
                 "@cython.final\ncdef class Array:\n")),
           ("tests/test_region.py::test_buffer_released_from_cyclic_garbage_finds_its_owner_whole",
            "tests/test_stress.py::test_exports_released_by_the_collector_are_counted_off"),
           switch=False),
    Mutant("frozen_after_mprotect",  # 2
           "a write racing freeze() raises TypeError, never faults",
           (Edit(REGION, _at(8, """
                m.readonly = True
                """), ""),
            Edit(REGION, _at(8, """
                if rc == -1:
                    m.readonly = False
                    raise _os_error(err, "cannot freeze the region")
                """), _at(8, """
                m.readonly = True
                if rc == -1:
                    m.readonly = False
                    raise _os_error(err, "cannot freeze the region")
                """))),
           ("tests/test_region.py::"
            "test_writes_racing_freeze_from_another_thread_raise_and_never_fault",
            "tests/test_stress.py::"
            "test_every_write_racing_freeze_close_and_fork_lands_or_raises[0]")),
    Mutant("init_twice",  # 3
           "a re-entrant Region.__init__ is refused",
           (Edit(REGION, _at(8, """
                self._check_new()  # nbytes.__index__ may have called __init__ itself (#3)
                """), _at(8, """
                pass
                """)),
            Edit(REGION, _at(8, """
                self._check_new()  # so may the commit check, through the garbage collector
                """), _at(8, """
                pass
                """))),
           ("tests/test_region.py::"
            "test_init_is_refused_once_the_region_is_attached_even_from_its_own_size",)),
    Mutant("small_pickle_unchecked",  # 4
           "crafted pickle data raises ValueError at once",
           (Edit("cowbuf/_pickling.pxi", _at(8, """
                if small and n >= PAGE:
                    # only allocations under a page are carved from arenas
                    raise ValueError(f"bad pickle data: a small region of {n} bytes")
                """), _at(8, """
                pass
                """)),),
           ("tests/test_sharing.py::test_region_reconstructor_rejects_inconsistent_data_at_once",)),
    Mutant("drain_registered_lazily",  # 5
           "a message a child sends just before it exits arrives",
           (Edit("cowbuf/_sharing.py", _lines("""
                _register_drain()
                # a child made by os.fork() inherits the parent's finalizer, which ignores any
                # process but the parent
                os.register_at_fork(after_in_child=_register_drain)
                util.register_after_fork(_drain_in_children, _register_drain)
                """), ""),
            Edit("cowbuf/_sharing.py", _at(4, """
                if _PROC_FDS:
                    where = _core._outbox_send(mapping)
                """), _at(4, """
                if _PROC_FDS:
                    _register_drain()  # on the first send, as 0.1.0 did
                    where = _core._outbox_send(mapping)
                """))),
           ("tests/test_sharing.py::"
            "test_array_put_on_a_queue_by_a_child_that_exits_at_once_arrives[fork]",)),
    Mutant("no_region_identity",  # 6
           "a region that comes back is the same object",
           (Edit(REGION, _at(4, """
                ref = mapping.regions.get(offset)
                """), _at(4, """
                ref = None
                """)),),
           ("tests/test_sharing.py::test_a_region_that_comes_back_is_the_same_object[fork-10]",)),
    Mutant("pins_kept_at_fork",  # 7
           "a child forked during a GIL-free write can close and freeze",
           (Edit(REGION, _at(4, """
                for region in _pinned:
                    region._write_pins = 0
                """), _at(4, """
                pass
                """)),),
           ("tests/test_fork.py::test_a_child_forked_during_a_gil_free_write_can_close_and_freeze",)),
    Mutant("freeze_small_in_place",  # 8
           "frozen small arrays and counters cannot be written through their fd",
           (Edit(REGION, _at(12, """
                self._move_to_frozen_arena()
                return
                """), _at(12, """
                m.readonly = True
                return
                """)),),
           ("tests/test_region.py::test_frozen_memory_cannot_be_written_through_its_fd",)),
    Mutant("half_float_is_integer",  # 9
           "float16 data is not taken for uint16",
           (Edit("cowbuf/_typecodes.pxi", _at(4, """
                if code in b"bhilqn":
                    kind = 1
                elif code in b"BHILQN":
                    kind = 2
                elif code in b"efd":
                    kind = 3
                else:
                    return 0
                """), _at(4, """
                if code in b"bhilqn":
                    kind = 1
                elif code in b"BHILQNe":
                    kind = 2
                elif code in b"fd":
                    kind = 3
                else:
                    return 0
                """)),),
           ("tests/test_numpy.py::test_float16_data_is_not_taken_for_uint16",)),
    Mutant("hand_off_held_after_drop",  # 10
           "a received hand-off is let go when the sender drops it",
           (Edit(REGION, _at(12, """
                if m.out_slot >= 0:
                    _outbox.release_if_received(m)
                """), _at(12, """
                pass
                """)),),
           ("tests/test_sharing.py::"
            "test_memory_of_a_received_hand_off_goes_when_the_sender_drops_it",)),
    Mutant("lock_around_sends",  # 11
           "a signal handler may send while the main thread sends",
           (Edit("cowbuf/_sharing.py", "def _route(mapping: Any) -> tuple[str, Any]:\n",
                 _lines("""
                _send_lock = __import__("threading").Lock()


                def _route(mapping: Any) -> tuple[str, Any]:
                    with _send_lock:
                        return _route_unlocked(mapping)


                def _route_unlocked(mapping: Any) -> tuple[str, Any]:
                """)),),
           ("tests/test_sharing.py::test_a_signal_handler_may_send_while_the_main_thread_sends",)),
    Mutant("every_fd_with_the_start",  # 12
           "a worker starts under forkserver with hundreds of regions",
           (Edit("cowbuf/_sharing.py", "START_FDS = 64\n", "START_FDS = 1 << 20\n"),),
           ("tests/test_sharing.py::"
            "test_a_worker_starts_with_hundreds_of_regions_in_its_arguments[forkserver]",)),
    Mutant("no_fd_drop_when_out_of_fds",  # 13
           "a receiver out of fds still gets its task",
           (Edit("cowbuf/_sharing.py", _at(4, """
try:
    return int(open_fd())
except OSError as exc:
    if exc.errno not in (errno.EMFILE, errno.ENFILE) or not _core._drop_received_fds():
        raise
return int(open_fd())
"""), _at(4, """
                return int(open_fd())
                """)),),
           ("tests/test_sharing.py::test_a_receiver_out_of_fds_still_gets_its_task",)),
]


# -- applying mutants -----------------------------------------------------------------

def _find(text: str, edit: Edit) -> int:
    """Where `edit.old` starts in `text`: it must occur there once, from a line start."""
    starts = [m.start() for m in re.finditer(re.escape(edit.old), text)
              if m.start() == 0 or text[m.start() - 1] == "\n"]
    if len(starts) != 1:
        raise SystemExit(f"mutants: {edit.path}: the text to replace occurs {len(starts)} "
                         f"times (must be once; the source changed?):\n{edit.old}")
    return starts[0]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _check_block(text: str, start: int, edit: Edit, name: str) -> None:
    """A switched edit must not end in the middle of a block: the next line of code
    may not be indented deeper than its first line."""
    after = [line for line in text[start + len(edit.old):].splitlines() if line.strip()]
    if after and _indent(after[0]) > _indent(edit.old):
        raise SystemExit(f"mutants: {name}: a switched edit ends inside a block:\n{edit.old}")


def _switched(edit: Edit, k: int, name: str) -> str:
    """`edit` as a statement that runs the mutant when _MUTANT == k, else the original."""
    if not edit.old.endswith("\n") or (edit.new and not edit.new.endswith("\n")):
        raise SystemExit(f"mutants: {name}: a switched edit must be whole lines")
    for text in (edit.old, edit.new):
        lines = text.strip().splitlines()
        if lines and (lines[0].split()[0] in ("elif", "else:", "except", "except:", "finally:")
                      or lines[-1].rstrip().endswith(":")):
            raise SystemExit(f"mutants: {name}: a switched edit must be whole statements")
    pad = " " * _indent(edit.old)
    new = textwrap.dedent(edit.new) or "pass\n"
    return (f"{pad}if _MUTANT == {k}:  # mutant {name}\n"
            + textwrap.indent(new, pad + "    ")
            + f"{pad}else:\n"
            + textwrap.indent(textwrap.dedent(edit.old), pad + "    "))


def apply_switched(tree: Path, mutants: list[tuple[int, Mutant]]) -> None:
    """Compile every mutant of `mutants` into the extension of `tree`, behind its switch."""
    by_file: dict[str, list[tuple[int, Edit, int, Mutant]]] = {}
    for k, m in mutants:
        for e in m.edits:
            by_file.setdefault(e.path, []).append((0, e, k, m))
    for path, edits in by_file.items():
        file = tree / path
        text = file.read_text()
        placed = sorted((_find(text, e), e, k, m) for _, e, k, m in edits)
        for start, e, _, m in placed:
            _check_block(text, start, e, m.name)
        for (start, e, _, _), (next_start, *_) in itertools.pairwise(placed):
            if start + len(e.old) > next_start:
                raise SystemExit(f"mutants: overlapping edits in {path}")
        for start, e, k, m in reversed(placed):
            text = text[:start] + _switched(e, k, m.name) + text[start + len(e.old):]
        file.write_text(text)
    switch_file = tree / SWITCH_FILE
    switch_file.write_text(switch_file.read_text() + SWITCH)


def apply_plain(tree: Path, mutant: Mutant) -> dict[Path, str]:
    """Apply `mutant` as text; returns the original contents, to revert."""
    saved: dict[Path, str] = {}
    for e in mutant.edits:
        file = tree / e.path
        text = file.read_text()
        saved.setdefault(file, text)
        start = _find(text, e)
        file.write_text(text[:start] + e.new + text[start + len(e.old):])
    return saved


def revert(saved: dict[Path, str]) -> None:
    for file, text in saved.items():
        file.write_text(text)


# -- the scratch tree -----------------------------------------------------------------

def say(message: str) -> None:
    print(f"== mutants [{time.monotonic() - STARTED:5.0f}s] {message}", flush=True)


STARTED = time.monotonic()


def run(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def make_venv(scratch: Path) -> Path:
    python = os.environ.get("PYTHON", sys.executable)
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    venv = scratch / f"venv-{version}"
    if not (venv / "bin" / "python").exists():
        say(f"creating a virtualenv with Python {version}")
        run([python, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-U", "pip"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*project["build-system"]["requires"],
                    *project["project"]["optional-dependencies"]["test"]]
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements])
    return venv / "bin" / "python"


def copy_sources(dest: Path) -> None:
    """The source tree as it is (tracked and untracked files, not the ignored ones)."""
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build(tree: Path, python: Path, what: str) -> None:
    say(f"building {what}")
    log = tree / "build.log"
    with open(log, "w") as out:
        done = subprocess.run([str(python), "setup.py", "-q", "build_ext", "--inplace"],
                              cwd=tree, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.stdout.write(log.read_text()[-6000:])
        raise SystemExit(f"mutants: the build of {what} failed")


@dataclasses.dataclass
class Verdict:
    name: str
    outcome: str  # "killed", "SURVIVED", "ERROR"
    failed: list[str]
    seconds: float


FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def run_tests(tree: Path, python: Path, tests: tuple[str, ...], mutant: int) -> tuple[int, str]:
    # no bytecode cache: a mutant of a module and its revert may share a timestamp
    env = dict(os.environ, PYTHONPATH=str(tree), COWBUF_MUTANT=str(mutant),
               PYTHONDONTWRITEBYTECODE="1")
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--no-header",
            *tests]
    try:
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=TEST_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        return -1000, out + f"\n(hung for {TEST_TIMEOUT} s)"
    return done.returncode, done.stdout + done.stderr


def verdict(name: str, tree: Path, python: Path, tests: tuple[str, ...], k: int) -> Verdict:
    started = time.monotonic()
    code, output = run_tests(tree, python, tests, k)
    seconds = time.monotonic() - started
    failed = FAILED_LINE.findall(output)
    # pytest: 1 tests failed; a negative code is a crash, -1000 a hang: all kills.
    # 2 to 5 (interrupted, internal error, usage error, no tests) prove nothing.
    if code == 1 or code < 0:
        return Verdict(name, "killed", failed or [f"exit status {code}"], seconds)
    if code == 0:
        return Verdict(name, "SURVIVED", [], seconds)
    print(output[-4000:])
    return Verdict(name, "ERROR", [f"pytest exit status {code}"], seconds)


def baseline(tree: Path, python: Path, mutants: list[Mutant]) -> None:
    """The mutants' tests pass with no mutant switched on, or their kills mean nothing."""
    tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
    say(f"baseline: {len(tests)} targeted tests with no mutant switched on")
    code, output = run_tests(tree, python, tests, 0)
    if code != 0:
        print(output[-6000:])
        raise SystemExit("mutants: the targeted tests fail without any mutant: fix that first")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests")
    parser.add_argument("--separate", action="store_true",
                        help="a build of its own for each mutant of the extension")
    args = parser.parse_args()
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
    selected = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.list:
        for m in MUTANTS:
            print(f"{m.name}: {m.breaks}")
            for t in m.tests:
                print(f"    {t}")
        return 0

    keep = os.environ.get("COWBUF_SCRATCH")
    scratch = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="cowbuf-mutants."))
    scratch.mkdir(parents=True, exist_ok=True)
    verdicts: list[Verdict] = []
    try:
        python = make_venv(scratch)
        # every mutant is checked for applying cleanly before anything is built
        for m in selected:
            for e in m.edits:
                _find((ROOT / e.path).read_text(), e)
        numbered = list(enumerate(MUTANTS, 1))
        switched = [(k, m) for k, m in numbered if m in selected and m.compiled and m.switch
                    and not args.separate]
        tree = scratch / "switched"
        copy_sources(tree)
        apply_switched(tree, switched)
        build(tree, python, f"the extension with {len(switched)} switched mutants")
        baseline(tree, python, selected)
        for k, m in numbered:
            if m not in selected:
                continue
            if m.compiled and (not m.switch or args.separate):
                own = scratch / "own"
                copy_sources(own)
                apply_plain(own, m)
                build(own, python, f"mutant {m.name}")
                v = verdict(m.name, own, python, m.tests, 0)
            elif m.compiled:
                v = verdict(m.name, tree, python, m.tests, k)
            else:
                saved = apply_plain(tree, m)
                try:
                    v = verdict(m.name, tree, python, m.tests, 0)
                finally:
                    revert(saved)
            verdicts.append(v)
            say(f"{v.outcome:8} {m.name} ({v.seconds:.0f} s): {', '.join(v.failed) or '-'}")
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    width = max(len(v.name) for v in verdicts)
    for v in verdicts:
        print(f"{v.name:<{width}}  {v.outcome:8}  {v.seconds:5.0f} s  "
              f"{'; '.join(v.failed) if v.failed else 'no test failed'}")
    bad = [v.name for v in verdicts if v.outcome != "killed"]
    print(f"\n{len(verdicts) - len(bad)} of {len(verdicts)} mutants killed"
          f" in {time.monotonic() - STARTED:.0f} s"
          + (f"; not killed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
