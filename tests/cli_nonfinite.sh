#!/usr/bin/env bash
# Non-finite values at run time, end to end. stories260K's HF form is copied with its final norm
# set to NaN (the case that made generate read out of bounds and print ids [0,0,0]) and, as a
# second model, with layer 1's attention norm set to 1e30 (finite weights whose activations
# overflow to Inf). generate, ppl, eval, quantize calibration and distill must stop with an
# error that names what and where, exit non-zero, print no result, and draw no sanitizer report.
set -u
. "$(dirname "$0")/testlib.sh"
if [ ! -e "$S/hf/model.safetensors" ]; then echo "SKIP: $S/hf not found"; exit 77; fi

# patch NAME VALUE DIR: a copy of the HF checkpoint with every element of tensor NAME set to VALUE
patch() {
  mkdir -p "$3" && cp "$S/hf/config.json" "$3/" && cp "$S/tok512.bin" "$3/tokenizer.bin"
  python3 - "$S/hf/model.safetensors" "$3/model.safetensors" "$1" "$2" <<'PY'
import json, struct, sys
src, dst, name, value = sys.argv[1:5]
data = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
hdr = json.loads(data[8:8 + n])
t = hdr[name]
assert t["dtype"] == "F32", t
a, b = t["data_offsets"]
base = 8 + n
data[base + a:base + b] = struct.pack("<f", float(value)) * ((b - a) // 4)
open(dst, "wb").write(data)
PY
}
patch model.norm.weight nan "$tmp/nan"
patch model.layers.1.input_layernorm.weight 1e30 "$tmp/huge"

# The NaN final norm may be refused when the model is loaded (naming the tensor) or when it is
# first used; either way the message names it.
NAN_PAT="(model\.norm|final norm).*(not finite|non-finite|NaN)|(not finite|non-finite|NaN).*(model\.norm|final norm)"
for mode in "--temp 0" "--temp 1 --top-p 1" "--temp 0.8 --top-p 0.5"; do
  expect_fail "generate $mode, NaN final norm" "$NAN_PAT" $BIN generate "$tmp/nan" -n 3 $mode --json
done
expect_fail "generate (text), NaN final norm" "$NAN_PAT" $BIN generate "$tmp/nan" -n 3 --temp 0.8 --top-p 0.5
echo "Once upon a time there was a little cat. The cat liked to play in the sun." >"$tmp/t.txt"
expect_fail "ppl, NaN final norm" "$NAN_PAT" $BIN ppl "$tmp/nan" -f "$tmp/t.txt" --json
if [ -e "$DATA/data/piqa/valid.jsonl" ] || [ -e "$DATA/data/llm-foundry-icl/piqa.jsonl" ]; then
  expect_fail "eval, NaN final norm" "$NAN_PAT" $BIN eval "$tmp/nan" --tasks piqa --limit 2 --json
fi
expect_fail "quantize --calib (gradient statistics), NaN final norm" "$NAN_PAT" \
  $BIN quantize "$tmp/nan" -m dbf --calib "$tmp/t.txt" -o "$tmp/q-nan"
check "... wrote nothing" '[ ! -e "$tmp/q-nan" ] && [ -z "$(ls "$tmp" | grep "q-nan\.")" ]'
$BIN quantize "$S/stories260K.gguf" -m onebit -o "$tmp/ob" >/dev/null 2>&1
expect_fail "distill with a NaN teacher" "$NAN_PAT" \
  $BIN distill "$tmp/nan" "$tmp/ob" -o "$tmp/d-nan" --data "$tmp/t.txt" --seq 8 --batch 1 --steps 2

# Inf activations from finite weights: only the forward pass can see them
LAYER_PAT="huge.*non-finite value .*layer 1 after attention.*token position [0-9]+"
expect_fail "generate, Inf activations" "$LAYER_PAT" $BIN generate "$tmp/huge" -n 3 --temp 0 --json
expect_fail "generate -p, Inf activations (the prompt)" "prompt: .*$LAYER_PAT" \
  $BIN generate "$tmp/huge" -p "Once upon a time" -n 3 --temp 0
expect_fail "ppl, Inf activations, names the chunk and the text" "t\.txt: chunk 1 \(text tokens 0 to [0-9]+\): .*$LAYER_PAT" \
  $BIN ppl "$tmp/huge" -f "$tmp/t.txt"
expect_fail "quantize calibration, Inf activations" "calibration: window 1.*$LAYER_PAT" \
  $BIN quantize "$tmp/huge" -m dbf --calib "$tmp/t.txt" --no-grad-stats --reconstruct none -o "$tmp/q-huge"
expect_fail "quantize block reconstruction, Inf activations" "reconstruction of block 2: the output of the FP block is not finite \(sequence 0, position [0-9]+\) in .*huge" \
  $BIN quantize "$tmp/huge" -m dbf --calib "$tmp/t.txt" --no-grad-stats --calib-seq 8 -o "$tmp/q-huge"
expect_fail "distill, Inf activations in the student's teacher" "teacher .*huge.* non-finite value in the output of layer 1" \
  $BIN distill "$tmp/huge" "$tmp/ob" -o "$tmp/d-huge" --data "$tmp/t.txt" --seq 8 --batch 1 --steps 2
check "distill stopped before writing a model" '[ ! -e "$tmp/d-huge/model.safetensors" ]'

finish
