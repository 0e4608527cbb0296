# Helpers for the server tests (sourced by tests/cli_serve.sh, cli_openai.sh, cli_chat.sh), on
# top of tests/testlib.sh. Servers listen on 127.0.0.1 with --port 0: the kernel picks a free
# port and the server prints it, so tests running in parallel never collide.
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
M=$G
QUICK=0
if [ -n "${BITLLM_TEST_QUICK:-}" ] && [ "${BITLLM_TEST_QUICK}" != 0 ]; then QUICK=1; fi
SERVERS=()

# start_server LOG ARGS...: starts `bitllm serve ARGS --port 0` with stderr in LOG; sets SRV_PID
# and PORT (the port it printed). Fails if it exits or prints no port within 60 s.
start_server() {
  local log=$1; shift
  : > "$log"
  "$BIN" serve "$@" --port 0 2>"$log" &
  SRV_PID=$!
  SERVERS+=("$SRV_PID")
  PORT=
  for _ in $(seq 1 600); do
    PORT=$(sed -n 's|.*listening on http://[^:]*:\([0-9][0-9]*\).*|\1|p' "$log")
    [ -n "$PORT" ] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# stop_server PID: SIGTERM, then the exit status of the server.
stop_server() {
  kill -TERM "$1" 2>/dev/null
  wait "$1"
}

# Kills whatever server a failed test left running (by process id), then removes $tmp.
cleanup_servers() {
  for p in "${SERVERS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap 'cleanup_servers; rm -rf "$tmp"' EXIT

# curl against the current server: c PATH [curl args...]
c() { local p=$1; shift; curl -s --max-time 120 "$@" "http://127.0.0.1:$PORT$p"; }

# A JSON field by Python expression on the parsed document d: jf '<json>' 'd["a"]["b"]'
jf() { python3 -c "import json,sys;d=json.loads(sys.argv[1]);print($2)" "$1" 2>/dev/null; }
# Succeeds when the Python expression on the parsed document d is true: jt '<json>' 'd["n"] == 1'
jt() { python3 -c "import json,sys;d=json.loads(sys.argv[1]);sys.exit(0 if ($2) else 1)" "$1" 2>/dev/null; }

# No sanitizer or crash report in a server log.
clean_log() { clean_err "$1" && ! grep -q "Segmentation" "$1"; }
