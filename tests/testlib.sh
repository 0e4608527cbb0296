# Helpers for the CLI test scripts (tests/cli_*.sh source it; CTest does not run it). Sets
# BIN, DATA, S (stories260K folder), G (its GGUF), tmp (removed on exit) and the counters.
BIN=${BITLLM_BIN:?}
DATA=${BITLLM_DATA:-../shared}
S=$DATA/models/stories260K
G=$S/stories260K.gguf
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
# True when FILE holds no sanitizer report.
clean_err() { ! grep -q "AddressSanitizer\|LeakSanitizer\|runtime error:" "$1"; }
# expect_fail NAME PATTERN CMD...: exit 1..127 (no signal), PATTERN (extended regex) on
# stderr, nothing on stdout, no sanitizer report.
expect_fail() {
  local name=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -Eq -- "$pat" "$tmp/err" && [ ! -s "$tmp/out" ] &&
     clean_err "$tmp/err"; then
    ok "$name (rc $rc)"
  else
    bad "$name (rc $rc, stdout $(head -c 80 "$tmp/out" | tr '\n' ' '): $(head -c 300 "$tmp/err" | tr '\n' ' '))"
  fi
}
# expect_usage NAME TEXT CMD...: exit 2 (a command line that cannot run), TEXT (fixed string)
# on stderr, nothing on stdout.
expect_usage() {
  local name=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$pat" "$tmp/err" && [ ! -s "$tmp/out" ]; then
    ok "$name"
  else
    bad "$name (rc $rc: $(head -c 300 "$tmp/err" | tr '\n' ' '))"
  fi
}
finish() {
  echo "$passes passed, $fails failed"
  [ $fails -eq 0 ]
}
