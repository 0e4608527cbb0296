#!/usr/bin/env bash
# bitllm distill end to end on stories260K: teacher-generated data written and reused, the JSON
# summary, the output loads and runs, a run stopped (--stop-after) or killed (SIGKILL) and then
# resumed ends with the same model.safetensors bytes as an uninterrupted run, and clean failures.
set -u
BIN=${BITLLM_BIN:?}
DATA=${BITLLM_DATA:-../shared}
S=$DATA/models/stories260K/stories260K.gguf
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
if [ ! -e "$S" ]; then echo "SKIP: $S not found"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

$BIN quantize "$S" -o "$tmp/ob" -m onebit >/dev/null 2>&1
check "quantize the student" '[ -e "$tmp/ob/model.safetensors" ]'
printf 'Once upon a time there was a little cat. The cat liked to play in the sun.\n%.0s' {1..20} > "$tmp/eval.txt"

small="--seq 32 --batch 2 --lr 2e-3 --warmup 1"
j=$($BIN distill "$S" "$tmp/ob" -o "$tmp/d1" --generate 10 --gen-out "$tmp/gen.tok" $small --steps 4 \
    --eval-text "$tmp/eval.txt" --json 2>"$tmp/err1")
check "distill --generate --json" 'python3 -c "import json,sys;d=json.loads(sys.argv[1]);assert d[\"steps\"]==4 and d[\"tokens\"]==4*2*32 and d[\"loss_after\"]<d[\"loss_before\"] and d[\"seconds\"]>0;assert d[\"ppl_after\"][\"ppl\"]>1 and d[\"ppl_before\"][\"ppl\"]>1 and d[\"ppl_after\"][\"ctx\"]==32" "$j"'
check "progress lines on stderr" 'grep -q "^step 4/4  loss .* tok/s  ETA" "$tmp/err1"'
check "token file written" 'head -1 "$tmp/gen.tok" | grep -q "^# bitllm-tokens v1 rows=10 seq=32"'
$BIN distill "$S" "$tmp/ob" --generate 10 --gen-out "$tmp/gen2.tok" --seq 32 --steps 0 >/dev/null 2>&1
check "--steps 0 only generates (same rows for the same seed)" 'cmp -s "$tmp/gen.tok" "$tmp/gen2.tok"'
check "output is a loadable onebit model with post-LN" '$BIN info "$tmp/d1" --json | python3 -c "import json,sys;d=json.load(sys.stdin);assert d[\"config\"][\"dim\"]==64" && grep -q "\"post_ln\"" "$tmp/d1/config.json"'
check "output generates" '$BIN generate "$tmp/d1" -n 8 --temp 0 >/dev/null 2>&1'

# stopped after step 3 (checkpoint of step 2 kept), resumed: same bytes as without the stop
run() { $BIN distill "$S" "$tmp/ob" --data "$tmp/gen.tok" $small --steps 6 --save-every 2 "$@"; }
run -o "$tmp/full" >/dev/null 2>&1
run -o "$tmp/cut" --stop-after 3 >/dev/null 2>&1
check "--stop-after leaves a checkpoint and no model" '[ -e "$tmp/cut/checkpoint/state.safetensors" ] && [ ! -e "$tmp/cut/model.safetensors" ]'
run -o "$tmp/cut" --resume 2>"$tmp/err2" >/dev/null
check "resume reports the step" 'grep -q "resumed from step 2" "$tmp/err2"'
check "stopped + resumed == uninterrupted (bytes)" 'cmp -s "$tmp/full/model.safetensors" "$tmp/cut/model.safetensors"'
OMP_NUM_THREADS=2 run -o "$tmp/two" >/dev/null 2>&1
check "2 threads == 1 thread (bytes)" 'cmp -s "$tmp/full/model.safetensors" "$tmp/two/model.safetensors"'

# a real kill: SIGKILL at some point of a longer run, then resume until the end
long="--data $tmp/gen.tok --seq 16 --batch 1 --steps 60 --save-every 1"
$BIN distill "$S" "$tmp/ob" -o "$tmp/ref" $long >/dev/null 2>&1
$BIN distill "$S" "$tmp/ob" -o "$tmp/killed" $long >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do [ -e "$tmp/killed/checkpoint/state.safetensors" ] && break; sleep 0.05; done
sleep 0.3
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
$BIN distill "$S" "$tmp/ob" -o "$tmp/killed" $long --resume >/dev/null 2>&1
check "killed + resumed == uninterrupted (bytes)" 'cmp -s "$tmp/ref/model.safetensors" "$tmp/killed/model.safetensors"'

# failures: message, non-zero exit, no crash
expect_fail() { # name, pattern, command...
  local name=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "$pat" "$tmp/err"; then ok "$name (rc $rc)"; else bad "$name (rc $rc: $(head -c 200 "$tmp/err"))"; fi
}
expect_fail "NaN stops the run, checkpoint kept" "not finite.*checkpoint (step 1) is kept" \
  $BIN distill "$S" "$tmp/ob" -o "$tmp/nan" --data "$tmp/gen.tok" --seq 32 --batch 2 --steps 5 --save-every 1 --lr 1e30 --warmup 0 --no-post-ln
check "NaN message names the step, the model and where" 'grep -q "step 2.*not finite.*student (from .*/ob).*layer 0 (sequence 0, position" "$tmp/err"'
check "NaN run wrote no model" '[ ! -e "$tmp/nan/model.safetensors" ] && [ -e "$tmp/nan/checkpoint/state.safetensors" ]'
expect_fail "resume with another --batch" "batch" \
  $BIN distill "$S" "$tmp/ob" -o "$tmp/full" --data "$tmp/gen.tok" --seq 32 --batch 3 --steps 8 --resume
cp -r "$tmp/full" "$tmp/corrupt"
head -c 3000 "$tmp/full/checkpoint/state.safetensors" > "$tmp/corrupt/checkpoint/state.safetensors"
expect_fail "truncated checkpoint" "state.safetensors" run -o "$tmp/corrupt" --resume
expect_fail "resume without a checkpoint" "state.safetensors" run -o "$tmp/none" --resume
expect_fail "missing -o" "missing -o" $BIN distill "$S" "$tmp/ob" --generate 2
expect_fail "--data and --generate" "exactly one" $BIN distill "$S" "$tmp/ob" -o "$tmp/x" --generate 2 --data "$tmp/eval.txt"
expect_fail "rtn student" "cannot be trained" sh -c "$BIN quantize '$S' -o '$tmp/rtn' -m rtn2 >/dev/null 2>&1; $BIN distill '$S' '$tmp/rtn' -o '$tmp/x' --generate 2 --seq 16"
expect_fail "text shorter than a sequence" "do not fill" $BIN distill "$S" "$tmp/ob" -o "$tmp/x" --data "$tmp/eval.txt" --seq 2000
$BIN distill --help >/dev/null && ok "distill --help" || bad "distill --help"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
