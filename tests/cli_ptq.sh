#!/usr/bin/env bash
# One quantization recipe behind both commands: `bitllm quantize` and `bitllm compare` write
# byte-identical layers for the same method, calibration and seed (with the output-gradient
# importance that both collect by default, and without it), and compare reports the parameters
# the checkpoint's provenance records.
set -u
. "$(dirname "$0")/testlib.sh"
M=$G
if [ ! -e "$M" ] || [ ! -e "$DATA/data/piqa/valid.jsonl" ]; then
  echo "SKIP: $M or task data not found"; exit 77
fi
head -c 6000 "$DATA/data/wikitext-2/wiki.test.raw" > "$tmp/calib.txt"
head -c 3000 "$DATA/data/wikitext-2/wiki.test.raw" > "$tmp/text.txt"
cmp_run() { # label, method, extra options (shared by both commands)
  local label=$1 m=$2; shift 2
  $BIN quantize "$M" -o "$tmp/q-$label" -m "$m" "$@" >/dev/null 2>"$tmp/q-$label.err"
  $BIN compare "$M" --methods "$m" --no-fp --tasks piqa --limit 1 -f "$tmp/text.txt" \
    --ppl-tokens 64 --keep --out "$tmp/c-$label" "$@" >/dev/null 2>"$tmp/c-$label.err"
  local d; d=$(ls -d "$tmp/c-$label"/models/* 2>/dev/null | head -1)
  check "quantize and compare write identical layers ($label)" \
    '[ -n "$d" ] && [ -s "$tmp/q-$label/model.safetensors" ] && cmp -s "$tmp/q-$label/model.safetensors" "$d/model.safetensors"'
}
cmp_run dbf-calib dbf --bpw onebit --iters 2 --calib "$tmp/calib.txt" --calib-tokens 300 --seed 11
cmp_run dbf-calib-nograd dbf --bpw onebit --iters 2 --calib "$tmp/calib.txt" --calib-tokens 300 --no-grad-stats --seed 11
cmp_run mdbf-2 mdbf --bpw 4 --envelope-rank 2 --iters 2 --seed 11
cmp_run rtn2 rtn2 --group 64
cmp_run onebit-calib onebit --calib "$tmp/calib.txt" --calib-tokens 300 --reconstruct none
# block reconstruction (the default with calibration data), with generated calibration sequences
cmp_run onebit-recon onebit --calib-generate 4 --calib-seq 32 --recon-epochs 1 --seed 5
cmp_run dbf-recon-scales dbf --iters 2 --calib "$tmp/calib.txt" --calib-tokens 300 --calib-seq 64 --recon-epochs 1 --calibrate-scales --seed 11
check "gradient importance differs from input statistics only" \
  '! cmp -s "$tmp/q-dbf-calib/model.safetensors" "$tmp/q-dbf-calib-nograd/model.safetensors"'
check "compare's params are the written provenance" 'python3 -c "
import json,sys
row=json.loads(open(sys.argv[1]).readline())
prov=json.load(open(sys.argv[2]))[\"quantization_config\"][\"provenance\"]
for k in (\"method\",\"bpw_target\",\"seed\",\"iters\",\"calib_tokens\",\"gradient_importance\",\"calib\"):
    assert row[\"params\"][k]==prov[k], (k, row[\"params\"], prov)
assert prov[\"gradient_importance\"] is True and prov[\"calib_tokens\"]==300
" "$tmp/c-dbf-calib/results.jsonl" "$(ls -d "$tmp/c-dbf-calib"/models/*)/config.json"'
check "calibrated fits are Hessian-aware by default, recorded as fit_metric" 'python3 -c "
import json,sys
for f in sys.argv[1:]:
    assert json.load(open(f))[\"quantization_config\"][\"provenance\"][\"fit_metric\"]==\"hessian\", f
" "$tmp/q-dbf-calib/config.json" "$tmp/q-onebit-calib/config.json"'
$BIN quantize "$M" -o "$tmp/q-diag" -m dbf --bpw onebit --iters 2 --calib "$tmp/calib.txt" \
  --calib-tokens 300 --seed 11 --fit-metric diag >/dev/null 2>&1
prov() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['quantization_config']['provenance'].get(sys.argv[2]))" "$1/config.json" "$2"; }
check "--fit-metric diag: another fit, recorded" '! cmp -s "$tmp/q-diag/model.safetensors" "$tmp/q-dbf-calib/model.safetensors" && [ "$(prov "$tmp/q-diag" fit_metric)" = diag ]'
expect_usage "--fit-metric with a bad value" "'hessian' or 'diag'" $BIN quantize "$M" -o "$tmp/q-x" -m dbf --calib "$tmp/calib.txt" --fit-metric full
expect_usage "--fit-metric without calibration data" "--fit-metric needs calibration data" $BIN quantize "$M" -o "$tmp/q-x" -m dbf --fit-metric diag
# the per-matrix bit budget: the same total bits as the uniform run, a table in --json
$BIN quantize "$M" -o "$tmp/q-u" -m dbf --iters 2 --calib "$tmp/calib.txt" --calib-tokens 300 --seed 11 --json >"$tmp/u.json" 2>/dev/null
$BIN quantize "$M" -o "$tmp/q-a" -m dbf --iters 2 --calib "$tmp/calib.txt" --calib-tokens 300 --seed 11 --allocate --json >"$tmp/a.json" 2>"$tmp/a.err"
check "--allocate: within 0.01 bpw of the uniform run, per-layer table in --json and on stderr" 'python3 -c "
import json,sys
u=json.load(open(sys.argv[1])); a=json.load(open(sys.argv[2]))
A=a[\"allocation\"]; assert len(A)==35 and all(k in A[0] for k in (\"name\",\"shape\",\"mid\",\"mid_uniform\",\"bpw\",\"sensitivity\"))
assert abs(a[\"bpw_layers\"]-u[\"bpw_layers\"])<=0.01 and a[\"bpw_layers\"]<=u[\"bpw_layers\"]+1e-12
assert any(x[\"mid\"]!=x[\"mid_uniform\"] for x in A)
assert [l[\"mid\"] for l in a[\"layers\"]]==[x[\"mid\"] for x in A]
" "$tmp/u.json" "$tmp/a.json" && grep -q "bit allocation:" "$tmp/a.err" && [ "$(prov "$tmp/q-a" allocate)" = True ]'
expect_usage "--allocate with a format without a size knob" "--allocate is not used by -m onebit (used by: dbf, mdbf)" $BIN quantize "$M" -o "$tmp/q-x" -m onebit --allocate
check "report reads a numeric bpw target back from its exact form" \
  'grep -q "| 4 |\|| 4 " "$tmp/c-mdbf-2/report.md"'
# The recipe's result does not depend on the thread count (the fits' BLAS/LAPACK calls run on one
# OpenBLAS thread from the start of each fit; before, mdbf's first LAPACK calls ran threaded).
# OMP_NUM_THREADS, which testlib sets to 1 and OpenBLAS also reads, is unset for these runs.
for t in 1 2; do
  env -u OMP_NUM_THREADS $BIN quantize "$M" -o "$tmp/t$t" -m mdbf --seed 11 --threads $t >/dev/null 2>"$tmp/t$t.err"
done
check "quantize writes the same file at 1 and 2 threads" \
  '[ -s "$tmp/t1/model.safetensors" ] && cmp -s "$tmp/t1/model.safetensors" "$tmp/t2/model.safetensors"'
# --embed / --head: stored as asked (q8_0 table with a row lookup, q4_0 head), the whole-model bpw
# drops, perplexity is computed from it, the option is recorded in the provenance; bad values are
# refused before any work, naming the option, and leave no output.
$BIN quantize "$M" -o "$tmp/eh" -m onebit --embed q8_0 --head q4_0 >/dev/null 2>"$tmp/eh.err"
$BIN quantize "$M" -o "$tmp/plain" -m onebit >/dev/null 2>"$tmp/plain.err"
check "--embed q8_0 --head q4_0 stores both through qsym" 'python3 -c "
import json,sys
c=json.load(open(sys.argv[1]))
q=c[\"quantization_config\"]
assert q[\"layers\"][\"model.embed_tokens\"][\"format\"]==\"qsym\" and q[\"layers\"][\"model.embed_tokens\"][\"bits\"]==8, q[\"layers\"].get(\"model.embed_tokens\")
assert q[\"layers\"][\"lm_head\"][\"bits\"]==4 and q[\"provenance\"][\"embed\"]==\"q8_0\" and q[\"provenance\"][\"head\"]==\"q4_0\"
assert c[\"tie_word_embeddings\"] is False
" "$tmp/eh/config.json"'
bp=$($BIN ppl "$tmp/eh" -f "$tmp/text.txt" --ctx 128 --json 2>/dev/null | python3 -c "import json,sys;o=json.load(sys.stdin);print(o['ppl'] > 1 and o['tokens'] > 0)")
check "a model with a quantized embedding and head computes perplexity" '[ "$bp" = True ]'
check "quantized embedding and head are smaller" \
  '[ $(stat -c %s "$tmp/eh/model.safetensors") -lt $(stat -c %s "$tmp/plain/model.safetensors") ]'
check "the default writes no embed/head provenance" '! grep -q "\"embed\"\|\"head\"" "$tmp/plain/config.json"'
expect_fail "--embed with a format without a row lookup" "row lookup" \
  $BIN quantize "$M" -o "$tmp/bad1" -m onebit --embed onebit
expect_fail "--head with an unknown format" "head" $BIN quantize "$M" -o "$tmp/bad2" -m onebit --head q3_7
expect_fail "--embed with an empty value" "embed" $BIN quantize "$M" -o "$tmp/bad3" -m onebit --embed ""
check "refused runs leave no output" '[ ! -e "$tmp/bad1" ] && [ ! -e "$tmp/bad2" ] && [ ! -e "$tmp/bad3" ]'
finish
