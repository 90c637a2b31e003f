#!/usr/bin/env bash
# Mutation fuzzing of every parser of untrusted files (tests/fuzz.rs): N mutated inputs per
# parser (default 1,000,000), from fixed seeds, under an 8 GiB address-space cap (set by the
# test binary itself), so a panic, an abort (a runaway allocation) or a hang (the overall time
# limit, TIMEOUT seconds, default 7200) fails the run. Inputs that panicked are written to
# target/fuzz-failures/.
#   tools/fuzz.sh [N] [FILTER]     (FILTER: a test name part, e.g. gguf)
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
filter=${2:-}
limit=${TIMEOUT:-7200}
# The test binary runs by itself, so cargo's build lock is free while it fuzzes.
binary=$(cargo test --release --test fuzz --no-run --message-format=json 2>/dev/null |
    grep '"name":"fuzz"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$binary" ] || { echo "tools/fuzz.sh: could not build the fuzz test binary" >&2; exit 1; }
echo "+ TESSERA_FUZZ_CASES=$cases $binary --nocapture (time limit ${limit} s)"
start=$SECONDS
status=0
TESSERA_FUZZ_CASES=$cases timeout "$limit" "$binary" --nocapture $filter >target/fuzz.log 2>&1 ||
    status=$?
grep -E '^fuzz |^test result' target/fuzz.log || true
case $status in
0) echo "tools/fuzz.sh: $cases cases per parser, no panic, abort or hang ($((SECONDS - start)) s)" ;;
124) echo "tools/fuzz.sh: HANG: not finished within $limit s (see target/fuzz.log)"; exit 1 ;;
*) echo "tools/fuzz.sh: FAILED with status $status (see target/fuzz.log)"; tail -20 target/fuzz.log; exit 1 ;;
esac
