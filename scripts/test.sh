#!/usr/bin/env bash
# The whole test suite, as `make test` and CI (.ci/run) run it: the release tree, then the same
# tests built with AddressSanitizer + UBSan (BITLLM_TEST_QUICK=1 sizes) -- the second pass runs
# whatever happened in the first, so a failure on one machine never hides the sanitizer's
# findings. Ends with one line that gives both results; exits non-zero if either failed.
#
# Environment: JOBS (default nproc), BUILD (build), ASAN_BUILD (build-asan); CMAKE and CTEST
# name the tools (tests/cli_ci.sh replaces them with stubs).
set -u
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
CMAKE=${CMAKE:-cmake}
CTEST=${CTEST:-ctest}

# run_pass NAME DIR CMAKE-ARGS... -- ENV-ASSIGNMENTS...: configure, build and test one tree;
# sets result (a short phrase) and returns non-zero on any failure.
run_pass() {
  local name=$1 dir=$2; shift 2
  local cfg=() envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do cfg+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  envs=("$@")
  echo "== $name: configure and build ($dir)"
  if ! "$CMAKE" -S . -B "$dir" "${cfg[@]}" >/dev/null || ! "$CMAKE" --build "$dir" -j "$JOBS"; then
    result="build failed"
    return 1
  fi
  echo "== $name: tests"
  local log
  log=$(mktemp)
  (cd "$dir" && env "${envs[@]}" "$CTEST" --output-on-failure -j "$JOBS") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -n 1)
  local failed
  failed=$(awk '/The following tests FAILED:/{f=1;next} f&&/^[[:space:]]+[0-9]+ - /{print $3}' "$log" |
    tr '\n' ' ' | sed 's/ $//')
  rm -f "$log"
  if [ -n "$line" ]; then
    local nfail total
    nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    result="$((total - nfail))/$total passed"
    [ "$nfail" -gt 0 ] && result="$result, FAILED: ${failed:-$nfail tests}"
  else
    result="no test summary (ctest exit $rc)"
  fi
  [ "$rc" -eq 0 ] && [ -n "$line" ] && [ "$nfail" -eq 0 ]
}

status=0
run_pass release "$BUILD" -DCMAKE_BUILD_TYPE=Release -- || status=1
release=$result
run_pass sanitizer "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=Debug -DBITLLM_SANITIZE=ON -- \
  BITLLM_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 || status=1
sanitizer=$result
echo "make test: release: $release; sanitizer (ASan+UBSan): $sanitizer"
exit $status
