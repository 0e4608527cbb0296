#!/usr/bin/env bash
# The command-line tool end to end: golden greedy ids from every checkpoint form, tokenizer
# reference ids, JSON output shapes, and clean failures on bad input.
set -u
BIN=${BITLLM_BIN:?}
DATA=${BITLLM_DATA:-../shared}
S=$DATA/models/stories260K
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
if [ ! -e "$S/reference_greedy.json" ]; then echo "SKIP: $S not found"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# greedy 48 tokens from BOS equals the float64 reference, from each of the three forms
want=$(python3 -c "import json;print(json.load(open('$S/reference_greedy.json'))['tokens'][1:])")
for form in "$S/stories260K.gguf" "$S/stories260K.bin --tokenizer $S/tok512.bin" "$S/hf --tokenizer $S/tok512.bin"; do
  got=$($BIN generate $form -n 48 --temp 0 --json 2>/dev/null | python3 -c "import json,sys;print(json.load(sys.stdin)['ids'])")
  check "generate greedy ids ($form)" '[ "$got" = "$want" ]'
done
# the same with the files read into private memory instead of mapped
for form in "$S/stories260K.gguf" "$S/hf --tokenizer $S/tok512.bin"; do
  got=$(BITLLM_LOAD=read $BIN generate $form -n 48 --temp 0 --json 2>/dev/null | python3 -c "import json,sys;print(json.load(sys.stdin)['ids'])")
  check "generate greedy ids, BITLLM_LOAD=read ($form)" '[ "$got" = "$want" ]'
done
mode=$($BIN speed "$S/stories260K.gguf" -n 2 -p 2 --no-mmap --json 2>/dev/null | python3 -c "import json,sys;print(json.load(sys.stdin)['load_mode'])")
check "speed --no-mmap reads the files" '[ "$mode" = "read" ]'
# a batched decode step: 4 sequences in their own slots, one token each per step
sb=$($BIN speed "$S/stories260K.gguf" -n 8 -p 3 -b 4 --json 2>/dev/null | python3 -c "import json,sys;o=json.load(sys.stdin);print(o['decode_batch'], o['decode_tokens'], o['decode_tps'] > 0)")
check "speed --batch 4 decodes 4 sequences per step" '[ "$sb" = "4 8 True" ]'
sl=$($BIN speed "$S/stories260K.gguf" -n 8 -p 3 -b 1,2,8 --json 2>/dev/null | python3 -c "import json,sys;o=json.load(sys.stdin);print(' '.join('%d:%d' % (e['batch'], e['steps']) for e in o['decode']), all(e['decode_tps'] > 0 for e in o['decode']))")
check "speed --batch 1,2,8 measures each batch size" '[ "$sl" = "1:8 2:4 8:1 True" ]'
check "speed --batch with a bad list fails" '! $BIN speed "$S/stories260K.gguf" -n 8 -p 3 -b 1,0 >/dev/null 2>&1'
check "speed -n not a multiple of --batch fails" '! $BIN speed "$S/stories260K.gguf" -n 7 -p 3 -b 4 >/dev/null 2>&1'
text=$($BIN generate "$S/stories260K.gguf" -n 48 --temp 0 --json 2>/dev/null | python3 -c "import json,sys;print(json.load(sys.stdin)['text'])")
wtext=$(python3 -c "import json;print(json.load(open('$S/reference_greedy.json'))['text'])")
check "generate greedy text" '[ "$text" = "$wtext" ]'

# sampling is reproducible for a seed
a=$($BIN generate "$S/stories260K.gguf" -n 32 --temp 1.0 --top-p 0.9 --seed 7 --json 2>/dev/null)
b=$($BIN generate "$S/stories260K.gguf" -n 32 --temp 1.0 --top-p 0.9 --seed 7 --json 2>/dev/null)
check "sampling reproducible with --seed" '[ -n "$a" ] && [ "$a" = "$b" ]'

# tokenizer references (tokenizer-only loading: directory and file)
for t in qwen3 llama3; do
  T=$DATA/tokenizers/$t
  [ -e "$T/tokenizer.json" ] || continue
  want=$(python3 -c "import json;print(json.load(open('$T/sample.ids.json')))")
  got=$($BIN tokenize "$T" -f "$DATA/tokenizers/sample.txt" --json | python3 -c "import json,sys;print(json.load(sys.stdin)['ids'])")
  check "tokenize $t sample (directory)" '[ "$got" = "$want" ]'
  got=$($BIN tokenize "$T/tokenizer.json" -f "$DATA/tokenizers/sample.txt" --json | python3 -c "import json,sys;print(json.load(sys.stdin)['ids'])")
  check "tokenize $t sample (file)" '[ "$got" = "$want" ]'
done

# ppl JSON and cross-form agreement
head -c 20000 "$DATA/data/wikitext-2/wiki.test.raw" > "$tmp/wiki.txt" 2>/dev/null || printf 'Once upon a time there was a cat.\n%.0s' {1..50} > "$tmp/wiki.txt"
p1=$($BIN ppl "$S/stories260K.gguf" -f "$tmp/wiki.txt" --ctx 256 --json 2>/dev/null)
p2=$($BIN ppl "$S/hf" --tokenizer "$S/tok512.bin" -f "$tmp/wiki.txt" --ctx 256 --json 2>/dev/null)
check "ppl --json has ppl/nll/tokens/ctx" 'python3 -c "import json,sys;d=json.loads(sys.argv[1]);assert all(k in d for k in (\"ppl\",\"nll\",\"tokens\",\"ctx\",\"bpw_layers\"));assert d[\"ctx\"]==256" "$p1"'
check "ppl same across forms" 'python3 -c "import json,sys;a=json.loads(sys.argv[1]);b=json.loads(sys.argv[2]);assert abs(a[\"ppl\"]/b[\"ppl\"]-1)<1e-5 and a[\"tokens\"]==b[\"tokens\"]" "$p1" "$p2"'
ntok=$($BIN tokenize "$S/stories260K.gguf" -f "$tmp/wiki.txt" --json | python3 -c "import json,sys;print(len(json.load(sys.stdin)['ids']))")
check "ppl scores every token of the file" 'python3 -c "import json,sys;assert json.loads(sys.argv[1])[\"tokens\"]==int(sys.argv[2])" "$p1" "$ntok"'
check "info --json" '$BIN info "$S/stories260K.gguf" --json | python3 -c "import json,sys;d=json.load(sys.stdin);assert d[\"config\"][\"dim\"]==64 and d[\"params\"]>0 and len(d[\"tensors\"])==48"'

# quantize --random-factors: no fit, but the fitted run's layers, bpw and file size; the JSON
# report stays valid (rel_err null, not NaN) and the provenance says what the checkpoint is
$BIN quantize "$S/stories260K.gguf" -o "$tmp/fit" -m dbf --iters 1 --json >"$tmp/fit.json" 2>/dev/null
$BIN quantize "$S/stories260K.gguf" -o "$tmp/rf" -m dbf --random-factors --json >"$tmp/rf.json" 2>"$tmp/rf.err"
check "quantize --random-factors --json" 'python3 -c "
import json,os,sys
f=json.load(open(sys.argv[1]));r=json.load(open(sys.argv[2]))
assert r[\"random_factors\"] is True and r[\"bpw_layers\"]==f[\"bpw_layers\"]
assert all(l[\"rel_err\"] is None for l in r[\"layers\"]) and len(r[\"layers\"])==len(f[\"layers\"])
assert [l[\"bpw\"] for l in r[\"layers\"]]==[l[\"bpw\"] for l in f[\"layers\"]]
st=lambda d:os.path.getsize(os.path.join(d,\"model.safetensors\"))
assert st(sys.argv[3])==st(sys.argv[4])
c=json.load(open(os.path.join(sys.argv[4],\"config.json\")))[\"quantization_config\"]
assert c[\"provenance\"][\"random_factors\"] is True
" "$tmp/fit.json" "$tmp/rf.json" "$tmp/fit" "$tmp/rf"'
check "quantize --random-factors progress shows rel_err -" 'grep -q "rel_err -" "$tmp/rf.err"'
check "random-factors checkpoint generates" '$BIN generate "$tmp/rf" -n 4 --temp 0 >/dev/null 2>&1'

# failures: clear message, non-zero exit, no crash
expect_fail() { # name, command...
  local name=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ -s "$tmp/err" ]; then ok "$name (rc $rc: $(head -c 100 "$tmp/err" | tr '\n' ' '))"; else bad "$name (rc $rc)"; fi
}
expect_fail "missing model file" $BIN info /nonexistent/model.gguf
expect_fail "unknown flag" $BIN ppl "$S/stories260K.gguf" --bogus
expect_fail "missing flag value" $BIN generate "$S/stories260K.gguf" -n
expect_fail "bad number" $BIN generate "$S/stories260K.gguf" -n abc
expect_fail "unknown command" $BIN frobnicate
expect_fail "llama2.c without tokenizer" $BIN generate "$S/stories260K.bin" -p hello -n 2
head -c 1000 "$S/stories260K.gguf" > "$tmp/trunc.gguf"
expect_fail "truncated gguf" $BIN info "$tmp/trunc.gguf"
mkdir -p "$tmp/hf"; cp "$S/hf/config.json" "$tmp/hf/"; head -c 5000 "$S/hf/model.safetensors" > "$tmp/hf/model.safetensors"
expect_fail "truncated safetensors" $BIN info "$tmp/hf"
echo '{"model_type": "llama", ' > "$tmp/hf/config.json"
expect_fail "broken config.json" $BIN info "$tmp/hf"
echo 'Once upon a time.' > "$tmp/calib.txt"
expect_fail "quantize --random-factors with --calib" $BIN quantize "$S/stories260K.gguf" -o "$tmp/rfc" -m dbf --random-factors --calib "$tmp/calib.txt"
check "--random-factors --calib message names --calib" 'grep -q -- "--calib" "$tmp/err" && [ ! -e "$tmp/rfc" ]'
$BIN --help >/dev/null && ok "--help" || bad "--help"
for c in info tokenize generate ppl; do $BIN $c --help >/dev/null && ok "$c --help" || bad "$c --help"; done

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
