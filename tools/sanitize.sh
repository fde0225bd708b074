#!/usr/bin/env bash
# Sanitizer passes: build cowbuf with AddressSanitizer and UndefinedBehaviorSanitizer
# and run the whole test suite under it, with LeakSanitizer on (suppressions for
# CPython's own: tools/lsan-python.supp); run the core tests again with the garbage
# collector at every allocation (gc.set_threshold(1)), where a buffer released by
# the collector finds its owner torn down if it can; then run a valgrind memcheck
# pass over the single-process tests with a plain build, definite leaks included.
# Exits non-zero on any failing test and on any sanitizer or valgrind report,
# including reports from child processes that a test let die (reports go to log
# files, which are checked at the end).
#
# Self-contained: copies the source tree to a scratch directory, makes a virtualenv
# there, installs the test dependencies from PyPI and builds the extensions in place.
#
#   tools/sanitize.sh                      every pass
#   tools/sanitize.sh asan [-- PYTEST_ARGS]   only the ASan/UBSan pass (or: gc, valgrind,
#                                          or several: asan,gc)
#   PYTHON=python3.12 tools/sanitize.sh    another CPython (VALGRIND_PYTHON for the
#                                          valgrind pass; default: 3.12+ if found)
#   COWBUF_SCRATCH=DIR tools/sanitize.sh   keep (and reuse) the scratch directory
set -euo pipefail
tool=sanitize.sh
# shellcheck source-path=SCRIPTDIR source=_scratch.sh
source "$(dirname "$0")/_scratch.sh"

passes=asan,gc,valgrind
if [[ $# -gt 0 && $1 != -- ]]; then passes=$1; shift; fi
[[ ${1:-} == -- ]] && shift
extra=("$@")

status=0
# The single-process tests of the core: every Region, Array and Counter method and
# error path, the numpy exports, and the lifetime torture (forked children included).
# (tools/fuzz.sh replays the fuzz corpus with PYTHONMALLOC=malloc.)
core_tests=(tests/test_region.py tests/test_array.py tests/test_numpy.py
            tests/test_atomic.py tests/test_torture.py tests/test_strarray.py
            tests/test_frozendict.py)

# asan_build: the ASan+UBSan build in $scratch/asan (made once for both passes)
asan_build() {
    make_venv
    src=$scratch/asan
    if [[ ! -f $src/.built ]]; then
        copy_sources "$src"
        build "$src" COWBUF_SANITIZE=1
        touch "$src/.built"
    fi
}

# -- AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer -----------------
if [[ ,$passes, == *,asan,* ]]; then
    asan_build
    logs=$scratch/asan-logs
    rm -rf "$logs" && mkdir -p "$logs"
    # PYTHONPATH reaches every subprocess: spawned workers, the programs the tests
    # start, gunicorn. -X dev adds CPython's own checks (and faulthandler).
    # The gunicorn test is left out: it asserts that three workers' private memory
    # grows by under 5 MB in all, and ASan's allocator alone (chunk headers, metadata
    # and quarantine written after the fork) adds 1-3 MB per worker; so is the same
    # check of three workers reading a FrozenDict (0.5 MB each). (The same
    # property for forked children, tests/test_fork.py, does run here.) So are the
    # engines (Ray's and Dask's own processes under an ASan runtime they were not built
    # for) and the benchmarks' smoke run: what of cowbuf they reach, protocol 5 and the
    # by-reference hand-offs, tests/test_pickle5.py and tests/test_sharing.py run here.
    say "ASan+UBSan: the whole suite but gunicorn, the engines and the benchmarks"
    # shellcheck disable=SC2046
    if ! (cd "$src" && env $(asan_env "$logs") PYTHONPATH="$src" COWBUF_SANITIZER=asan \
            "$venv/bin/python" -X dev -W error -m pytest -q -p no:cacheprovider \
            --deselect tests/test_gunicorn.py::test_preloaded_workers_read_everything_without_copying \
            --deselect tests/test_frozendict.py::test_three_forked_worker_processes_that_look_up_every_key_stay_shared \
            --ignore tests/test_engines.py --ignore tests/test_bench.py "${extra[@]}"); then
        say "ASan+UBSan: tests failed"
        status=1
    fi
    # Again for the single-process tests, with every Python object from malloc, where
    # ASan sees an overflow of a bytes object or a buffer that cowbuf fills.
    say "ASan+UBSan with PYTHONMALLOC=malloc: ${core_tests[*]}"
    # shellcheck disable=SC2046
    if ! (cd "$src" && env $(asan_env "$logs") PYTHONMALLOC=malloc PYTHONPATH="$src" \
            COWBUF_SANITIZER=asan "$venv/bin/python" -X dev -W error -m pytest -q \
            -p no:cacheprovider -m "not slow" -k "not processes" "${core_tests[@]}" "${extra[@]}"); then
        say "ASan+UBSan with PYTHONMALLOC=malloc: tests failed"
        status=1
    fi
    if asan_reports "$logs"; then
        say "ASan+UBSan+LSan: no reports"
    else
        say "ASan+UBSan+LSan: REPORTS (above)"
        status=1
    fi
fi

# -- the garbage collector at every allocation ---------------------------------------
# Every allocation may run the collector, and with it finalizers and tp_clear of
# cyclic garbage: in the middle of any call of cowbuf that allocates. The core's
# tests, the fuzz corpus (reference cycles through exports, threads, forks) and the
# stress tests run so, under ASan, in every process they start (sitecustomize).
if [[ ,$passes, == *,gc,* ]]; then
    asan_build
    logs=$scratch/gc-logs
    rm -rf "$logs" && mkdir -p "$logs"
    stress=$scratch/gc-stress
    mkdir -p "$stress"
    cat > "$stress/sitecustomize.py" <<'PY'
import gc
import os

gc.set_threshold(int(os.environ["COWBUF_GC_THRESHOLD"]))
PY
    gc_tests=(tests/test_region.py tests/test_torture.py tests/test_stress.py tests/fuzz)
    say "gc.set_threshold(1) under ASan+UBSan: ${gc_tests[*]}"
    # shellcheck disable=SC2046
    if ! (cd "$src" && env $(asan_env "$logs") PYTHONPATH="$src:$stress" COWBUF_GC_THRESHOLD=1 \
            COWBUF_SANITIZER=asan "$venv/bin/python" -W error -m pytest -q \
            -p no:cacheprovider -m "not slow" "${gc_tests[@]}" "${extra[@]}"); then
        say "gc stress: tests failed"
        status=1
    fi
    if asan_reports "$logs"; then
        say "gc stress: no reports"
    else
        say "gc stress: REPORTS (above)"
        status=1
    fi
fi

# -- valgrind memcheck -------------------------------------------------------------
# CPython 3.11 hands valgrind undefined values of its own (see valgrind-python.supp):
# a newer CPython, when there is one, gives a cleaner run.
newer_python() {
    local candidate
    for candidate in ${VALGRIND_PYTHON:-} python3.12 python3.13 \
            "$(pyenv root 2>/dev/null)"/versions/3.1[23]*/bin/python3; do
        if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "$python"
}

if [[ ,$passes, == *,valgrind,* ]]; then
    if ! command -v valgrind >/dev/null && command -v apt-get >/dev/null; then
        say "installing valgrind"
        apt-get install -y -q valgrind >/dev/null || { apt-get update -q >/dev/null &&
            apt-get install -y -q valgrind >/dev/null; }
    fi
    use_python "$(newer_python)"
    make_venv
    src=$scratch/valgrind
    copy_sources "$src"
    build "$src" CFLAGS=-g
    logs=$scratch/valgrind-logs
    rm -rf "$logs" && mkdir -p "$logs"
    # The core's own tests (ASan covers the numpy and Arrow exports; tracemalloc is of
    # no use under valgrind).
    subset=(tests/test_region.py tests/test_array.py tests/test_atomic.py tests/test_torture.py
            tests/test_strarray.py tests/test_frozendict.py)
    say "valgrind memcheck with $("$python" -V): ${subset[*]}"
    # PYTHONMALLOC=malloc: every Python allocation is one memcheck sees. Definite leaks
    # are errors (CPython's own at exit are in valgrind-python.supp); memory still
    # reachable at exit is CPython's way, not a leak.
    if ! (cd "$src" && PYTHONMALLOC=malloc PYTHONPATH="$src" COWBUF_SANITIZER=valgrind \
            valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
            --show-leak-kinds=definite --errors-for-leak-kinds=definite \
            --num-callers=40 --suppressions="$root/tools/valgrind-python.supp" \
            --log-file="$logs/memcheck.%p" \
            "$venv/bin/python" -W error -m pytest -q -p no:cacheprovider \
            -m "not slow" -k "not processes and not memory_leak and not arrow and not polars" \
            "${subset[@]}" "${extra[@]}"); then
        say "valgrind: tests failed or memcheck reported errors"
        status=1
    fi
    # A process that ran to its end has an ERROR SUMMARY; one that exec'd another
    # program (a subprocess, a spawn worker) or was killed has none, but any error
    # it met before is in its log.
    bad=$(grep -lE "ERROR SUMMARY: [1-9]|^==[0-9]+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|[0-9,]+ bytes in [0-9,]+ blocks are definitely lost)" \
        "$logs"/memcheck.* || true)
    if [[ -n $bad ]]; then
        for f in $bad; do echo "--- $f"; cat "$f"; done
        say "valgrind: ERRORS (above)"
        status=1
    else
        say "valgrind: no errors in $(find "$logs" -type f | wc -l) processes" \
            "($(grep -l "ERROR SUMMARY: 0 errors" "$logs"/memcheck.* | wc -l) ran to their end)"
    fi
fi

say "done: $([[ $status == 0 ]] && echo clean || echo FINDINGS)"
exit $status
