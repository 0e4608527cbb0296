#!/usr/bin/env bash
# Flags are never silently ignored or bent: values out of range, trailing garbage, NaN,
# duplicates, options the chosen method (or student, or mode) does not use, and windows beyond
# the trained context are errors that name the option (exit 2, before any model is written);
# eval defaults to lm-eval's acc_norm by characters, and ppl/eval say which window they used and
# where it came from.
set -u
. "$(dirname "$0")/testlib.sh"
if [ ! -e "$G" ]; then echo "SKIP: $G not found"; exit 77; fi
echo "Once upon a time there was a little cat. The cat liked to play in the sun." >"$tmp/t.txt"

# zero, negative, NaN, Inf, trailing garbage, overflow, empty, duplicates
expect_usage "ppl --ctx 0" "--ctx must be >= 2, got 0" $BIN ppl "$G" -f "$tmp/t.txt" --ctx 0
expect_usage "ppl --ctx -3" "--ctx must be >= 2" $BIN ppl "$G" -f "$tmp/t.txt" --ctx -3
expect_usage "generate -n 0" "-n must be >= 1, got 0" $BIN generate "$G" -n 0
expect_usage "generate -n 5x" "invalid value '5x' for -n" $BIN generate "$G" -n 5x
expect_usage "generate -n ''" "invalid value '' for -n" $BIN generate "$G" -n ""
expect_usage "generate -n ' 5'" "invalid value ' 5' for -n" $BIN generate "$G" -n " 5"
expect_usage "generate -n 99999999999" "invalid value '99999999999' for -n (a whole number in [1, 2147483647])" $BIN generate "$G" -n 99999999999
expect_usage "serve --port 2^40" "for --port (a whole number in [0, 65535])" $BIN serve "$G" --port 1099511627776
expect_usage "generate --temp nan" "invalid value 'nan' for --temp" $BIN generate "$G" --temp nan
expect_usage "generate --temp -1" "--temp must be >= 0" $BIN generate "$G" --temp -1
expect_usage "generate --temp 0.5x" "invalid value '0.5x'" $BIN generate "$G" --temp 0.5x
expect_usage "generate --top-p 0" "--top-p must be in (0, 1]" $BIN generate "$G" --top-p 0
expect_usage "generate --top-p 1.5" "--top-p must be in (0, 1]" $BIN generate "$G" --top-p 1.5
expect_usage "generate --seed -1" "invalid value '-1' for --seed" $BIN generate "$G" --seed -1
expect_usage "generate --seed 2^64" "invalid value '18446744073709551616' for --seed (a whole number <= 18446744073709551615)" $BIN generate "$G" --seed 18446744073709551616
expect_usage "generate -n twice" "-n given twice" $BIN generate "$G" -n 5 -n 6
# --name=value is --name value; a mistyped option or command names the one meant
expect_usage "generate --temp=x" "invalid value 'x' for --temp" $BIN generate "$G" --temp=x
expect_usage "generate --n=3 -n 4" "-n given twice" $BIN generate "$G" --n=3 -n 4
expect_usage "generate --json=1" "--json takes no value (got '--json=1')" $BIN generate "$G" --json=1
expect_usage "generate --temperature" "unknown option '--temperature' (did you mean --temp?" $BIN generate "$G" --temperature 0
expect_usage "generate --tmep=0" "unknown option '--tmep=0' (did you mean --temp?" $BIN generate "$G" --tmep=0
expect_usage "generate --top (ambiguous)" "unknown option '--top' (see --help)" $BIN generate "$G" --top 3
expect_usage "bitllm generat" "unknown command 'generat' (did you mean 'generate'?" $BIN generat "$G"
check "--temp=0 --threads=1 writes what --temp 0 --threads 1 writes" \
  '[ "$($BIN generate "$G" -p Once -n 8 --temp=0 --threads=1 2>/dev/null)" = "$($BIN generate "$G" -p Once -n 8 --temp 0 --threads 1 2>/dev/null)" ] && [ -n "$($BIN generate "$G" -p Once -n 8 --temp=0 2>/dev/null)" ]'
expect_usage "generate --temp 0 --top-p" "--top-p has no effect with --temp 0" $BIN generate "$G" --temp 0 --top-p 0.5
expect_usage "generate --temp 0 --seed" "--seed has no effect with --temp 0" $BIN generate "$G" --temp 0 --seed 3
expect_usage "eval --limit 0" "--limit must be >= 1, got 0" $BIN eval "$G" --tasks piqa --limit 0
expect_usage "eval --norm words" "--norm must be chars or bytes" $BIN eval "$G" --tasks piqa --norm words
expect_usage "speed --threads 0" "--threads must be in [1, 256], got 0" $BIN speed "$G" --threads 0
expect_usage "generate --threads 100000" "--threads must be in [1, 256], got 100000" $BIN generate "$G" -t 100000
expect_usage "speed -p -1" "--prompt must be >= 1" $BIN speed "$G" -p -1
expect_usage "synth --layers 0" "--layers must be >= 1" $BIN synth --arch llama2-7b --layers 0 -o "$tmp/s"
expect_usage "bench --mem-mib 1" "--mem-mib must be in [16, 65536]" $BIN bench --mem-mib 1
expect_usage "bench --threads 1," "bad --threads" $BIN bench --threads 1,
expect_usage "distill --lr inf" "--lr must be > 0 and finite" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --lr inf
expect_usage "distill --lr 0" "--lr must be > 0" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --lr 0
expect_usage "distill --flip-frac 0" "--flip-frac must be in (0, 1]" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --flip-every 1 --flip-frac 0
expect_usage "distill --flip-frac without --flip-every" "--flip-frac has no effect without --flip-every" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --flip-frac 0.1
expect_usage "distill --eval-ctx without --eval-text" "--eval-ctx has no effect without --eval-text" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --eval-ctx 32
expect_usage "distill --gen-out without --generate" "--gen-out has no effect without --generate" $BIN distill "$G" "$G" -o "$tmp/d" --data "$tmp/t.txt" --gen-out "$tmp/g.tok"
expect_usage "distill --stop-after >= --steps" "--stop-after must be below --steps" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --steps 5 --stop-after 5
expect_usage "distill -o with --steps 0" "-o has no effect with --steps 0" $BIN distill "$G" "$G" -o "$tmp/d" --generate 2 --steps 0 --gen-out "$tmp/g.tok"
expect_usage "quantize --calib-tokens without --calib" "--calib-tokens has no effect without --calib" $BIN quantize "$G" -m dbf -o "$tmp/q" --calib-tokens 100
check "no output was written by any of them" '[ ! -e "$tmp/q" ] && [ ! -e "$tmp/d" ] && [ ! -e "$tmp/s" ] && [ -z "$(ls "$tmp" | grep "\.tmp\.")" ]'

# options the method does not use: the formats' traits (bl_method_uses), every combination
expect_usage "quantize -m rtn2 --bpw 1.0" "--bpw is not used by -m rtn2 (used by: dbf, mdbf)" $BIN quantize "$G" -m rtn2 --bpw 1.0 -o "$tmp/q"
expect_usage "quantize -m onebit --bpw 3" "--bpw is not used by -m onebit" $BIN quantize "$G" -m onebit --bpw 3 -o "$tmp/q"
expect_usage "quantize -m rtn1 --adam-steps 5" "--adam-steps is not used by -m rtn1 (used by: mdbf)" $BIN quantize "$G" -m rtn1 --adam-steps 5 -o "$tmp/q"
table_bad=0
for m in rtn1 rtn2 rtn3 rtn4 onebit dbf mdbf; do
  for opt in "--bpw 2" "--svd" "--nmf" "--envelope-rank 2" "--paths 2" "--adam-steps 3" "--group 64" \
             "--calib $tmp/t.txt" "--iters 3" "--seed 1"; do
    case "$m:${opt%% *}" in
      dbf:--bpw|mdbf:--bpw|onebit:--svd|onebit:--nmf|mdbf:--envelope-rank|mdbf:--paths|mdbf:--adam-steps) continue;;
      rtn[234]:--group|onebit:--calib|dbf:--calib|mdbf:--calib|dbf:--iters|mdbf:--iters|dbf:--seed|mdbf:--seed) continue;;
    esac
    # shellcheck disable=SC2086
    $BIN quantize "$G" -m $m $opt -o "$tmp/q" >/dev/null 2>"$tmp/err"; rc=$?
    if [ $rc -ne 2 ] || ! grep -qF -- "${opt%% *} is not used by -m $m" "$tmp/err"; then
      table_bad=$((table_bad + 1)); echo "  -m $m $opt: rc $rc: $(head -c 200 "$tmp/err")"
    fi
  done
done
check "every method x unused option is refused, naming the option (48 combinations)" '[ $table_bad = 0 ] && [ ! -e "$tmp/q" ]'
expect_usage "--random-factors: fitting options have no effect" "--iters has no effect with --random-factors" $BIN quantize "$G" -m dbf --random-factors --iters 3 -o "$tmp/q"
$BIN quantize "$G" -m rtn1 --random-factors --seed 5 -o "$tmp/rf" >/dev/null 2>&1
check "quantize -m rtn1 --random-factors --seed 5 is accepted" '[ -e "$tmp/rf/model.safetensors" ]'
expect_usage "compare --paths without mdbf" "--paths is not used by any of --methods rtn1,dbf (used by: mdbf)" $BIN compare "$G" --methods rtn1,dbf --paths 2 --out "$tmp/c"
$BIN quantize "$G" -m onebit -o "$tmp/ob" >/dev/null 2>&1
$BIN quantize "$G" -m dbf -o "$tmp/dbf" --iters 2 >/dev/null 2>&1
expect_usage "distill --flip-every with a onebit student" "--flip-every is not used with a onebit student" $BIN distill "$G" "$tmp/ob" -o "$tmp/d" --generate 2 --seq 16 --flip-every 2
expect_usage "distill --latent-init with a dbf student" "--latent-init is not used with a dbf student" $BIN distill "$G" "$tmp/dbf" -o "$tmp/d" --generate 2 --seq 16 --latent-init 0.1
expect_usage "distill --no-post-ln with a dbf student" "--no-post-ln is not used with a dbf student" $BIN distill "$G" "$tmp/dbf" -o "$tmp/d" --generate 2 --seq 16 --no-post-ln
check "distill refusals left no output" '[ ! -e "$tmp/d" ]'
expect_usage "info --tensors --json" "--tensors has no effect with --json" $BIN info "$G" --tensors --json

# windows beyond the trained context (stories260K.gguf says 2048)
expect_usage "ppl --ctx 99999" "longer than the 2048 tokens" $BIN ppl "$G" -f "$tmp/t.txt" --ctx 99999
check "... and says how to ask for it" 'grep -q -- "--allow-long-ctx" "$tmp/err"'
expect_usage "--allow-long-ctx without --ctx" "--allow-long-ctx has no effect without --ctx" $BIN ppl "$G" -f "$tmp/t.txt" --allow-long-ctx
long=$($BIN ppl "$G" -f "$tmp/t.txt" --ctx 4096 --allow-long-ctx --json 2>"$tmp/err")
check "--allow-long-ctx runs it, with a warning" 'grep -q "warning: --ctx 4096 is beyond the 2048" "$tmp/err" && python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d[\"ctx\"]==4096 and d[\"ctx_source\"]==\"flag\" and d[\"trained_ctx\"]==2048" "$long"'
expect_usage "eval --ctx 99999" "longer than the 2048 tokens" $BIN eval "$G" --tasks piqa --limit 1 --ctx 99999

# where the window came from, in text and JSON
j=$($BIN ppl "$G" -f "$tmp/t.txt" --json 2>/dev/null)
check "ppl --json: ctx from the model" 'python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d[\"ctx\"]==2048 and d[\"ctx_source\"]==\"model\"" "$j"'
check "ppl text: ctx from the model" '$BIN ppl "$G" -f "$tmp/t.txt" 2>/dev/null | grep -q "ctx 2048: the model.s trained context"'
check "ppl text: ctx from --ctx" '$BIN ppl "$G" -f "$tmp/t.txt" --ctx 64 2>/dev/null | grep -q "ctx 64 from --ctx"'
if [ -e "$DATA/data/llm-foundry-icl/arc_easy.jsonl" ]; then
  j=$($BIN eval "$G" --tasks arc_easy --limit 2 --json 2>/dev/null)
  check "eval --json: acc_norm by characters by default, ctx and its source" 'python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d[\"norm\"]==\"chars\" and d[\"ctx\"]==2048 and d[\"ctx_source\"]==\"model\" and d[\"limit\"]==2" "$j"'
  check "eval text: the window and its source" '$BIN eval "$G" --tasks arc_easy --limit 2 --ctx 128 2>/dev/null | grep -q "ctx 128 from --ctx; BOS yes; acc_norm by chars"'
fi
# --sign-tables: a bad value and a model without 1-bit layers are usage errors; on a 1-bit model
# i8 reaches the kernels (the JSON says so, the perplexity moves) and stays within 5 % of f32 on
# this 24-token text (0.05 nats per token; on 10,107 tokens of story text the shift is +0.1 %,
# docs/performance.md; here it is 1.5 %)
expect_usage "ppl --sign-tables f16" "unknown --sign-tables 'f16' (f32, i8)" $BIN ppl "$G" -f "$tmp/t.txt" --sign-tables f16
expect_usage "speed --sign-tables i8 on an FP model" "--sign-tables i8 has no effect: $G has no 1-bit layers and no q8_0/q4_0 matrices" $BIN speed "$G" --sign-tables i8 -n 2 -p 2
$BIN quantize "$G" -m onebit -o "$tmp/ob" >/dev/null 2>&1
a=$($BIN ppl "$tmp/ob" -f "$tmp/t.txt" --json 2>/dev/null)
b=$($BIN ppl "$tmp/ob" -f "$tmp/t.txt" --json --sign-tables i8 2>/dev/null)
check "ppl --sign-tables i8: reported, different from f32 and within 5 %" 'python3 -c "import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a[\"sign_tables\"]==\"f32\" and b[\"sign_tables\"]==\"i8\" and a[\"ppl\"]!=b[\"ppl\"] and abs(b[\"ppl\"]/a[\"ppl\"]-1)<0.05, (a[\"ppl\"],b[\"ppl\"])" "$a" "$b"'
check "generate --sign-tables i8 runs" '$BIN generate "$tmp/ob" -p "Once" -n 8 --temp 0 --sign-tables i8 >/dev/null 2>&1'
# the 1-bit int8 kernels need AVX2: --isa ref warns that the scalar specification runs, and from
# AVX2 up (when the CPU has it) no warning (this model has no q8_0/q4_0 matrices)
check "speed --sign-tables i8 --isa ref warns" '$BIN speed "$tmp/ob" -n 2 -p 2 --sign-tables i8 --isa ref 2>&1 >/dev/null | grep -q "int8 sign tables need AVX2"'
if grep -qw avx2 /proc/cpuinfo; then
  check "speed --sign-tables i8 --isa avx2: no warning" '! $BIN speed "$tmp/ob" -n 2 -p 2 --sign-tables i8 --isa avx2 2>&1 >/dev/null | grep -q "warning"'
fi
# --kv-cache: a bad value is a usage error; f16 and q8 are reported and move the perplexity a
# little (q8: 9 bits a value, within 2 %)
expect_usage "ppl --kv-cache f8" "unknown --kv-cache 'f8' (f32, f16, q8)" $BIN ppl "$G" -f "$tmp/t.txt" --kv-cache f8
c=$($BIN ppl "$tmp/ob" -f "$tmp/t.txt" --json --kv-cache f16 2>/dev/null)
check "ppl --kv-cache f16: reported, different from f32 and within 1 %" 'python3 -c "import json,sys; a,c=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a[\"kv_cache\"]==\"f32\" and c[\"kv_cache\"]==\"f16\" and a[\"ppl\"]!=c[\"ppl\"] and abs(c[\"ppl\"]/a[\"ppl\"]-1)<0.01, (a[\"ppl\"],c[\"ppl\"])" "$a" "$c"'
c=$($BIN ppl "$tmp/ob" -f "$tmp/t.txt" --json --kv-cache q8 2>/dev/null)
check "ppl --kv-cache q8: reported, different from f32 and within 2 %" 'python3 -c "import json,sys; a,c=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a[\"kv_cache\"]==\"f32\" and c[\"kv_cache\"]==\"q8\" and a[\"ppl\"]!=c[\"ppl\"] and abs(c[\"ppl\"]/a[\"ppl\"]-1)<0.02, (a[\"ppl\"],c[\"ppl\"])" "$a" "$c"'
check "generate --kv-cache q8 runs" '$BIN generate "$tmp/ob" -p "Once" -n 8 --temp 0 --kv-cache q8 >/dev/null 2>&1'
check "generate --kv-cache f16 runs" '$BIN generate "$tmp/ob" -p "Once" -n 8 --temp 0 --kv-cache f16 >/dev/null 2>&1'
check "speed --kv-cache f16 says so" '$BIN speed "$tmp/ob" -n 4 -p 4 --kv-cache f16 2>/dev/null | grep -q "KV cache f16"'

check "eval --help says chars is the default, as lm-eval" '$BIN eval --help | grep -q "characters (default, as lm-eval"'

finish
