#!/usr/bin/env bash
# Bounded fuzzing of cowbuf's public API (tests/fuzz/fuzz_api.py) with atheris:
#   1. about a minute of coverage-guided fuzzing per core, from the seed corpus
#      tests/fuzz/corpus, against a plain build;
#   2. every input of the resulting corpus replayed against an AddressSanitizer +
#      UndefinedBehaviorSanitizer build (gcc's ASan does not coexist with atheris's
#      libFuzzer, so memory errors that do not crash are caught here).
# Exits non-zero on any finding: a crash, an unexpected exception, a failed check, a
# sanitizer report. Crashing inputs are printed (base64) and copied to fuzz-crashes/
# in the source tree (COWBUF_FUZZ_CRASHES: elsewhere), which outlives the scratch
# directory; add them to tests/fuzz/corpus once fixed, as regression seeds.
#
# It proves it ran: it fails unless every worker executed at least
# COWBUF_FUZZ_MIN_UNITS inputs (default: 10 a second; atheris missing or broken runs
# none), and unless the replay ran every input of the corpus.
#
# Self-contained: a scratch directory with its own virtualenv (atheris, numpy and the
# build requirements from PyPI) and its own builds; the source tree is left untouched.
#
#   tools/fuzz.sh                        60 s on each of 2 workers
#   COWBUF_FUZZ_SECONDS=600 COWBUF_FUZZ_JOBS=4 tools/fuzz.sh
#   COWBUF_SCRATCH=DIR tools/fuzz.sh     keep the scratch directory (corpus, crashes)
set -euo pipefail
tool=fuzz.sh
# shellcheck source-path=SCRIPTDIR source=_scratch.sh
source "$(dirname "$0")/_scratch.sh"

seconds=${COWBUF_FUZZ_SECONDS:-60}
jobs=${COWBUF_FUZZ_JOBS:-2}
min_units=${COWBUF_FUZZ_MIN_UNITS:-$((10 * seconds))}
kept=${COWBUF_FUZZ_CRASHES:-$root/fuzz-crashes}

make_venv atheris
"$venv/bin/python" -c 'import atheris' || { say "atheris does not import: cannot fuzz"; exit 1; }
plain=$scratch/plain
asan=$scratch/asan
copy_sources "$plain"
copy_sources "$asan"
build "$plain"
build "$asan" COWBUF_SANITIZE=1

corpus=$scratch/corpus
artifacts=$scratch/crashes
mkdir -p "$corpus" "$artifacts"
status=0

say "fuzzing for ${seconds} s with $jobs workers"
pids=()
for ((job = 0; job < jobs; job++)); do
    (cd "$plain" && PYTHONPATH=$plain exec "$venv/bin/python" -W error tests/fuzz/fuzz_api.py \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=4096 \
        -seed=$((job + 1 + RANDOM)) -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "$corpus" "$plain/tests/fuzz/corpus" \
        >"$scratch/fuzz-$job.log" 2>&1) &
    pids+=($!)
done
for ((job = 0; job < jobs; job++)); do
    if ! wait "${pids[$job]}"; then
        status=1
        say "worker $job: FINDING"
        grep -v -E '^#[0-9]+.*(NEW|REDUCE|pulse)' "$scratch/fuzz-$job.log" | tail -60
    fi
    units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/fuzz-$job.log" | tail -1)
    say "worker $job: ${units:-no} inputs executed"
    if [[ ${units:-0} -lt $min_units ]]; then
        status=1
        say "worker $job: fewer than $min_units inputs: the fuzzer did not really run"
        tail -20 "$scratch/fuzz-$job.log"
    fi
done
if compgen -G "$artifacts/*" >/dev/null; then
    status=1
    mkdir -p "$kept"
    for f in "$artifacts"/*; do
        cp "$f" "$kept/"
        say "crashing input $(basename "$f"): $(base64 -w0 "$f")"
    done
    say "crashing inputs kept in $kept; replay: python tests/fuzz/fuzz_api.py --trace FILE"
fi

logs=$scratch/asan-logs
rm -rf "$logs" && mkdir -p "$logs"
inputs=$(find "$corpus" "$asan/tests/fuzz/corpus" -type f | wc -l)
say "replaying $inputs inputs under ASan+UBSan"
# shellcheck disable=SC2046
if ! (cd "$asan" && env $(asan_env "$logs") PYTHONMALLOC=malloc PYTHONPATH="$asan" \
        "$venv/bin/python" -W error \
        tests/fuzz/fuzz_api.py --replay "$corpus" "$asan/tests/fuzz/corpus") \
        | tee "$scratch/replay.log"; then
    status=1
    say "replay under ASan+UBSan: FAILED"
fi
if ! grep -qx "replayed $inputs inputs" "$scratch/replay.log"; then
    status=1
    say "replay under ASan+UBSan: not every input ran"
fi
if ! asan_reports "$logs"; then
    status=1
    say "replay under ASan+UBSan: REPORTS (above)"
fi

say "done: $([[ $status == 0 ]] && echo clean || echo FINDINGS)"
exit $status
