#!/usr/bin/env bash
# Reference values of the model paths on stories260K, one "key value" line each: greedy and
# sampled ids from the three checkpoint forms, perplexity at a fixed context, eval accuracies with
# --limit, the sha256 of every method's quantized files at a fixed seed (with and without
# calibration), a short distillation's output, a synthetic model and the parameter/bit counts.
# Run it before and after a refactor of the loading, saving, quantization or training code and
# diff the two outputs: they must be identical.
#   scripts/golden.sh [OUT]        (BITLLM: the binary, default build/bitllm; BITLLM_DATA)

set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BITLLM:-build/bitllm}
DATA=${BITLLM_DATA:-../shared}
S=$DATA/models/stories260K
OUT=${1:-/dev/stdout}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py() { python3 -c "$@"; }
field() { py "import json,sys; d=json.load(sys.stdin); print(repr(eval('d' + sys.argv[1])))" "$1"; }
# config.json without the parts that name the temporary directory or the version
cfg() { py "import json,sys; d=json.load(open(sys.argv[1])); q=d.get('quantization_config',{}); q.pop('bitllm_version',None); q.get('provenance',{}).pop('command',None); print(json.dumps(d, sort_keys=True))" "$1" | sha256sum | cut -c1-64; }
sha() { sha256sum "$@" | cut -c1-64 | tr '\n' ' '; echo; }
{
for form in "$S/stories260K.gguf" "$S/stories260K.bin --tokenizer $S/tok512.bin" \
            "$S/hf --tokenizer $S/tok512.bin"; do
  echo "greedy[$(basename "${form%% *}")] $($BIN generate $form -n 48 --temp 0 --json 2>/dev/null | field "['ids']")"
  echo "sample[$(basename "${form%% *}")] $($BIN generate $form -n 32 --temp 1 --top-p 0.9 --seed 7 --json 2>/dev/null | field "['ids']")"
done
head -c 20000 "$DATA/data/wikitext-2/wiki.test.raw" > "$tmp/wiki.txt"
head -c 8000 "$DATA/data/wikitext-2/wiki.test.raw" > "$tmp/calib.txt"
for form in "$S/stories260K.gguf" "$S/hf --tokenizer $S/tok512.bin"; do
  echo "ppl[$(basename "${form%% *}")] $($BIN ppl $form -f "$tmp/wiki.txt" --ctx 128 --json 2>/dev/null | field "['nll']")"
done
echo "info $($BIN info "$S/stories260K.gguf" --json 2>/dev/null | py "import json,sys; d=json.load(sys.stdin); print(d['params'], [d.get(k) for k in sorted(d) if k.startswith('bpw') or k.endswith('bits')])")"
echo "eval $($BIN eval "$S/stories260K.gguf" --tasks piqa,hellaswag,arc_easy --limit 12 --json 2>/dev/null | py "import json,sys; d=json.load(sys.stdin); [t.pop('seconds', None) for t in d['tasks'].values()]; print(json.dumps(d['tasks'], sort_keys=True))")"
for m in rtn1 rtn2 rtn3 rtn4 onebit dbf mdbf; do
  x=""; case $m in dbf|mdbf) x="--iters 3 --seed 5";; esac
  $BIN quantize "$S/stories260K.gguf" -o "$tmp/q-$m" -m $m $x >/dev/null 2>&1
  echo "quantize[$m] $(sha "$tmp/q-$m/model.safetensors") $(cfg "$tmp/q-$m/config.json")"
  echo "quantize-ppl[$m] $($BIN ppl "$tmp/q-$m" -f "$tmp/wiki.txt" --ctx 128 --json 2>/dev/null | field "['nll']")"
done
$BIN quantize "$S/stories260K.gguf" -o "$tmp/q-mdbf2" -m mdbf --envelope-rank 2 --paths 2 --bpw 4 --iters 3 --seed 3 --calib "$tmp/calib.txt" --calib-tokens 512 >/dev/null 2>&1
echo "quantize[mdbf2-calib] $(sha "$tmp/q-mdbf2/model.safetensors")"
$BIN quantize "$S/stories260K.gguf" -o "$tmp/q-dbfc" -m dbf --iters 3 --seed 2 --calib "$tmp/calib.txt" --calib-tokens 512 >/dev/null 2>&1
echo "quantize[dbf-calib] $(sha "$tmp/q-dbfc/model.safetensors")"
$BIN quantize "$S/stories260K.gguf" -o "$tmp/q-dbfr" -m dbf --random-factors --seed 9 >/dev/null 2>&1
echo "quantize[dbf-random] $(sha "$tmp/q-dbfr/model.safetensors")"
# the group-wise formats at awkward parameters (groups that straddle code bytes), and their ppl
for m in q8_0 q4_0 qsym:bits=3,group=7 rtn:bits=3,group=5; do
  $BIN quantize "$S/stories260K.gguf" -o "$tmp/g" -m $m >/dev/null 2>&1
  echo "quantize[$m] $(sha "$tmp/g/model.safetensors") $(cfg "$tmp/g/config.json")"
  echo "quantize-ppl[$m] $($BIN ppl "$tmp/g" -f "$tmp/wiki.txt" --ctx 128 --json 2>/dev/null | field "['nll']")"
  rm -rf "$tmp/g"
done
$BIN quantize "$S/stories260K.gguf" -o "$tmp/q-mdbfr" -m mdbf:rank_l=3,paths=2 --random-factors --bpw 6 --seed 4 >/dev/null 2>&1
echo "quantize[mdbf-random] $(sha "$tmp/q-mdbfr/model.safetensors")"
echo "quantize-ppl[mdbf-random] $($BIN ppl "$tmp/q-mdbfr" -f "$tmp/wiki.txt" --ctx 128 --json 2>/dev/null | field "['nll']")"
$BIN distill "$S/stories260K.gguf" "$tmp/q-onebit" -o "$tmp/d1" --generate 6 --seq 32 --batch 2 --steps 4 --seed 1 >/dev/null 2>&1
echo "distill[onebit] $(sha "$tmp/d1/model.safetensors")"
$BIN distill "$S/stories260K.gguf" "$tmp/q-mdbf" -o "$tmp/d2" --generate 6 --seq 32 --batch 2 --steps 3 --seed 1 >/dev/null 2>&1
echo "distill[mdbf] $(sha "$tmp/d2/model.safetensors")"
$BIN convert "$S/stories260K.gguf" -o "$tmp/conv" >/dev/null 2>&1 && echo "convert $(sha "$tmp/conv/model.safetensors")"
# small synthetic checkpoints of each family (biases, q/k-norm, untied head), quantized
for fam in llama:false:false:false qwen2:true:false:true qwen3:false:true:true mistral:false:false:false; do
  IFS=: read -r mt bias qkn tied <<<"$fam"
  cat > "$tmp/$mt.json" <<J
{"architectures": ["X"], "model_type": "$mt", "hidden_size": 96, "intermediate_size": 160,
 "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16,
 "vocab_size": 300, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000,
 "tie_word_embeddings": $tied, "attention_bias": $bias, "bos_token_id": 1, "eos_token_id": 2}
J
  $BIN synth -c "$tmp/$mt.json" -o "$tmp/syn-$mt" --dtype f32 --seed 3 >/dev/null 2>&1
  echo "synth[$mt] $(sha "$tmp/syn-$mt/model.safetensors" "$tmp/syn-$mt/config.json")"
  echo "synth-info[$mt] $($BIN info "$tmp/syn-$mt" --json 2>/dev/null | py "import json,sys; d=json.load(sys.stdin); print(d['params'], [d.get(k) for k in sorted(d) if k.startswith('bpw') or k.endswith('bits')])")"
  $BIN quantize "$tmp/syn-$mt" -o "$tmp/synq-$mt" -m dbf --iters 2 --seed 1 >/dev/null 2>&1
  echo "synth-quantize[$mt] $(sha "$tmp/synq-$mt/model.safetensors")"
  $BIN distill "$tmp/syn-$mt" "$tmp/synq-$mt" -o "$tmp/synd-$mt" --generate 4 --seq 16 --batch 2 --steps 2 --seed 1 >/dev/null 2>&1
  echo "synth-distill[$mt] $(sha "$tmp/synd-$mt/model.safetensors")"
  $BIN convert "$tmp/synq-$mt" -o "$tmp/synqc-$mt" >/dev/null 2>&1 && echo "synth-convert[$mt] $(sha "$tmp/synqc-$mt/model.safetensors")"
done
} > "$OUT"
