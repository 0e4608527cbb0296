#!/usr/bin/env bash
# The main job on the default model: what the model is, a sample from it, and its perplexity.
# BITLLM_MODEL picks another model (HF directory, .gguf, or llama2.c .bin + BITLLM_TOKENIZER).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BITLLM_DATA:-../shared}
MODEL=${BITLLM_MODEL:-$DATA/models/stories260K/stories260K.gguf}
TEXT=${BITLLM_TEXT:-$DATA/data/wikitext-2/wiki.test.raw}
BIN=build/bitllm

if [ ! -e "$MODEL" ]; then
  # Fall back to the public stories260K checkpoint when the network allows.
  mkdir -p models/stories260K
  base=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
  if [ ! -s models/stories260K/stories260K.bin ] && command -v curl >/dev/null; then
    echo "no model at $MODEL; trying to download stories260K" >&2
    curl -fsSL -o models/stories260K/stories260K.bin.part "$base/stories260K.bin" &&
      curl -fsSL -o models/stories260K/tok512.bin "$base/tok512.bin" &&
      mv models/stories260K/stories260K.bin.part models/stories260K/stories260K.bin || true
  fi
  if [ -s models/stories260K/stories260K.bin ]; then
    MODEL=models/stories260K/stories260K.bin
    export BITLLM_TOKENIZER=models/stories260K/tok512.bin
  else
    echo "No model found. Point BITLLM_MODEL at a Hugging Face directory, a .gguf file or a" >&2
    echo "llama2.c .bin (with BITLLM_TOKENIZER=tokenizer.bin), e.g." >&2
    echo "  BITLLM_MODEL=/path/to/stories260K.gguf make demo" >&2
    exit 1
  fi
fi
TOK=()
[ -n "${BITLLM_TOKENIZER:-}" ] && TOK=(--tokenizer "$BITLLM_TOKENIZER")

METHOD=${BITLLM_METHOD:-mdbf}
OUT=${BITLLM_OUT:-out/demo-$METHOD}
mkdir -p out
# A 100 kB slice of WikiText-2 test keeps the demo to a minute or two; `bitllm ppl -f` on the
# whole file gives the full number.
EVAL=out/wiki-100k.txt
if [ -e "$TEXT" ]; then head -c 100000 "$TEXT" > "$EVAL"; else
  printf 'Once upon a time, there was a little girl named Lily. She loved to play outside.\n%.0s' {1..200} > "$EVAL"; fi

echo "== 1. the model"
"$BIN" info "$MODEL" "${TOK[@]}" | head -5
echo
# Calibration sequences sampled from the model itself, block-wise reconstruction, then the scale
# vectors tuned on the FP model's output distribution (docs/reconstruct.md); BITLLM_DEMO_PTQ=none
# shows the plain layer-wise fit instead.
RECIPE=(--calib-generate 64 --recon-epochs 4 --calibrate-scales)
[ "${BITLLM_DEMO_PTQ:-block}" = none ] && RECIPE=()
echo "== 2. quantize every q,k,v,o,gate,up,down projection with $METHOD (bpw matched to OneBit's)"
echo "      ${RECIPE[*]:-(layer-wise fit, no calibration)}"
"$BIN" quantize "$MODEL" "${TOK[@]}" -m "$METHOD" -o "$OUT" "${RECIPE[@]}" --json > out/quantize.json
echo
echo "== 3. perplexity on $(basename "$EVAL") and a greedy sample from each (and one with a repetition penalty)"
"$BIN" ppl "$MODEL" "${TOK[@]}" -f "$EVAL" --ctx 512 --json > out/ppl-fp.json
"$BIN" ppl "$OUT" -f "$EVAL" --ctx 512 --json > out/ppl-q.json
"$BIN" generate "$MODEL" "${TOK[@]}" -n 40 --temp 0 --json > out/gen-fp.json 2>/dev/null
"$BIN" generate "$OUT" -n 40 --temp 0 --json > out/gen-q.json 2>/dev/null
"$BIN" generate "$OUT" -n 40 --temp 0 --repeat-penalty 1.3 --json > out/gen-q-rp.json 2>/dev/null
python3 - "$METHOD" "$MODEL" "$OUT" <<'PY'
import json, os, sys
method, model, out = sys.argv[1:4]
def load(p): return json.load(open(p))
pf, pq = load("out/ppl-fp.json"), load("out/ppl-q.json")
gf, gq, gr = load("out/gen-fp.json"), load("out/gen-q.json"), load("out/gen-q-rp.json")
size = lambda p: sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p)) if os.path.isdir(p) else os.path.getsize(p)
print(f"{'':10} {'ppl':>10} {'bpw layers':>11} {'bpw model':>10} {'size':>10}   (ctx {pf['ctx']}, {pf['tokens']} tokens)")
print(f"{'fp':10} {pf['ppl']:10.2f} {pf['bpw_layers']:11.3f} {pf['bpw_model']:10.3f} {size(model)/1024:8.0f} KB")
print(f"{method:10} {pq['ppl']:10.2f} {pq['bpw_layers']:11.3f} {pq['bpw_model']:10.3f} {size(out)/1024:8.0f} KB")
print()
def sample(g):
    t = g.get("text", "").strip()
    n = len(g['ids'])
    return t if t else ("(EOS at once)" if n == 0 else f"({n} tokens that decode to whitespace only)")
print("fp:     " + sample(gf))
print(f"{method}: ".ljust(8) + sample(gq))
print(f"{method}, --repeat-penalty 1.3: " + sample(gr))
PY
echo
echo "The quantized model is in $OUT (loadable by every bitllm command)."
