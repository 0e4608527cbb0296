#!/usr/bin/env bash
# The official `openai` npm client talks to bitllm serve: chat completion plain and streamed (the
# same greedy text both ways, and the same as curl gets), two samples streamed (n = 2), a text
# completion equal to `bitllm generate`, the model list, and a 400 surfacing as the client's
# BadRequestError.
# The test installs the client (npm install openai@6) into build-npm/ (git-ignored) once; it is
# skipped only when that install fails because the npm registry cannot be reached.
set -u
. "$(dirname "$0")/serve_lib.sh"
if [ ! -e "$M" ]; then echo "SKIP: $M not found"; exit 77; fi
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "FAIL: node and npm are needed (scripts/deps.sh installs them)"; exit 1; }
NPM_DIR=${BITLLM_NPM_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build-npm}
mkdir -p "$NPM_DIR"
if [ ! -e "$NPM_DIR/node_modules/openai/package.json" ]; then
  if ! (cd "$NPM_DIR" && flock "$NPM_DIR/.lock" npm install --no-audit --no-fund --prefix "$NPM_DIR" openai@6) >"$NPM_DIR/install.log" 2>&1; then
    if grep -qE "ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|ENETUNREACH|network" "$NPM_DIR/install.log"; then
      echo "SKIP: npm install openai failed, the npm registry is unreachable:"; tail -5 "$NPM_DIR/install.log"; exit 77
    fi
    echo "FAIL: npm install openai failed:"; tail -20 "$NPM_DIR/install.log"; exit 1
  fi
fi
start_server "$tmp/s.log" "$M" --chat-template llama2 --api-key k-123 --parallel 2 \
  || { cat "$tmp/s.log"; echo "FAIL: server did not start"; exit 1; }
out=$(node "$(dirname "$0")/openai_client.js" "$NPM_DIR/node_modules" "$PORT" k-123)
echo "client: $out"
check "the client lists the model and retrieves it by id" 'jt "$out" "d[\"models\"]==[\"stories260K\"] and d[\"retrieved\"]==\"stories260K\""'
check "chat completion" 'jt "$out" "len(d[\"chat\"])>0 and d[\"chat_finish\"]==\"length\" and d[\"chat_usage\"][\"completion_tokens\"]==24"'
check "streamed chat equals the plain one" 'jt "$out" "d[\"stream\"]==d[\"chat\"] and d[\"stream_finish\"]==\"length\" and d[\"stream_usage\"][\"completion_tokens\"]==24"'
check "a chat stream of n = 2 put together by index equals the plain answer's two messages" 'jt "$out" "d[\"n2_stream\"]==d[\"n2\"] and len(d[\"n2\"])==2 and all(d[\"n2\"])"'
r=$(c /v1/chat/completions -H "Authorization: Bearer k-123" -d '{"messages":[{"role":"system","content":"You tell stories."},{"role":"user","content":"Tell me about a cat."}],"max_tokens":24,"temperature":0}')
check "the client sees what curl sees" '[ "$(jf "$out" "d[\"chat\"]")" = "$(jf "$r" "d[\"choices\"][0][\"message\"][\"content\"]")" ]'
want=$("$BIN" generate "$M" -p "Once upon a time" -n 12 --temp 0 --json 2>/dev/null)
check "text completion equals bitllm generate" '[ "$(jf "$out" "d[\"completion\"]")" = "$(jf "$want" "d[\"text\"]")" ]'
check "echo + logprobs 1 (lm-eval's scoring request): the prompt's 5 tokens and 1 generated, first null" 'jt "$out" "(lambda l: len(l[\"token_logprobs\"])==6 and l[\"token_logprobs\"][0] is None and all(x<0 for x in l[\"token_logprobs\"][1:]) and all(len(t)==1 for t in l[\"top_logprobs\"][1:]) and d[\"scored_text\"].startswith(\"Once upon a time\"))(d[\"scored\"])"'
check "chat logprobs through the client" 'jt "$out" "len(d[\"chat_logprobs\"][\"content\"])==4 and all(len(e[\"top_logprobs\"])==2 for e in d[\"chat_logprobs\"][\"content\"])"'
check "a bad parameter is the client's BadRequestError (400, param)" 'jt "$out" "d[\"bad_request\"]==\"BadRequestError 400 temperature\""'
stop_server "$SRV_PID"; rc=$?
check "server exits 0" '[ "$rc" = 0 ]'
clean_log "$tmp/s.log" && ok "no sanitizer report" || bad "sanitizer report in $tmp/s.log"
finish
