#!/usr/bin/env bash
# bitllm under mpirun on stories260K (docs/distributed.md): layer-wise quantize at 2 ranks writes
# the same bytes as one process (dbf, rtn2, onebit); distill at 2 ranks with --accum K follows
# one process with --accum 2K (the same sequences per step) to 1e-4 relative and resumes under
# mpirun bit for bit; a rank killed with SIGKILL ends the job (no hang, non-zero exit, the rank
# named) and the rerun resumes; a stopped rank makes the others give up after
# BITLLM_DIST_TIMEOUT naming it; block reconstruction with scale calibration at 2 ranks writes the
# same bytes on every run, follows one process (below), resumes after a killed rank bit for bit;
# commands that do not share work refuse to run on 2 ranks.
set -u
BIN=${BITLLM_BIN:?}
DATA=${BITLLM_DATA:-../shared}
S=$DATA/models/stories260K/stories260K.gguf
if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun not found (Open MPI: ./scripts/deps.sh installs openmpi-bin)"; exit 77
fi
if [ ! -e "$S" ]; then echo "SKIP: $S not found"; exit 77; fi
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
tmp=$(mktemp -d); [ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# CI runs as root; the shared machine has fewer cores than ranks
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# The sanitizer build checks for leaks before MPI_Finalize (src/dist/mpi.c); what Open MPI leaks
# in MPI_Init is suppressed by library, which needs full stacks through its components
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
printf 'leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\nleak:libhwloc.so\nleak:libevent\nleak:mca_\n' >"$tmp/lsan.supp"
export LSAN_OPTIONS="suppressions=$tmp/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# every job is bounded: a hang fails the test instead of stalling CI
mpi() { timeout -k 5 120 mpirun -np 2 --oversubscribe "$@"; }
quick=${BITLLM_TEST_QUICK:-0}

# A build without MPI refuses to run as 2 ranks (each would do the whole job).
mpi "$BIN" quantize "$S" -o "$tmp/none" -m rtn2 >"$tmp/out" 2>"$tmp/err"
if grep -q "built without MPI" "$tmp/err"; then
  check "without MPI: refused under mpirun" '[ ! -e "$tmp/none" ]'
  echo "SKIP: $BIN was built without MPI (cmake -DBITLLM_MPI=ON or make MPI=1)"; exit 77
fi
check "quantize under mpirun runs" '[ -e "$tmp/none/model.safetensors" ]'

# ---- layer-wise quantize: byte-identical to one process ----
for m in "dbf --iters 20 --seed 7" rtn2 onebit; do
  name=${m%% *}
  mkdir -p "$tmp/one-$name" "$tmp/two-$name"
  (cd "$tmp/one-$name" && "$BIN" quantize "$S" -o q -m $m --json >out.json 2>err)
  (cd "$tmp/two-$name" && mpi "$BIN" quantize "$S" -o q -m $m --json >out.json 2>err)
  rc=$?
  check "quantize $name: 2 ranks succeed (rc $rc)" '[ $rc -eq 0 ]'
  check "quantize $name: 2 ranks write the same model.safetensors as 1" \
    'cmp -s "$tmp/one-$name/q/model.safetensors" "$tmp/two-$name/q/model.safetensors"'
  check "quantize $name: and the same config.json" \
    'cmp -s "$tmp/one-$name/q/config.json" "$tmp/two-$name/q/config.json"'
  check "quantize $name: one JSON report listing all 35 projections" \
    'python3 -c "import json,sys;d=json.load(open(sys.argv[1]));assert len(d[\"layers\"])==35" "$tmp/two-$name/out.json"'
done
# both ranks fitted: each printed progress lines for its own share only
check "quantize: the work was shared" \
  '[ "$(grep -c "^\[" "$tmp/two-dbf/err")" -gt 35 ]'

# ---- distill: data-parallel ----
"$BIN" quantize "$S" -o "$tmp/ob" -m onebit >/dev/null 2>&1
"$BIN" distill "$S" "$tmp/ob" --generate 16 --gen-out "$tmp/gen.tok" --seq 32 --steps 0 \
  >/dev/null 2>&1
common="--data $tmp/gen.tok --seq 32 --batch 2 --lr 2e-3 --warmup 1 --steps 6"
"$BIN" distill "$S" "$tmp/ob" -o "$tmp/d1" $common --accum 4 --json >"$tmp/d1.json" 2>/dev/null
mpi "$BIN" distill "$S" "$tmp/ob" -o "$tmp/d2" $common --accum 2 --json >"$tmp/d2.json" 2>"$tmp/d2.err"
rc=$?
check "distill: 2 ranks succeed (rc $rc)" '[ $rc -eq 0 ]'
check "distill: 2 ranks x accum 2 = 1 rank x accum 4 (losses within 1e-4 relative)" \
  'python3 - "$tmp/d1.json" "$tmp/d2.json" <<EOF
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert len(a["losses"]) == len(b["losses"]) == 6, (a["losses"], b["losses"])
worst = max(abs(x - y) / abs(x) for x, y in zip(a["losses"], b["losses"]))
print("   max relative loss difference", worst)
assert worst <= 1e-4 and a["tokens"] == b["tokens"] == 6 * 4 * 2 * 32
assert b["ranks"] == 2 and a["ranks"] == 1 and b["comm_seconds"] > 0
EOF'
check "distill: rank 0 alone reports" '[ "$(grep -c "^done:" "$tmp/d2.err")" -eq 1 ]'
# stopped after step 3 (checkpoint at 2), resumed under mpirun: the same bytes
mpi "$BIN" distill "$S" "$tmp/ob" -o "$tmp/r" $common --accum 2 --save-every 2 --stop-after 3 \
  >/dev/null 2>&1
mpi "$BIN" distill "$S" "$tmp/ob" -o "$tmp/r" $common --accum 2 --save-every 2 --resume \
  >/dev/null 2>"$tmp/r.err"
rc=$?
check "distill: the resumed run succeeds (rc $rc)" '[ $rc -eq 0 ]'
check "distill: resumed under mpirun from step 2" 'grep -q "resumed from step 2" "$tmp/r.err"'
check "distill: resumed run = uninterrupted run (model.safetensors bytes)" \
  'cmp -s "$tmp/d2/model.safetensors" "$tmp/r/model.safetensors"'

# ---- faults ----
# rank_pid DIR RANK: the pid of that rank of the job writing DIR
rank_pid() {
  local p
  for p in $(pgrep -f "bitllm [a-z]+ .*-o $1 "); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"; return
    fi
  done
}
# wait_for COND SECONDS
wait_for() { local i; for ((i = 0; i < $2 * 10; i++)); do eval "$1" && return 0; sleep 0.1; done; return 1; }
# kill_rank1 DIR FILE ARGS...: runs `mpi ARGS` (writing DIR, stderr into DIR.err) in the
# background, kills its rank 1 with SIGKILL once FILE exists and waits for the job; sets victim,
# first (rank 0's pid), rc and took (seconds from the kill to the end of the job).
kill_rank1() {
  local dir=$1 file=$2 job t0; shift 2
  mpi "$@" >/dev/null 2>"$dir.err" &
  job=$!
  wait_for '[ -e "$file" ]' 60
  victim=$(rank_pid "$dir" 1)
  first=$(rank_pid "$dir" 0)
  t0=$(date +%s)
  [ -n "$victim" ] && kill -9 "$victim"
  wait $job; rc=$?
  took=$(($(date +%s) - t0))
}

steps=200; [ "$quick" = 1 ] && steps=40
long="--data $tmp/gen.tok --seq 32 --batch 2 --steps $steps --accum 2 --save-every 5"
kill_rank1 "$tmp/k" "$tmp/k/checkpoint/state.safetensors" "$BIN" distill "$S" "$tmp/ob" -o "$tmp/k" $long
check "killed rank: the job ends (rc $rc, $took s after the kill) with a non-zero exit" \
  '[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -lt 30 ]'
check "killed rank: the error names rank 1" 'grep -q "rank 1" "$tmp/k.err"'
# mpirun may return while rank 0 is still being taken down
check "killed rank: no bitllm process is left" \
  'wait_for "! kill -0 $first 2>/dev/null" 20 && [ -z "$(pgrep -f "bitllm distill .*-o $tmp/k ")" ]'
mpi "$BIN" distill "$S" "$tmp/ob" -o "$tmp/k" $long --resume --json >"$tmp/k.json" 2>"$tmp/k2.err"
rc=$?
check "killed rank: the rerun resumes from the last checkpoint and finishes (rc $rc)" \
  '[ $rc -eq 0 ] && grep -q "resumed from step" "$tmp/k2.err" && [ -e "$tmp/k/model.safetensors" ] &&
   python3 -c "import json,sys;d=json.load(open(sys.argv[1]));assert d[\"resumed_from\"]>0 and d[\"steps\"]==$steps" "$tmp/k.json"'

# a rank that stops answering: the others give up after BITLLM_DIST_TIMEOUT and name it
BITLLM_DIST_TIMEOUT=2 mpi "$BIN" distill "$S" "$tmp/ob" -o "$tmp/h" $long >/dev/null 2>"$tmp/h.err" &
job=$!
wait_for '[ -n "$(rank_pid "$tmp/h" 1)" ] && grep -q "^step 2/" "$tmp/h.err"' 60
victim=$(rank_pid "$tmp/h" 1)
[ -n "$victim" ] && kill -STOP "$victim"
wait $job; rc=$?
[ -n "$victim" ] && kill -9 "$victim" 2>/dev/null
check "stopped rank: the job ends with an error naming rank 1 (rc $rc)" \
  '[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "no answer from rank 1 within 2 s" "$tmp/h.err"'

# every rank loads the model but checks only its share of the projections for NaN/Inf (one rank
# each, in turn): a NaN in any one projection still stops the job, naming tensor and rank (two
# projections next to each other in the file, so both ranks' shares are tried)
if [ -e "$DATA/models/stories260K/hf/model.safetensors" ]; then
  H=$DATA/models/stories260K/hf
  for t in model.layers.2.mlp.down_proj.weight model.layers.2.mlp.gate_proj.weight; do
    rm -rf "$tmp/nan" "$tmp/nanq"
    mkdir -p "$tmp/nan" && cp "$H/config.json" "$tmp/nan/" && cp "$DATA/models/stories260K/tok512.bin" "$tmp/nan/tokenizer.bin"
    python3 - "$H/model.safetensors" "$tmp/nan/model.safetensors" "$t" <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
a, b = json.loads(data[8:8 + n])[sys.argv[3]]["data_offsets"]
data[8 + n + a + 4 * 77:8 + n + a + 4 * 78] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(data)
PY
    mpi "$BIN" quantize "$tmp/nan" -o "$tmp/nanq" -m rtn2 >"$tmp/out" 2>"$tmp/nan.err"; rc=$?
    check "NaN in $t under mpirun: the job stops naming it and the rank (rc $rc)" \
      '[ $rc -ne 0 ] && grep -qE "\(rank [01] of 2\).*$t holds a non-finite value" "$tmp/nan.err" && [ ! -e "$tmp/nanq" ]'
  done
fi

# ---- block reconstruction and scale calibration: calibration sequences sharded ----
# 16 generated sequences of 64 tokens, steps of 4 (2 per rank); seed 4.
R="--calib-generate 16 --calib-seq 64 --recon-batch 4 --seed 4 --calibrate-scales"
"$BIN" quantize "$S" -m onebit -o "$tmp/rc1" $R --json >"$tmp/rc1.json" 2>"$tmp/rc1.err"
"$BIN" quantize "$S" -m onebit -o "$tmp/rc0" --calib-generate 16 --calib-seq 64 --seed 4 \
  --reconstruct none >/dev/null 2>&1
mpi "$BIN" quantize "$S" -m onebit -o "$tmp/rc2" $R --json >"$tmp/rc2.json" 2>"$tmp/rc2.err"
rc=$?
mpi "$BIN" quantize "$S" -m onebit -o "$tmp/rc2b" $R >/dev/null 2>"$tmp/rc2b.err"
check "reconstruction: 2 ranks succeed (rc $rc)" '[ $rc -eq 0 ] && [ -s "$tmp/rc2/model.safetensors" ]'
check "reconstruction: two runs at 2 ranks write the same bytes" \
  'cmp -s "$tmp/rc2/model.safetensors" "$tmp/rc2b/model.safetensors"'
check "reconstruction: rank 0 alone reports the blocks" \
  '[ "$(grep -c "^block 5/5 done" "$tmp/rc2.err")" -eq 1 ] && grep -q "^rank 1 of 2: .*sent [1-9]" "$tmp/rc2.err"'
# One process and 2 ranks run the same steps on the same sequences; they differ only in the order
# in which the summed gradients and XᵀX are added (2 rank shares vs one pass). Block 1, before
# rounding differences can change a discrete decision (a sign in a Hessian-aware fit or a latent
# crossing zero), agrees to ~1e-7: the test allows 1e-4, while a rank's share of the gradient
# dropped or counted twice moves block 1's loss by 9e-4..1.5e-3 (measured). From there on such
# decisions diverge as a change of seed does: over seeds 1-10 the ppl of the final models differed
# by 0-7.7% (median 0.7%) while one process spans ppl 169-371 across those seeds; the test allows
# 15%, and both must be well below the layer-wise model's (about 390 here: 2x).
ppl() { "$BIN" ppl "$1" -f "$tmp/stories.txt" --ctx 256 --json 2>/dev/null; }
for s in 101 102 103 104 105 106 107 108; do
  "$BIN" generate "$S" -n 256 --seed $s --temp 1 --top-p 1 2>/dev/null; echo
done >"$tmp/stories.txt"
ppl "$tmp/rc1" >"$tmp/p1.json"; ppl "$tmp/rc2" >"$tmp/p2.json"; ppl "$tmp/rc0" >"$tmp/p0.json"
check "reconstruction: 2 ranks follow 1 process (block 1 to 1e-4, ppl to 15%, both beat layer-wise)" \
  'python3 - "$tmp" <<EOF
import json, sys
t = sys.argv[1]
a, b = (json.load(open(t + f)) for f in ("/rc1.json", "/rc2.json"))
x, y = a["blocks"][0], b["blocks"][0]
for k in ("loss_before", "loss_after"):
    d = abs(x[k] - y[k]) / x[k]
    print("   block 1 %s: %.9g vs %.9g (rel. %.1e)" % (k, x[k], y[k], d))
    assert d <= 1e-4
p1, p2, p0 = (json.load(open(t + f))["ppl"] for f in ("/p1.json", "/p2.json", "/p0.json"))
print("   ppl: 1 process %.4f, 2 ranks %.4f (rel. %.1e), layer-wise %.4f" % (p1, p2, abs(p2 / p1 - 1), p0))
assert abs(p2 / p1 - 1) <= 0.15 and max(p1, p2) < 0.8 * p0
assert b["kl_after"] <= b["kl_before"] and len(b["blocks"]) == 5
EOF'
mpi "$BIN" quantize "$S" -m onebit -o "$tmp/rcx" --calib-generate 16 --calib-seq 64 --recon-batch 1 \
  >/dev/null 2>"$tmp/rcx.err"; rc=$?
check "reconstruction: a step smaller than the rank count is refused (rc $rc)" \
  '[ $rc -ne 0 ] && grep -q "cannot give each of 2 ranks one" "$tmp/rcx.err" && [ ! -e "$tmp/rcx" ]'

# rank 1 killed after the first finished block: the job ends naming it; the same command resumes
# from rank 0's state and writes the bytes of an uninterrupted run at 2 ranks
ep=40; [ "$quick" = 1 ] && ep=16
K="--calib-generate 16 --calib-seq 64 --recon-batch 4 --seed 4 --recon-epochs $ep"
mpi "$BIN" quantize "$S" -m onebit -o "$tmp/rfull" $K --json >"$tmp/rfull.json" 2>/dev/null
kill_rank1 "$tmp/rk" "$tmp/rk/checkpoint/recon.progress.safetensors" "$BIN" quantize "$S" -m onebit \
  -o "$tmp/rk" $K
check "reconstruction, killed rank: the job ends (rc $rc, $took s) naming rank 1, no model" \
  '[ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -lt 30 ] &&
   grep -q "rank 1" "$tmp/rk.err" && [ ! -e "$tmp/rk/model.safetensors" ]'
# mpirun may return while rank 0 is still being taken down (its output lock is live till then)
wait_for "! kill -0 $first 2>/dev/null" 20
mpi "$BIN" quantize "$S" -m onebit -o "$tmp/rk" $K --json >"$tmp/rk.json" 2>"$tmp/rk2.err"; rc=$?
check "reconstruction, killed rank: the rerun resumes after a finished block (rc $rc)" \
  '[ $rc -eq 0 ] && python3 -c "import json,sys;n=json.load(open(sys.argv[1]))[\"blocks_resumed\"];print(\"   resumed after\",n,\"blocks\");assert 1<=n<5" "$tmp/rk.json"'
check "reconstruction, killed rank: resumed model = uninterrupted one (bytes)" \
  'cmp -s "$tmp/rfull/model.safetensors" "$tmp/rk/model.safetensors" && [ ! -e "$tmp/rk/checkpoint" ]'

# commands that do not share their work refuse to run as several ranks
mpi "$BIN" info "$S" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "info under mpirun: refused (rc $rc)" '[ $rc -ne 0 ] && grep -q "runs on one rank only" "$tmp/err"'

check "no sanitizer report from any rank" \
  '! grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp"/*.err "$tmp"/*/err 2>/dev/null'

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
