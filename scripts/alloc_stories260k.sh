#!/usr/bin/env bash
# Per-matrix bit allocation against uniform sizes on stories260K: dbf and mdbf at OneBit's bpw
# (or BPW), calibrated as scripts/ptq_stories260k.sh does (CALIB_TEST_BYTES, SEED), with and
# without the output-gradient importance; perplexity on the same held-out story text (ctx 512).
#   scripts/alloc_stories260k.sh [OUT]   (default build/alloc-stories260k; BITLLM, BITLLM_DATA)
# Reuses OUT/stories.txt and OUT/calib.txt when present (e.g. OUT = ptq_stories260k.sh's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BITLLM:-build/bitllm}
DATA=${BITLLM_DATA:-../shared}
OUT=${1:-build/alloc-stories260k}
M=$DATA/models/stories260K/stories260K.gguf
SEED=${SEED:-1}
BPW=${BPW:-onebit}
mkdir -p "$OUT"
if [ ! -s "$OUT/calib.txt" ]; then
  head -c "${CALIB_TEST_BYTES:-200000}" "$DATA/data/wikitext-2/wiki.test.raw" > "$OUT/calib.txt"
fi
scripts/stories_text.sh "$BIN" "$M" "$OUT/stories.txt"
printf '| method | gradient importance | sizes | bpw (layers) | ppl stories (ctx 512) | tokens |\n|---|---|---|---:|---:|---:|\n'
for spec in dbf mdbf mdbf:paths=2; do
  for grad in yes no; do
    g=(); [ $grad = no ] && g=(--no-grad-stats)
    for sizes in uniform allocated; do
      a=(); [ $sizes = allocated ] && a=(--allocate)
      d="$OUT/${spec//[:=]/_}-$grad-$sizes"
      [ -d "$d" ] || "$BIN" quantize "$M" -m "$spec" --bpw "$BPW" -o "$d" --calib "$OUT/calib.txt" \
        --seed "$SEED" "${g[@]}" "${a[@]}" >/dev/null 2>&1
      "$BIN" ppl "$d" -f "$OUT/stories.txt" --ctx 512 --json 2>/dev/null | python3 -c "
import json, sys
s = json.load(sys.stdin)
print(f\"| $spec | $grad | $sizes | {s['bpw_layers']:.4f} | {s['ppl']:.2f} | {s['tokens']} |\")"
    done
  done
done
