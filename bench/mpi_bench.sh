#!/usr/bin/env bash
# Layer-wise quantize and data-parallel distillation at 1 and 2 MPI ranks, 1 thread per rank, on
# a random-weight model with real architecture dimensions (docs/distributed.md). Quantize: wall
# and CPU seconds of the job, and per rank its wall time, the bytes it sent and received and the
# time it waited on the others; the outputs must be byte-identical to the one-rank run.
# Distill: wall seconds per optimizer step at the same global batch (ranks x accum x batch),
# rank 0's time in the gradient allreduce, and the bytes one step moves. Prints markdown tables
# with the machine and the load average around every row.
#
#   bench/mpi_bench.sh [WORKDIR]   env: ARCH (tinyllama-1.1b), LAYERS (1), METHODS ("rtn2 dbf"),
#                                       ITERS (dbf iterations, 3), STEPS (4), SEQ (32),
#                                       RANKS ("1 2"), BUILD (build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$here/build}
BIN=$BUILD/bitllm
W=${1:-/tmp/bitllm-mpi-bench}
ARCH=${ARCH:-tinyllama-1.1b}
LAYERS=${LAYERS:-1}
METHODS=${METHODS:-rtn2 dbf}
ITERS=${ITERS:-3}
STEPS=${STEPS:-4}
SEQ=${SEQ:-32}
RANKS=${RANKS:-1 2}
command -v mpirun >/dev/null || { echo "mpirun not found (./scripts/deps.sh)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: make (needs $BIN)" >&2; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$W"
M=$W/model
[ -e "$M/config.json" ] || nice "$BIN" synth --arch "$ARCH" --layers "$LAYERS" -o "$M" >&2
load() { cut -d' ' -f1 /proc/loadavg; }
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "Machine: $cpu, $(nproc --all) cores; model: $ARCH dimensions, $LAYERS layer(s), random F16 weights"
echo

# run N OUT ARGS...: the job's wall and CPU seconds into $W/time, its stderr into $W/err
run() {
  local n=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$W/cpu" mpirun -np "$n" --oversubscribe "$BIN" "$@" \
    >"$W/out" 2>"$W/err"
  t1=$(date +%s.%N)
  echo "$(printf "%.1f" "$(echo "$t1 - $t0" | bc)") $(awk '{print $1 + $2}' "$W/cpu")" >"$W/time"
}

echo "### Layer-wise quantize"
echo
echo "| method | ranks | wall s | CPU s (all ranks) | per rank: wall s, sent, received, waited s | same bytes as 1 rank | load |"
echo "|---|---|---|---|---|---|---|"
for m in $METHODS; do
  extra=""; [ "$m" = dbf ] && extra="--iters $ITERS"
  for n in $RANKS; do
    l0=$(load)
    run "$n" quantize "$M" -o "$W/q-$m-$n" -m "$m" $extra --force
    read -r wall cpus <"$W/time"
    per=$( (grep -E "^rank [0-9]+ of" "$W/err" || true) | sort -n -k2 |
      sed -E 's/^rank ([0-9]+) of [0-9]+: ([0-9.]+)s, sent ([0-9]+) bytes, received ([0-9]+) bytes, waited ([0-9.]+)s.*/r\1: \2, \3, \4, \5/' |
      awk '{printf "%s%s", (NR > 1 ? "; " : ""), $0}')
    same="(reference)"
    if [ "$n" != "$(echo $RANKS | cut -d' ' -f1)" ]; then
      cmp -s "$W/q-$m-$(echo $RANKS | cut -d' ' -f1)/model.safetensors" "$W/q-$m-$n/model.safetensors" &&
        same=yes || same=NO
    fi
    echo "| $m | $n | $wall | $cpus | ${per:-alone} | $same | $l0 -> $(load) |"
  done
done
echo

echo "### Data-parallel distillation (global batch: ranks x accum x 1 sequence of $SEQ tokens)"
echo
S=$W/student
[ -e "$S/config.json" ] || "$BIN" quantize "$M" -o "$S" -m onebit --random-factors >/dev/null 2>&1
[ -e "$W/gen.tok" ] || "$BIN" distill "$M" "$S" --generate 8 --gen-out "$W/gen.tok" --seq "$SEQ" \
  --steps 0 >/dev/null 2>&1
maxn=0; for n in $RANKS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
echo "| ranks | accum per rank | s per step | allreduce s per step (rank 0) | allreduce share | CPU s (job) | losses equal to 1 rank (max rel. diff) | load |"
echo "|---|---|---|---|---|---|---|---|"
ref=""
for n in $RANKS; do
  acc=$((maxn * 2 / n))
  l0=$(load)
  run "$n" distill "$M" "$S" -o "$W/d-$n" --data "$W/gen.tok" --seq "$SEQ" --batch 1 \
    --accum "$acc" --steps "$STEPS" --json --force
  read -r wall cpus <"$W/time"
  cp "$W/out" "$W/d-$n.json"
  [ -z "$ref" ] && ref=$W/d-$n.json
  python3 - "$W/d-$n.json" "$ref" "$cpus" "$l0" "$(load)" "$acc" <<'EOF'
import json, sys
d, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
step = d["seconds"] / d["steps"]
comm = d["comm_seconds"] / d["steps"]
diff = max(abs(a - b) / abs(b) for a, b in zip(d["losses"], r["losses"]))
print(f"| {d['ranks']} | {sys.argv[6]} | {step:.2f} | {comm:.3f} | {100 * comm / step:.1f}% | "
      f"{sys.argv[3]} | {diff:.1e} | {sys.argv[4]} -> {sys.argv[5]} |")
EOF
done
python3 - "$M/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
d, h, kv, L = c["hidden_size"], c["intermediate_size"], c.get("num_key_value_heads", c["num_attention_heads"]), c["num_hidden_layers"]
hd = d // c["num_attention_heads"]
w = L * (2 * d * d + 2 * d * kv * hd + 3 * d * h)
print(f"\nOne step's allreduce carries every trainable f32 of the student: the {w / 1e6:.1f} M latent "
      f"weights of the quantized projections (+ norms and scale vectors), {4 * w / 2**20:.0f} MiB.")
EOF
