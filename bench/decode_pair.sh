#!/usr/bin/env bash
# Decode speed of bitllm against llama.cpp at equal depth, in many short alternating pairs: on a
# shared host whose speed drifts by a third within minutes, the ratio inside each pair (two runs
# seconds apart) is steadier than the ratio of two separate best-of runs. llama-bench's tg test
# decodes N tokens from an empty cache; bitllm speed decodes N tokens after a P-token prompt, so
# bitllm runs with -p 1 here (positions 1..N against llama.cpp's 0..N-1). Prints one Markdown row
# per pair and the median ratio, with the machine, the load average and one core's bandwidth.
#
#   bench/decode_pair.sh LLAMA_GGUF BITLLM_MODEL    env: THREADS ("1 2"), PAIRS (8), N (32),
#                                                        LLAMA (llama.cpp's build/bin),
#                                                        BUILD (build)
# The models are the side-by-side ones (../shared/tools/peers_setup.sh and perf_side_by_side.sh,
# or `bitllm quantize F16.gguf -m onebit --random-factors --embed q8_0 --head q4_0 -o DIR`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
LG=${1:?usage: decode_pair.sh LLAMA_GGUF BITLLM_MODEL}
BM=${2:?usage: decode_pair.sh LLAMA_GGUF BITLLM_MODEL}
BIN=${BUILD:-$here/build}/bitllm
LLAMA=${LLAMA:-$HOME/bitllm-peers/llama.cpp/build/bin}
THREADS=${THREADS:-1 2}
PAIRS=${PAIRS:-8}
N=${N:-32}
[ -x "$BIN" ] || { echo "build first: make" >&2; exit 1; }
[ -x "$LLAMA/llama-bench" ] || { echo "no llama-bench in $LLAMA (../shared/tools/peers_setup.sh)" >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# one core's streaming read bandwidth now (the host's neighbours move it by 2x): the 1-bit models
# are bandwidth-bound at one thread, llama.cpp's TQ2_0 much less, so the ratio follows it
bw1() { "$BIN" bench --quick --shapes 64x64 --batch 1 --threads 1 --mem-mib 512 --json 2>/dev/null |
        python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["mem_bw_gbps"])'; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs;" \
     "llama.cpp $(git -C "$LLAMA/../.." rev-parse --short HEAD 2>/dev/null || echo '?'), bitllm $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "llama.cpp: $LG"
echo "bitllm:    $BM"
echo
echo "| threads | pair | load | 1-core GB/s | llama.cpp tok/s | bitllm tok/s | ratio |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for t in $THREADS; do
    ratios=()
    for i in $(seq 1 "$PAIRS"); do
        l0=$(load1) g=$(bw1)
        a=$("$LLAMA/llama-bench" -m "$LG" -t "$t" -p 0 -n "$N" -r 2 -o json 2>/dev/null |
            python3 -c 'import json,sys; print(max(json.load(sys.stdin)[0]["samples_ts"]))')
        b=$("$BIN" speed "$BM" -t "$t" -p 1 -n "$N" -r 2 --json 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tps"])')
        r=$(python3 -c "print(f'{$b / $a:.2f}')")
        ratios+=("$r")
        printf '| %d | %d | %s | %s | %.1f | %.1f | %s |\n' "$t" "$i" "$l0" "$g" "$a" "$b" "$r"
    done
    echo "| $t | median | | | | | **$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}')** |"
done
