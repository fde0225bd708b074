# shellcheck shell=bash
# Helpers shared by tools/sanitize.sh and tools/fuzz.sh (sourced, not run): a scratch
# directory with its own virtualenv and copies of the source tree built in place, so
# that nothing in the source tree (its venv, its built extension) is touched.
#
# Environment: PYTHON (default python3), COWBUF_SCRATCH (keep and reuse this
# directory instead of a temporary one).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
libasan=$(gcc -print-file-name=libasan.so)
# Preloaded with libasan so that ASan's __cxa_throw interceptor finds the real one: a
# C++ extension (matplotlib's, in the benchmark smoke test) that throws otherwise
# aborts with "CHECK failed: ... real___cxa_throw".
libstdcxx=$(gcc -print-file-name=libstdc++.so)

if [[ -n ${COWBUF_SCRATCH:-} ]]; then
    mkdir -p "$COWBUF_SCRATCH"
    scratch=$(cd "$COWBUF_SCRATCH" && pwd)
else
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/cowbuf-${tool:-tools}.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
fi
started=$SECONDS

# use_python PYTHON: make and use the virtualenv of this interpreter.
use_python() {
    python=$1
    venv=$scratch/venv-$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
}
use_python "$python"

say() { printf '== %s [%4ds] %s\n' "${tool:-tools}" $((SECONDS - started)) "$*"; }

# make_venv EXTRA_REQUIREMENT...: the venv, with cowbuf's build and test requirements
# (read from pyproject.toml) and the extra ones.
# shellcheck disable=SC2120  # the extra requirements are optional
make_venv() {
    if [[ ! -x $venv/bin/python ]]; then
        say "creating a virtualenv with $("$python" -V)"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install -q -U pip
    fi
    local requirements
    mapfile -t requirements < <("$venv/bin/python" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print(*project["build-system"]["requires"], sep="\n")
print(*project["project"]["optional-dependencies"]["test"], sep="\n")
PY
    )
    "$venv/bin/pip" install -q "${requirements[@]}" "$@"
}

# copy_sources DIR: the source tree as it is (tracked and untracked files, not the
# ignored ones such as build products and venvs).
copy_sources() {
    rm -rf "$1" && mkdir -p "$1"
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # shellcheck disable=SC2016  # the inner script's own variables
        (cd "$root" && git ls-files -z --cached --others --exclude-standard \
            | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
            | tar --null -T - -cf -) | tar -C "$1" -xf -
    else
        (cd "$root" && tar --exclude='*.so' --exclude='_core.c' --exclude='./build' \
            --exclude='./.venv*' -cf - .) | tar -C "$1" -xf -
    fi
}

# build DIR [VAR=VALUE...]: build cowbuf._core in place in DIR with that environment
# (COWBUF_SANITIZE=1 for AddressSanitizer and UndefinedBehaviorSanitizer).
build() {
    local src=$1; shift
    say "building $(basename "$src") ${*:-(plain)}"
    (cd "$src" && env "$@" "$venv/bin/python" setup.py -q build_ext --inplace \
        >"$src/build.log" 2>&1) || { cat "$src/build.log"; exit 1; }
}

# asan_env LOGDIR: the environment for running Python with the ASan build.
#   detect_leaks=1: LeakSanitizer checks every process that exits normally; CPython
#     does not free its own objects at exit, so tools/lsan-python.supp suppresses the
#     leaks allocated by CPython's (and numpy's...) own allocators. What is left is
#     memory malloc'd by cowbuf and never freed.
#   allocator_may_return_null=1: tests ask for impossible sizes and expect
#     MemoryError, not an ASan abort.
#   handle_segv/handle_sigbus=0: tests check that a write to frozen memory dies of
#     SIGSEGV; any other crash still fails the test that caused it.
#   log_path: the reports of every process, including workers that tests kill or
#     expect to fail, go to files that asan_reports checks.
# Add PYTHONMALLOC=malloc for ASan to see overflows of Python objects (bytes that
# cowbuf fills, small buffers): slower, and its quarantine grows memory.
asan_env() {
    echo "LD_PRELOAD=$libasan:$libstdcxx" \
        "ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:handle_segv=0:handle_sigbus=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_init_order=1:log_path=$1/asan" \
        "LSAN_OPTIONS=suppressions=$root/tools/lsan-python.supp:print_suppressions=0" \
        "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$1/ubsan"
}

# asan_reports LOGDIR: print the reports there; fail if there are any.
asan_reports() {
    if compgen -G "$1/*" >/dev/null; then
        for f in "$1"/*; do echo "--- $f"; cat "$f"; done
        return 1
    fi
}
