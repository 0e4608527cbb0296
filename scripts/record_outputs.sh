#!/usr/bin/env bash
# Records what a refactor must not change, on this machine: greedy ids, ppl at a fixed context,
# eval with --limit, and the sha256 of every file `bitllm quantize` writes for each method at a
# fixed seed (plus greedy ids and ppl of each quantized model). Run it before and after a change
# with the same build type and diff the two outputs. Hashes of fitted files depend on the BLAS
# and the CPU, which is why this is a script and not a test.
# usage: scripts/record_outputs.sh BIN OUTFILE [method ...]
set -eu
BIN=$1; OUT=$2; shift 2
DATA=${BITLLM_DATA:-../shared}
S=$DATA/models/stories260K
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -c 20000 "$DATA/data/wikitext-2/wiki.test.raw" > "$tmp/wiki.txt"
methods=${*:-rtn1 rtn2 rtn3 rtn4 onebit dbf mdbf}
export OMP_NUM_THREADS=1  # fits are thread-count independent; one thread keeps it cheap
{
  echo "greedy $($BIN generate "$S/stories260K.gguf" -n 48 --temp 0 --json 2>/dev/null | python3 -c 'import json,sys;print(json.load(sys.stdin)["ids"])')"
  echo "ppl $($BIN ppl "$S/stories260K.gguf" -f "$tmp/wiki.txt" --ctx 128 --json 2>/dev/null | python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["ppl"].hex(),d["tokens"])')"
  echo "eval $($BIN eval "$S/stories260K.gguf" --tasks piqa --limit 20 --json 2>/dev/null | python3 -c 'import json,sys;d=json.load(sys.stdin)["tasks"]["piqa"];print(d["acc"],d["acc_norm"],d["tokens"])')"
  for m in $methods; do
    extra=""
    case $m in mdbf*) extra="--envelope-rank 2 --paths 2 --bpw 4.0 --seed 11 --iters 3";;
      dbf*) extra="--bpw 1.5 --seed 11 --iters 3";; rtn[234]) extra="--group 64";; esac
    $BIN quantize "$S/stories260K.gguf" -o "$tmp/q-$m" -m $m $extra >/dev/null 2>&1
    for f in $(cd "$tmp/q-$m" && ls); do
      if [ "$f" = config.json ]; then
        # the provenance names the temporary source path: hash config.json without it
        h=$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(json.dumps(d,sort_keys=True))' "$tmp/q-$m/$f" | sed "s#$tmp##g" | sha256sum | cut -c1-16)
      else h=$(sha256sum "$tmp/q-$m/$f" | cut -c1-16); fi
      echo "quantize $m $f $h"
    done
    echo "quantized-greedy $m $($BIN generate "$tmp/q-$m" -n 24 --temp 0 --json 2>/dev/null | python3 -c 'import json,sys;print(json.load(sys.stdin)["ids"])')"
    echo "quantized-ppl $m $($BIN ppl "$tmp/q-$m" -f "$tmp/wiki.txt" --ctx 128 --json 2>/dev/null | python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["ppl"].hex(),d["tokens"],d["bpw_layers"])')"
  done
} > "$OUT"
