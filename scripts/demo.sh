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

echo "== bitllm info $MODEL"
"$BIN" info "$MODEL" "${TOK[@]}" | head -8
echo
echo "== greedy sample (64 tokens from BOS)"
"$BIN" generate "$MODEL" "${TOK[@]}" -n 64 --temp 0
echo
if [ -e "$TEXT" ]; then
  echo "== perplexity on $(basename "$TEXT") (ctx 512)"
  "$BIN" ppl "$MODEL" "${TOK[@]}" -f "$TEXT" --ctx 512
fi
