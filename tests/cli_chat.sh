#!/usr/bin/env bash
# bitllm chat under a pipe: one answer line per message, no prompts or escape codes, /reset
# forgets the conversation, the first answer equals the server's chat completion for the same
# message (greedy), the oldest turns are dropped (and it says so) when the context fills, Ctrl-C
# stops an answer without ending the program, and a model without a chat template, a mistyped
# /command and a NUL byte in the input are clear errors.
set -u
. "$(dirname "$0")/serve_lib.sh"
if [ ! -e "$M" ]; then echo "SKIP: $M not found"; exit 77; fi
msg="Tell me a story about a dog."
printf '%s\n/reset\n%s\n%s\n' "$msg" "$msg" "And then?" |
  "$BIN" chat "$M" --chat-template llama2 --temp 0 -n 16 --system "You tell stories." >"$tmp/out" 2>"$tmp/err"
rc=$?
check "chat under a pipe exits 0" '[ "$rc" = 0 ]'
check "one line per answer (3 answers)" '[ "$(wc -l < "$tmp/out")" = 3 ]'
check "no prompts or escape codes on stdout" '! grep -q $'"'"'\033'"'"' "$tmp/out" && ! grep -q "^> " "$tmp/out"'
check "/reset: the same message gets the same answer" '[ "$(sed -n 1p "$tmp/out")" = "$(sed -n 2p "$tmp/out")" ] && grep -q "conversation cleared" "$tmp/err"'
check "history is used: the follow-up gets its own answer" '[ "$(sed -n 3p "$tmp/out")" != "$(sed -n 2p "$tmp/out")" ]'
start_server "$tmp/s.log" "$M" --chat-template llama2 || { cat "$tmp/s.log"; exit 1; }
r=$(c /v1/chat/completions -d "{\"messages\":[{\"role\":\"system\",\"content\":\"You tell stories.\"},{\"role\":\"user\",\"content\":\"$msg\"}],\"max_tokens\":16,\"temperature\":0}")
check "the first answer equals the server's chat completion" '[ "$(jf "$r" "d[\"choices\"][0][\"message\"][\"content\"]")" = "$(sed -n 1p "$tmp/out")" ]'
printf '%s\n' "$msg" | "$BIN" chat "$M" --chat-template llama2 --temp 0 -n 16 --system "You tell stories." \
  --presence-penalty 1 --repeat-penalty 1.3 --repeat-last-n 32 >"$tmp/outp" 2>/dev/null
r=$(c /v1/chat/completions -d "{\"messages\":[{\"role\":\"system\",\"content\":\"You tell stories.\"},{\"role\":\"user\",\"content\":\"$msg\"}],\"max_tokens\":16,\"temperature\":0,\"presence_penalty\":1,\"repeat_penalty\":1.3,\"repeat_last_n\":32}")
check "with penalties, the answer equals the server's (and differs from the plain one)" '[ "$(jf "$r" "d[\"choices\"][0][\"message\"][\"content\"]")" = "$(cat "$tmp/outp")" ] && [ "$(cat "$tmp/outp")" != "$(sed -n 1p "$tmp/out")" ]'
printf '%s\n' "$msg" | "$BIN" chat "$M" --chat-template llama2 --temp 1.2 --top-k 1 --seed 9 -n 16 \
  --system "You tell stories." >"$tmp/outk" 2>/dev/null
check "--top-k 1 at temperature 1.2 answers as greedy decoding" '[ "$(cat "$tmp/outk")" = "$(sed -n 1p "$tmp/out")" ]'
stop_server "$SRV_PID"
# a small context: older turns go, and the program says so
for i in 1 2 3 4 5 6; do echo "Message number $i about cats and dogs."; done |
  "$BIN" chat "$M" --chat-template llama2 --temp 0 -n 8 --ctx 96 >"$tmp/out2" 2>"$tmp/err2"
rc=$?
check "small context: every message answered" '[ "$rc" = 0 ] && [ "$(wc -l < "$tmp/out2")" = 6 ]'
check "small context: dropped turns are reported" 'grep -q "context full: dropped the" "$tmp/err2"'
# Ctrl-C during (or right after) an answer: the program goes on to the next message
mkfifo "$tmp/in"
"$BIN" chat "$M" --chat-template llama2 --temp 1 --seed 3 -n 300 --ctx 512 <"$tmp/in" >"$tmp/out3" 2>"$tmp/err3" &
CHAT=$!
exec 3>"$tmp/in"
echo "Tell me a very long story." >&3
for _ in $(seq 1 400); do [ -s "$tmp/out3" ] && break; sleep 0.025; done  # answering now
kill -INT "$CHAT"
echo "And another one." >&3
echo "/exit" >&3
exec 3>&-
wait "$CHAT"; rc=$?
check "Ctrl-C stops an answer, not the program" '[ "$rc" = 0 ] && [ "$(wc -l < "$tmp/out3")" -ge 2 ]'
"$BIN" chat "$M" </dev/null >/dev/null 2>"$tmp/err4"; rc=$?
check "no chat template: a clear error" '[ "$rc" = 1 ] && grep -q -- "--chat-template" "$tmp/err4"'
check "unknown template name" '"$BIN" chat "$M" --chat-template nope </dev/null 2>&1 >/dev/null | grep -q "unknown chat template"'
printf '/resett\n/usr is a directory\n' | "$BIN" chat "$M" --chat-template llama2 --temp 0 -n 4 >"$tmp/out5" 2>"$tmp/err5"; rc=$?
check "a one-word /command that is not one is named, not sent; a line with a space is a message" '[ "$rc" = 0 ] && grep -q "unknown command /resett" "$tmp/err5" && [ "$(wc -l < "$tmp/out5")" = 1 ]'
printf 'Hello\nabc\000def\nAgain\n' | "$BIN" chat "$M" --chat-template llama2 --temp 0 -n 4 >"$tmp/out6" 2>"$tmp/err6"; rc=$?
check "a NUL byte in a piped line: a clear error and exit 1, not a message cut at the NUL" '[ "$rc" = 1 ] && grep -q "NUL byte" "$tmp/err6" && [ "$(wc -l < "$tmp/out6")" = 1 ]'
finish
