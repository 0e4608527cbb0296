#!/usr/bin/env bash
# Runs every fuzz target of build-fuzz/ for a bounded time and prints the executions of each.
#   fuzz/run.sh [SECONDS [TARGET...]]     (default 20 s each, every target)
# Each target starts from its seed corpus (fuzz/corpus/<target>, read only) plus what earlier
# runs found (build-fuzz/corpus/<target>). A crash, leak, sanitizer report or timeout stops that
# target, leaves the input in build-fuzz/artifacts/<target>/ and makes the script exit 1.
set -u
cd "$(dirname "$0")/.."
secs=${1:-20}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors gguf llama2c config tokenizer_json tokenizer_bin model_dir tasks npy request)
B=${FUZZ_BUILD:-build-fuzz}
fail=0
printf '%-15s %10s %8s %7s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  bin=$B/fuzz_$t
  [ -x "$bin" ] || { echo "missing $bin (run make fuzz)"; exit 2; }
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t" "$B/logs"
  dict=(); [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  log=$B/logs/$t.log
  # one worker; -timeout: a unit slower than 10 s is a bug (inputs are a few KB)
  OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$B/artifacts/$t/" "${dict[@]}" \
    "$B/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'exec/s: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  units=$(grep -o 'corp: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ $rc -eq 0 ]; then res=ok; else res="FAILED (rc $rc, log $log)"; fail=1; fi
  printf '%-15s %10s %8s %7s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${units:-?}" "$res"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|==[0-9]+==' "$log" | head -20
  fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $fail
