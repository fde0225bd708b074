#!/usr/bin/env bash
# Bounded fuzzing of cowbuf's public API (tests/fuzz/fuzz_api.py) with atheris:
#   1. about a minute of coverage-guided fuzzing per core, from the seed corpus
#      tests/fuzz/corpus, against a plain build;
#   2. every input of the resulting corpus replayed against an AddressSanitizer +
#      UndefinedBehaviorSanitizer build (gcc's ASan does not coexist with atheris's
#      libFuzzer, so memory errors that do not crash are caught here).
# Exits non-zero on any finding: a crash, an unexpected exception, a failed check, a
# sanitizer report. Crashing inputs are printed (base64) and kept in the scratch
# directory; add them to tests/fuzz/corpus once fixed, as regression seeds.
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

make_venv atheris
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
    grep -E '^(stat::number_of_executed_units|Done )' "$scratch/fuzz-$job.log" | tail -1 \
        | sed "s/^/   worker $job: /"
done
if compgen -G "$artifacts/*" >/dev/null; then
    status=1
    for f in "$artifacts"/*; do
        say "crashing input $(basename "$f"): $(base64 -w0 "$f")"
        say "  replay: python tests/fuzz/fuzz_api.py --trace FILE"
    done
fi

logs=$scratch/asan-logs
rm -rf "$logs" && mkdir -p "$logs"
say "replaying $(find "$corpus" "$plain/tests/fuzz/corpus" -type f | wc -l) inputs under ASan+UBSan"
# shellcheck disable=SC2046
if ! (cd "$asan" && env $(asan_env "$logs") PYTHONMALLOC=malloc PYTHONPATH="$asan" \
        "$venv/bin/python" -W error \
        tests/fuzz/fuzz_api.py --replay "$corpus" "$asan/tests/fuzz/corpus"); then
    status=1
    say "replay under ASan+UBSan: FAILED"
fi
if ! asan_reports "$logs"; then
    status=1
    say "replay under ASan+UBSan: REPORTS (above)"
fi

say "done: $([[ $status == 0 ]] && echo clean || echo FINDINGS)"
exit $status
