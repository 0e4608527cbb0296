#!/usr/bin/env bash
# Block-wise reconstruction at real sizes (docs/reconstruct.md): a random-weight model with
# TinyLlama-1.1B dimensions (bitllm synth, LAYERS blocks), quantized with --reconstruct block on
# NSEQ generated sequences of SEQ tokens for EPOCHS epochs, per method: seconds per block and
# their split into initial fits, forward and backward passes (quantize --json), peak RSS, and the
# hours a 7B (Llama-2 shapes, 32 blocks) and a 70B (Llama-2-70B shapes, 80 blocks) model would
# take on this machine with the same calibration set. Extrapolation: forward/backward time scales
# with a block's parameter count (per token), the fits with it to the power 1.5 (a DBF/MDBF fit
# costs m·n·k per iteration with k ∝ the matrix size at a fixed bpw); memory is not extrapolated.
# Prints a markdown table with the machine and the load average.
# dbf/mdbf fits run ITERS ADMM iterations (default 3, so that a run takes minutes: the default
# convergence stop needs 190–260, about 70× the fit time shown; docs/fits.md).
#   bench/recon_bench.sh [WORKDIR]   env: LAYERS (1), NSEQ (4), SEQ (128), EPOCHS (1), ITERS (3),
#                                         METHODS ("onebit dbf mdbf"), THREADS (2), BUILD (build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$here/build}
BIN=$BUILD/bitllm
W=${1:-/tmp/bitllm-recon-bench}
LAYERS=${LAYERS:-1}
ITERS=${ITERS:-3}
NSEQ=${NSEQ:-4}
SEQ=${SEQ:-128}
EPOCHS=${EPOCHS:-1}
METHODS=${METHODS:-onebit dbf mdbf}
THREADS=${THREADS:-2}
[ -x "$BIN" ] || { echo "build first: make (needs $BIN)" >&2; exit 1; }
mkdir -p "$W"
M=$W/model
[ -s "$M/model.safetensors" ] || "$BIN" synth -a tinyllama-1.1b --layers "$LAYERS" -o "$M" >/dev/null 2>&1
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $THREADS threads; model: tinyllama-1.1b dims, $LAYERS blocks (random weights)"
echo "calibration: $NSEQ generated sequences x $SEQ tokens = $((NSEQ * SEQ)) tokens, $EPOCHS epoch(s) per block; dbf/mdbf fits: $ITERS ADMM iterations"
echo
printf '| method | s/block | fit | forward | backward | other | peak RSS MiB | 7B h (32 blocks) | 70B h (80 blocks) | load avg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
for m in $METHODS; do
  rm -rf "$W/q-$m"
  it=(); case $m in dbf|mdbf) it=(--iters "$ITERS");; esac
  /usr/bin/time -f "%M" -o "$W/$m.rss" "$BIN" quantize "$M" -m "$m" -o "$W/q-$m" \
    --calib-generate "$NSEQ" --calib-seq "$SEQ" --recon-epochs "$EPOCHS" --recon-batch 2 \
    --threads "$THREADS" "${it[@]}" --json >"$W/$m.json" 2>"$W/$m.err"
  python3 - "$m" "$W/$m.json" "$(cat "$W/$m.rss")" "$(uptime | sed 's/.*load average: //')" <<'PY'
import json, sys
m, j, rss, load = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), sys.argv[4]
b = j["blocks"]
n = len(b)
sec = sum(x["seconds"] for x in b) / n
fit = sum(x["fit_seconds"] for x in b) / n
fw = sum(x["forward_seconds"] for x in b) / n
bw = sum(x["backward_seconds"] for x in b) / n
def block_params(d, h, nh, nkv, hd):
    return 2 * d * nh * hd + 2 * d * nkv * hd + 3 * d * h
tiny = block_params(2048, 5632, 32, 4, 64)
def hours(params, blocks):
    r = params / tiny
    return blocks * (fit * r ** 1.5 + (sec - fit) * r) / 3600
h7 = hours(block_params(4096, 11008, 32, 32, 128), 32)
h70 = hours(block_params(8192, 28672, 64, 8, 128), 80)
print(f"| {m} | {sec:.1f} | {fit/sec:.0%} | {fw/sec:.0%} | {bw/sec:.0%} | {(sec-fit-fw-bw)/sec:.0%} | "
      f"{rss/1024:.0f} | {h7:.1f} | {h70:.1f} | {load} |")
PY
done
