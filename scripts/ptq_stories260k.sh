#!/usr/bin/env bash
# Post-training quantization of stories260K with every method at matched bpw (dbf/mdbf sized to
# onebit's cost per layer), perplexity on a story-like text and on WikiText-2 test (window 512).
# The story-like text is sampled from the FP model itself (temperature 1, top-p 0.95, seeds
# 1..N), since no TinyStories split is available here; it is written once to OUT/stories.txt.
#   scripts/ptq_stories260k.sh [OUT]      (default build/ptq-stories260k; BITLLM, BITLLM_DATA)
# WIKI=0 skips the WikiText-2 column (the whole test file, 809k tokens per model).
# CALIB_TEST_BYTES=N calibrates on the first N bytes of WikiText-2 *test* (e.g. 200000) instead of
# the validation split; SEED (default 0) is the quantization seed. WIKI_BYTES=N scores only the
# first N bytes of the test file. TABLE=edges measures instead the cost of storing the token
# embeddings and the output head in fewer bits (`quantize --embed / --head`), with the layers in
# q8_0 (close to the FP model) and in onebit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BITLLM:-build/bitllm}
DATA=${BITLLM_DATA:-../shared}
OUT=${1:-build/ptq-stories260k}
M=$DATA/models/stories260K/stories260K.gguf
WIKI_TXT=$DATA/data/wikitext-2/wiki.test.raw
CALIB=$DATA/data/wikitext-2/tokenized/valid.txt
CALIB_LABEL="wikitext-2 valid, 16k tokens"
SEED=${SEED:-0}
mkdir -p "$OUT"
if [ -n "${WIKI_BYTES:-}" ]; then
  head -c "$WIKI_BYTES" "$WIKI_TXT" > "$OUT/wiki-$WIKI_BYTES.txt"
  WIKI_TXT=$OUT/wiki-$WIKI_BYTES.txt
fi
if [ -n "${CALIB_TEST_BYTES:-}" ]; then
  head -c "$CALIB_TEST_BYTES" "$WIKI_TXT" > "$OUT/calib.txt"
  CALIB=$OUT/calib.txt
  CALIB_LABEL="first $CALIB_TEST_BYTES bytes of wikitext-2 test, 16k tokens"
fi
scripts/stories_text.sh "$BIN" "$M" "$OUT/stories.txt"
col2=calibration
[ "${TABLE:-methods}" = edges ] && col2="embeddings / head"
printf '| method | %s | bpw (layers) | bpw (model) | ppl stories (ctx 512) | tokens | ppl WikiText-2 (ctx 512) | tokens |\n|---|---|---:|---:|---:|---:|---:|---:|\n' "$col2"
run() { # name, calibration label, model
  local s w
  s=$("$BIN" ppl "$3" -f "$OUT/stories.txt" --ctx 512 --json 2>/dev/null)
  w='{"ppl": NaN, "tokens": 0}'
  [ "${WIKI:-1}" = 0 ] || w=$("$BIN" ppl "$3" -f "$WIKI_TXT" --ctx 512 --json 2>/dev/null)
  python3 - "$1" "$2" "$s" "$w" <<'PY'
import json, sys
n, c, s, w = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
wp = f"{w['ppl']:.2f}" if w['tokens'] else "not run"
print(f"| {n} | {c} | {s['bpw_layers']:.3f} | {s['bpw_model']:.3f} | {s['ppl']:.2f} | {s['tokens']} | {wp} | {w['tokens']} |")
PY
}
run fp - "$M"
if [ "${TABLE:-methods}" = edges ]; then
  for layers in q8_0 onebit; do
    for eh in as-stored:as-stored q8_0:as-stored q4_0:as-stored as-stored:q8_0 as-stored:q4_0 \
              q8_0:q8_0 q4_0:q4_0 as-stored:onebit q4_0:onebit; do
      e=${eh%%:*} h=${eh##*:} opt=()
      [ "$e" = as-stored ] || opt+=(--embed "$e")
      [ "$h" = as-stored ] || opt+=(--head "$h")
      d=$OUT/edges-$layers-$e-$h
      [ -d "$d" ] || "$BIN" quantize "$M" -m "$layers" -o "$d" "${opt[@]}" >/dev/null 2>&1
      run "$layers" "$e / $h" "$d"
    done
  done
  exit 0
fi
for m in rtn1 onebit dbf mdbf; do
  seed=(); case $m in dbf|mdbf) seed=(--seed "$SEED");; esac # only the methods that read a seed
  [ -d "$OUT/$m" ] || "$BIN" quantize "$M" -m "$m" -o "$OUT/$m" "${seed[@]}" >/dev/null 2>&1
  run "$m" none "$OUT/$m"
done
# calibrated: the diagonal input importance (mean x², --fit-metric diag) and the inputs'
# covariance H = XᵀX/N (--fit-metric hessian, the default), each without and with the
# output-gradient statistics
for m in onebit dbf mdbf; do
  seed=(); case $m in dbf|mdbf) seed=(--seed "$SEED");; esac
  for fm in diag hessian; do
    lab="inputs x²"; [ $fm = hessian ] && lab="inputs H = XᵀX/N"
    [ -d "$OUT/$m-$fm" ] || "$BIN" quantize "$M" -m "$m" -o "$OUT/$m-$fm" --calib "$CALIB" \
      --fit-metric $fm --no-grad-stats "${seed[@]}" >/dev/null 2>&1
    run "$m" "$lab ($CALIB_LABEL)" "$OUT/$m-$fm"
    [ -d "$OUT/$m-$fm-grad" ] || "$BIN" quantize "$M" -m "$m" -o "$OUT/$m-$fm-grad" \
      --calib "$CALIB" --fit-metric $fm "${seed[@]}" >/dev/null 2>&1
    run "$m" "$lab + output gradients² (same text)" "$OUT/$m-$fm-grad"
  done
done
