#!/usr/bin/env bash
# What commands write: model directories never replace an input or an unrelated directory, are
# checked before any fitting, appear in one step and leave nothing behind when killed; every
# command that prints fails (non-zero, with a message) when its output cannot be written; and
# text and JSON output is valid UTF-8 whatever the model emits.
set -u
. "$(dirname "$0")/testlib.sh"
if [ ! -e "$G" ]; then echo "SKIP: $G not found"; exit 77; fi
no_leftovers() { [ -z "$(ls -a "$1" | grep '\.\(tmp\|old\)\.[0-9]*$')" ]; }

# ---- model directories ----
cp -r "$S/hf" "$tmp/hf"
sum_hf=$(cat "$tmp/hf"/* | md5sum)
expect_fail "quantize -o INPUT is refused" "is the input" \
  $BIN quantize "$tmp/hf" --tokenizer "$S/tok512.bin" -m rtn1 -o "$tmp/hf"
expect_fail "quantize -o INPUT/.. (a folder holding the input) is refused" "holds the input" \
  $BIN quantize "$tmp/hf" --tokenizer "$S/tok512.bin" -m rtn1 -o "$tmp" --force
expect_fail "quantize --calib inside -o is refused" "holds the input" \
  sh -c "$BIN quantize '$G' -m dbf --calib '$tmp/hf/config.json' -o '$tmp/hf' --force"
expect_fail "convert -o INPUT is refused" "is the input" $BIN convert "$tmp/hf" --tokenizer "$S/tok512.bin" -o "$tmp/hf"
check "the input is untouched" '[ "$(cat "$tmp/hf"/* | md5sum)" = "$sum_hf" ] && [ "$(ls -a "$tmp/hf" | wc -l)" = 4 ]'
mkdir "$tmp/mine"; echo "my notes" >"$tmp/mine/notes.txt"
expect_fail "quantize into an unrelated directory is refused" "not a bitllm output.*--force" \
  $BIN quantize "$G" -m rtn1 -o "$tmp/mine"
check "... and it is untouched" 'grep -q "my notes" "$tmp/mine/notes.txt" && no_leftovers "$tmp"'
expect_fail "convert and synth refuse it too" "not a bitllm output" $BIN convert "$G" -o "$tmp/mine"
expect_fail "synth refuses it" "not a bitllm output" $BIN synth --arch smollm2-135m --layers 1 -o "$tmp/mine"
$BIN quantize "$G" -m rtn1 -o "$tmp/mine" --force >/dev/null 2>&1
check "--force replaces it" '[ -e "$tmp/mine/model.safetensors" ] && [ ! -e "$tmp/mine/notes.txt" ] && [ -e "$tmp/mine/.bitllm-output" ]'
$BIN quantize "$G" -m rtn2 -o "$tmp/mine" >/dev/null 2>&1
check "a bitllm output is replaced without --force" 'grep -q "\"rtn2\"" "$tmp/mine/config.json" && no_leftovers "$tmp" && $BIN generate "$tmp/mine" -n 3 --temp 0 >/dev/null 2>&1'
# -o that cannot be written fails before anything is fitted
echo x >"$tmp/afile"
expect_fail "-o under a file fails at once" "afile" $BIN quantize "$G" -m dbf -o "$tmp/afile/out"
check "... before any layer is fitted" '! grep -q "model.layers" "$tmp/err"'
expect_fail "-o naming a file fails at once" "not a directory" $BIN quantize "$G" -m dbf -o "$tmp/afile"
if ! mkdir /sys/bitllm-probe 2>/dev/null; then
  expect_fail "-o in a folder that cannot be written fails at once" "cannot write" \
    $BIN quantize "$G" -m dbf -o /sys/bitllm-out
  check "... before any layer is fitted" '! grep -q "model.layers" "$tmp/err"'
else
  rmdir /sys/bitllm-probe
fi
if [ "$(id -u)" != 0 ]; then
  mkdir "$tmp/ro"; chmod 555 "$tmp/ro"
  expect_fail "-o in a read-only folder fails at once" "cannot write" $BIN quantize "$G" -m dbf -o "$tmp/ro/out"
  chmod 755 "$tmp/ro"
fi
# kill -9 while quantizing into an existing output: the old model stays whole; the leftover
# beside it goes with the next run
$BIN quantize "$G" -m rtn1 -o "$tmp/q" >/dev/null 2>&1
sum_q=$(cat "$tmp/q/model.safetensors" "$tmp/q/config.json" | md5sum)
$BIN quantize "$G" -m mdbf --iters 200 -o "$tmp/q" >/dev/null 2>"$tmp/q.err" &
pid=$!
for _ in $(seq 1 400); do ls "$tmp" | grep -q "^q\.tmp\.$pid$" && break; sleep 0.02; done
sleep 0.1; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null # ~1.4 s of fitting: killed early in it
check "killed run: the old model is whole" '[ "$(cat "$tmp/q/model.safetensors" "$tmp/q/config.json" | md5sum)" = "$sum_q" ] && $BIN info "$tmp/q" >/dev/null 2>&1'
check "killed run: its leftover is q.tmp.<pid>" '[ -d "$tmp/q.tmp.$pid" ]'
$BIN quantize "$G" -m rtn2 -o "$tmp/q" >/dev/null 2>&1
check "the next run removes it" '[ ! -e "$tmp/q.tmp.$pid" ] && no_leftovers "$tmp" && grep -q "\"rtn2\"" "$tmp/q/config.json"'
# distill: the student is an input; --gen-out must not replace an input
$BIN quantize "$G" -m onebit -o "$tmp/ob" >/dev/null 2>&1
expect_fail "distill -o STUDENT is refused" "is the input" $BIN distill "$G" "$tmp/ob" -o "$tmp/ob" --generate 2 --seq 16 --steps 1
expect_fail "distill --gen-out over the teacher is refused" "refusing" \
  $BIN distill "$tmp/ob" "$tmp/ob" --generate 2 --seq 16 --steps 0 --gen-out "$tmp/ob/model.safetensors"
expect_fail "eval --dump over the model is refused" "refusing" \
  $BIN eval "$tmp/ob" --tasks piqa --limit 1 --dump "$tmp/ob/config.json"

# ---- output that cannot be written: /dev/full ----
echo "Once upon a time there was a cat. The cat liked the sun." >"$tmp/t.txt"
full() { # name, command...: stdout to /dev/full must fail with a message
  local name=$1; shift
  "$@" >/dev/full 2>"$tmp/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "error writing\|cannot write\|No space" "$tmp/err" && clean_err "$tmp/err"; then
    ok "$name > /dev/full (rc $rc)"
  else
    bad "$name > /dev/full (rc $rc: $(head -c 200 "$tmp/err"))"
  fi
}
full "info --json" $BIN info "$G" --json
full "info" $BIN info "$G"
full "tokenize --json" $BIN tokenize "$G" -f "$tmp/t.txt" --json
full "tokenize" $BIN tokenize "$G" -f "$tmp/t.txt"
full "ppl --json" $BIN ppl "$G" -f "$tmp/t.txt" --json
full "ppl" $BIN ppl "$G" -f "$tmp/t.txt"
full "generate --json" $BIN generate "$G" -n 4 --json
full "generate (streaming)" $BIN generate "$G" -n 4
full "eval --json" $BIN eval "$G" --tasks piqa --limit 1 --json
full "speed --json" $BIN speed "$G" -n 2 -p 2 --json
full "quantize --json" $BIN quantize "$G" -m rtn1 -o "$tmp/qf" --json
full "--help" $BIN --help
full "info --help" $BIN info --help
full "--version" $BIN --version
full "eval --dump /dev/full" $BIN eval "$G" --tasks piqa --limit 1 --dump /dev/full
check "eval --dump /dev/null leaves /dev/null a device" '$BIN eval "$G" --tasks piqa --limit 1 --dump /dev/null >/dev/null 2>&1 && [ -c /dev/null ]'

# ---- valid UTF-8 in text and JSON output ----
# uniform sampling over stories260K's vocabulary emits lone byte-fallback tokens (<0xE2>, ...)
jbad=0; tbad=0
for seed in $(seq 1 40); do
  $BIN generate "$G" -n 6 --temp inf --top-p 0.5 --seed $seed --json >"$tmp/g.json" 2>/dev/null || jbad=$((jbad + 1))
  python3 -c "import json,sys; d=json.loads(open(sys.argv[1],'rb').read().decode('utf-8')); assert isinstance(d['text'], str) and len(d['ids'])>0" "$tmp/g.json" 2>/dev/null || jbad=$((jbad + 1))
  $BIN generate "$G" -n 6 --temp inf --top-p 0.5 --seed $seed >"$tmp/g.txt" 2>/dev/null || tbad=$((tbad + 1))
  python3 -c "import sys; open(sys.argv[1],'rb').read().decode('utf-8')" "$tmp/g.txt" 2>/dev/null || tbad=$((tbad + 1))
done
check "generate --json: 40 seeds of uniform sampling all decode as UTF-8 JSON" '[ $jbad = 0 ]'
check "generate (text): the same 40 runs are valid UTF-8" '[ $tbad = 0 ]'
for seed in 1 2 3 4 5 6 7 8; do $BIN generate "$G" -n 6 --temp inf --top-p 0.5 --seed $seed --json 2>/dev/null; done >"$tmp/g8.jsonl"
check "the runs include lone byte tokens, written as U+FFFD" 'python3 -c "
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1],encoding=\"utf-8\")]
assert any(3 <= i <= 258 for r in rows for i in r[\"ids\"]) and any(\"\ufffd\" in r[\"text\"] for r in rows)
" "$tmp/g8.jsonl"'
bad_dir=$(printf "$tmp/m\xff\xfe")
mkdir "$bad_dir" && cp "$S/hf/config.json" "$S/hf/model.safetensors" "$bad_dir/"
check "JSON stays valid for a model path that is not UTF-8" '$BIN info "$bad_dir" --tokenizer "$S/tok512.bin" --json 2>/dev/null | python3 -c "import json,sys; json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))"'

finish
