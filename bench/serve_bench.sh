#!/usr/bin/env bash
# Serving throughput of bitllm serve at 1, 4 and 8 concurrent clients, on a random-weight model
# with TinyLlama-1.1B's dimensions: F16 and 1-bit formats (onebit, dbf at onebit's bpw; random
# factors of the real shapes, so the speed is what a fitted model has). For each model a server
# runs with --parallel 8; bench_serve streams completions from C clients and reports aggregate
# decode tokens/s and the time per token each client sees (p50/p99), and the server's CPU time per
# token (CPU seconds of all its threads over the tokens sent: what batching saves, measured in a
# way other load on the machine barely moves). Prints a markdown table with the machine and the
# load average around every row (docs/serve.md).
#
#   bench/serve_bench.sh [WORKDIR]    env: TOKENS (per answer, 32), REQUESTS (per client, 2),
#                                          FORMATS ("f16 onebit dbf"), CLIENTS ("1 4 8"),
#                                          BUILD (build), ARCH (tinyllama-1.1b),
#                                          THREADS (server threads; default: all cores),
#                                          SIGN_TABLES (f32 or i8: serve --sign-tables; default f32),
#                                          HEAD (q4_0 or q8_0: the 1-bit formats with that output
#                                          head and q8_0 embeddings; default: F16 head and embeddings),
#                                          KV_CACHE (f32, f16 or q8: serve --kv-cache; default f32)
# WORKDIR (default /tmp/bitllm-serve-bench) keeps the synthetic models between runs (~3 GiB).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$here/build}
BIN=$BUILD/bitllm
CLIENT=$BUILD/bench_serve
W=${1:-/tmp/bitllm-serve-bench}
TOKENS=${TOKENS:-32}
REQUESTS=${REQUESTS:-2}
FORMATS=${FORMATS:-f16 onebit dbf}
CLIENTS=${CLIENTS:-1 4 8}
ARCH=${ARCH:-tinyllama-1.1b}
THREADS=${THREADS:-}
SIGN_TABLES=${SIGN_TABLES:-f32}
HEAD=${HEAD:-}
KV_CACHE=${KV_CACHE:-f32}
# the directory of format $1 (the 1-bit formats with HEAD get their own)
mdir() { if [ "$1" = f16 ] || [ -z "$HEAD" ]; then echo "$W/$1"; else echo "$W/$1-head-$HEAD"; fi; }
[ -x "$BIN" ] && [ -x "$CLIENT" ] || { echo "build first: make (needs $BIN and $CLIENT)" >&2; exit 1; }
mkdir -p "$W"
[ -e "$W/f16/config.json" ] || nice "$BIN" synth --arch "$ARCH" -o "$W/f16" >&2
for f in $FORMATS; do
  [ "$f" = f16 ] || [ -e "$(mdir "$f")/config.json" ] ||
    nice "$BIN" quantize "$W/f16" -m "$f" --random-factors ${HEAD:+--head "$HEAD" --embed q8_0} \
      -o "$(mdir "$f")" >/dev/null 2>&1
done
load() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU seconds the server has used (all its threads): robust to other load, unlike wall time
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "machine: $cpu, $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}," \
     "server threads ${THREADS:-all cores}, sign tables $SIGN_TABLES, KV cache $KV_CACHE," \
     "1-bit formats' head" \
     "${HEAD:-F16}; $ARCH dimensions," \
     "random weights; $REQUESTS requests x $TOKENS tokens per client, 16-token prompts"
echo
echo "| format | bpw (layers) | clients | tok/s (all clients) | x 1 client | ms/token p50 | ms/token p99 | first token p50 | server CPU ms/token | x 1 client (CPU) | load avg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for f in $FORMATS; do
  bpw=$("$BIN" info "$(mdir "$f")" --json 2>/dev/null | python3 -c "import json,sys;print('%.2f'%json.load(sys.stdin)['bpw_layers'])" 2>/dev/null || echo "?")
  log=$W/server-$f.log
  : > "$log"
  "$BIN" serve "$(mdir "$f")" --port 0 --parallel 8 --ctx 256 ${THREADS:+--threads "$THREADS"} \
    --sign-tables "$SIGN_TABLES" --kv-cache "$KV_CACHE" 2>"$log" &
  pid=$!
  port=
  for _ in $(seq 1 1200); do
    port=$(sed -n 's|.*listening on http://[^:]*:\([0-9][0-9]*\).*|\1|p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "server for $f did not start:" >&2; cat "$log" >&2; exit 1; }
  "$CLIENT" --port "$port" --clients 1 --requests 1 --tokens 4 >/dev/null  # warm the page cache
  base=; cbase=
  for c in $CLIENTS; do
    before=$(load); c0=$(cpu_s "$pid")
    r=$("$CLIENT" --port "$port" --clients "$c" --requests "$REQUESTS" --tokens "$TOKENS" --json)
    c1=$(cpu_s "$pid")
    echo "$f ${HEAD:-f16head} $SIGN_TABLES $r {\"server_cpu_s\":$(python3 -c "print($c1-$c0)")}" >> "$W/results.jsonl"
    read -r rate p50 p99 ft ntok < <(python3 -c "import json,sys;d=json.loads(sys.argv[1]);print(d['tok_per_s'],d['ms_per_token_p50'],d['ms_per_token_p99'],d['ttft_ms_p50'],d['tokens'])" "$r")
    cpt=$(python3 -c "print(1e3*($c1-$c0)/$ntok)")
    [ -n "$base" ] || { base=$rate; cbase=$cpt; }
    lab=$f; [ -z "$HEAD" ] || [ "$f" = f16 ] || lab="$f, $HEAD head"
    [ "$SIGN_TABLES" = f32 ] || [ "$f" = f16 ] || lab="$lab ($SIGN_TABLES tables)"
    printf '| %s | %s | %d | %.2f | %.2f | %.0f | %.0f | %.0f | %.1f | %.2f | %s → %s |\n' "$lab" "$bpw" \
      "$c" "$rate" "$(python3 -c "print($rate/$base)")" "$p50" "$p99" "$ft" "$cpt" \
      "$(python3 -c "print($cbase/$cpt)")" "$before" "$(load)"
  done
  kill -TERM "$pid"
  wait "$pid" || true
done
