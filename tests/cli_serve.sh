#!/usr/bin/env bash
# bitllm serve end to end with curl, on 127.0.0.1 and a port the kernel picks: every endpoint and
# error status, logprobs and echo (a prompt scored as the float64 reference does), streams of
# several choices, temperature-0 completions equal to `bitllm generate`, 8 concurrent requests equal
# to the same 8 run one after another, a disconnected client freeing its slot, 503 when the queue
# is full, 1000 malformed or random requests leaving the server serving, and SIGTERM draining the
# running request and exiting 0. Every server log is checked for sanitizer reports.
set -u
. "$(dirname "$0")/serve_lib.sh"
if [ ! -e "$M" ]; then echo "SKIP: $M not found"; exit 77; fi

start_server "$tmp/a.log" "$M" --chat-template llama2 --parallel 8 --api-key sekret --max-body 4096 \
  || { cat "$tmp/a.log"; echo "FAIL: server did not start"; exit 1; }
A=(-H "Authorization: Bearer sekret")
post() { c "$1" "${A[@]}" -H 'Content-Type: application/json' -d "$2"; }
status() { c "$1" -o /dev/null -w '%{http_code}' "${@:2}"; }
# the answer is a 400 invalid_request_error naming parameter $2
e400() { [ "$(jf "$1" "d[\"error\"][\"type\"]")" = invalid_request_error ] && [ "$(jf "$1" "d[\"error\"][\"param\"]")" = "$2" ]; }

# ---- endpoints ----
check "GET /health" '[ "$(c /health)" = "{\"status\":\"ok\"}" ]'
m=$(c /v1/models "${A[@]}")
check "GET /v1/models lists the model" 'jt "$m" "d[\"object\"]==\"list\" and d[\"data\"][0][\"id\"]==\"stories260K\" and d[\"data\"][0][\"object\"]==\"model\""'
m1=$(c /v1/models/stories260K "${A[@]}")
check "GET /v1/models/{id} is the listed model" '[ "$m1" = "$(jf "$m" "json.dumps(d[\"data\"][0],separators=(\",\",\":\"))")" ]'
r=$(c /v1/models/gpt-4 "${A[@]}" -w ' %{http_code}')
check "GET /v1/models/{other id}: 404 model_not_found" '[ "${r##* }" = 404 ] && jt "${r% *}" "d[\"error\"][\"code\"]==\"model_not_found\" and d[\"error\"][\"param\"]==\"model\""'
# llama.cpp's /tokenize and /detokenize: the ids a prompt gets (usage counts them, BOS with
# add_special), pieces that spell the text, and the text back
tk=$(post /tokenize '{"content":"Once upon a time"}')
tkb=$(post /tokenize '{"content":"Once upon a time","add_special":true,"with_pieces":true}')
check "/tokenize: the prompt's ids (BOS with add_special), pieces that spell the text" 'jt "$tk" "d[\"tokens\"]==[403,407,261,378]" && jt "$tkb" "[t[\"id\"] for t in d[\"tokens\"]]==[1,403,407,261,378] and \"\".join(t[\"piece\"] for t in d[\"tokens\"])==\" Once upon a time\""'
dt=$(post /detokenize '{"tokens":[1,403,407,261,378]}')
check "/detokenize: the ids' text" 'jt "$dt" "d[\"content\"].strip()==\"Once upon a time\""'
check "/tokenize and /detokenize: 400 naming the parameter, 401 without the key" 'e400 "$(post /tokenize "{\"content\":5}")" content && e400 "$(post /detokenize "{\"tokens\":[1,512]}")" tokens && [ "$(status /tokenize -d "{\"content\":\"a\"}")" = 401 ]'
check "without --cors: no CORS header, OPTIONS is 405" '! c /health -i | grep -qi "^Access-Control" && [ "$(status /v1/chat/completions -X OPTIONS)" = 405 ]'
r=$(post /v1/completions '{"model":"x","prompt":"Once upon a time","max_tokens":24,"temperature":0}')
want=$("$BIN" generate "$M" -p "Once upon a time" -n 24 --temp 0 --json 2>/dev/null)
want24=$want
check "completion at temperature 0 equals bitllm generate" '[ -n "$(jf "$want" "d[\"text\"]")" ] && [ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$(jf "$want" "d[\"text\"]")" ]'
check "completion object shape" 'jt "$r" "d[\"object\"]==\"text_completion\" and d[\"id\"].startswith(\"cmpl-\") and d[\"model\"]==\"stories260K\" and d[\"choices\"][0][\"index\"]==0 and d[\"choices\"][0][\"logprobs\"] is None and d[\"choices\"][0][\"finish_reason\"]==\"length\" and isinstance(d[\"created\"],int)"'
check "completion usage counts" 'jt "$r" "d[\"usage\"]=={\"prompt_tokens\":5,\"completion_tokens\":24,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":0}}"'
# longer than one prompt chunk: 300 tokens of prompt, still equal to generate
long=$(python3 -c "print(' '.join(['the cat sat on the mat.']*45))")
r=$(post /v1/completions "{\"prompt\":\"$long\",\"max_tokens\":12,\"temperature\":0}")
want=$("$BIN" generate "$M" -p "$long" -n 12 --temp 0 --json 2>/dev/null)
check "300-token prompt at temperature 0 equals bitllm generate" '[ "$(jf "$r" "d[\"usage\"][\"prompt_tokens\"]>256")" = True ] && [ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$(jf "$want" "d[\"text\"]")" ]'
# the prompt cache: a prompt that extends that one runs from its first whole chunk (256 tokens)
# on, and the text is still the one generate gives the whole prompt
r=$(post /v1/completions "{\"prompt\":\"$long The dog ran.\",\"max_tokens\":12,\"temperature\":0}")
want=$("$BIN" generate "$M" -p "$long The dog ran." -n 12 --temp 0 --json 2>/dev/null)
check "a prompt extending a cached one takes 256 tokens from the cache and equals bitllm generate" '[ "$(jf "$r" "d[\"usage\"][\"prompt_tokens_details\"][\"cached_tokens\"]")" = 256 ] && [ -n "$(jf "$want" "d[\"text\"]")" ] && [ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$(jf "$want" "d[\"text\"]")" ]'
check "the server log counts the cached tokens" 'grep -q "(256 from the prompt cache)" "$tmp/a.log"'
# a request sharing a new prefix with a request still running (1400 tokens to generate): its
# whole chunks are copied from the running request's slot (or, should that one have finished
# already, taken from its kept chunks; the result is the same)
long2=$(python3 -c "print(' '.join(['a bird sang in the old tree.']*20))")
post /v1/completions "{\"prompt\":\"$long2 A bird sang.\",\"max_tokens\":1400,\"ignore_eos\":true,\"temperature\":0,\"stream\":true}" > "$tmp/run.sse" &
runner=$!
for _ in $(seq 1 200); do grep -q '^data: ' "$tmp/run.sse" 2>/dev/null && break; sleep 0.01; done
r=$(post /v1/completions "{\"prompt\":\"$long2 The cat ran.\",\"max_tokens\":12,\"temperature\":0}")
wait "$runner"
want=$("$BIN" generate "$M" -p "$long2 The cat ran." -n 12 --temp 0 --json 2>/dev/null)
check "a prompt sharing whole chunks with a running request takes them and equals bitllm generate" 'jt "$r" "d[\"usage\"][\"prompt_tokens_details\"][\"cached_tokens\"]==(d[\"usage\"][\"prompt_tokens\"]-1)//256*256>0" && [ -n "$(jf "$want" "d[\"text\"]")" ] && [ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$(jf "$want" "d[\"text\"]")" ]'
if grep -q "copied from a running request" "$tmp/a.log"; then echo "     (copied from the running request's slot)"
else echo "     (the running request had finished: taken from its kept chunks)"; fi
# penalties: the same formulas and window in the server and in generate (over prompt and output)
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":40,"temperature":0,"presence_penalty":0.8,"frequency_penalty":0.4,"repeat_penalty":1.2,"repeat_last_n":16}')
want=$("$BIN" generate "$M" -p "Once upon a time" -n 40 --temp 0 --presence-penalty 0.8 --frequency-penalty 0.4 --repeat-penalty 1.2 --repeat-last-n 16 --json 2>/dev/null)
plain=$("$BIN" generate "$M" -p "Once upon a time" -n 40 --temp 0 --json 2>/dev/null)
check "penalized completion at temperature 0 equals bitllm generate with the same penalties" '[ -n "$(jf "$want" "d[\"text\"]")" ] && [ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$(jf "$want" "d[\"text\"]")" ]'
check "the penalties change the greedy text" '[ "$(jf "$want" "d[\"text\"]")" != "$(jf "$plain" "d[\"text\"]")" ]'
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":64,"temperature":0,"stop":[" girl"]}')
check "stop string ends the text before it" 'jt "$r" "d[\"choices\"][0][\"text\"]==\", there was a little\" and d[\"choices\"][0][\"finish_reason\"]==\"stop\""'
r=$(post /v1/completions '{"prompt":[1,403,407,261],"max_tokens":4,"temperature":0}')
check "prompt as token ids" '[ "$(jf "$r" "d[\"usage\"][\"prompt_tokens\"]")" = 4 ]'

# ---- logprobs and echo ----
# bad400 NAME PATH BODY PARAM: the request is a 400 invalid_request_error naming PARAM
bad400() { local r; r=$(post "$2" "$3"); check "$1" 'e400 "$r" '"$4"; }
# a prompt scored with echo: its tokens' log-probabilities against the independent float64
# forward of the reference (mean NLL within 1e-4 relative, as test_model's ppl; each token within
# 1e-3 of the reference's log-softmax where it lists the logits), the first token null
REF="$DATA/models/stories260K/reference_greedy.json"
if [ -e "$REF" ]; then
  ids=$(python3 -c "import json;print(json.dumps(json.load(open('$REF'))['tokens']))")
  r=$(post /v1/completions "{\"prompt\":$ids,\"max_tokens\":0,\"echo\":true,\"logprobs\":3,\"temperature\":0}")
  check "echo + logprobs scores the prompt as the float64 reference does" 'python3 -c "
import json,sys,math
ref=json.load(open(sys.argv[2])); d=json.loads(sys.argv[1]); c=d[\"choices\"][0]; lp=c[\"logprobs\"]
t=ref[\"tokens\"]; n=len(t)
assert len(lp[\"token_logprobs\"])==n and lp[\"token_logprobs\"][0] is None and lp[\"top_logprobs\"][0] is None
assert d[\"usage\"][\"completion_tokens\"]==0 and c[\"finish_reason\"]==\"length\"
nll=-sum(lp[\"token_logprobs\"][1:])/(n-1)
assert abs(nll-ref[\"teacher_forced_mean_nll\"])<1e-4*ref[\"teacher_forced_mean_nll\"], (nll, ref[\"teacher_forced_mean_nll\"])
checked=0
for p,row in ref[\"logits\"].items():
    p=int(p)
    if p+1>=n: continue
    m=max(row); ls=m+math.log(sum(math.exp(x-m) for x in row))
    assert abs(lp[\"token_logprobs\"][p+1]-(row[t[p+1]]-ls))<1e-3, p
    top=lp[\"top_logprobs\"][p+1]; assert len(top)>=1 and abs(max(top.values())-(m-ls))<1e-3, p
    checked+=1
assert checked>=1, checked
assert c[\"text\"]==ref[\"text\"] or c[\"text\"].strip()==ref[\"text\"].strip(), (c[\"text\"][:40], ref[\"text\"][:40])
" "$r" "$REF"'
else
  echo "SKIP: $REF not found (echo + logprobs against the float64 reference)"
fi
# greedy generation with logprobs: every token the most likely of its alternatives, the tokens
# spelling the text, text_offset where each begins; and the same tokens scored as a prompt (echo)
# get the same log-probabilities
r=$(post /v1/completions '{"prompt":[1,403,407,261],"max_tokens":12,"temperature":0,"logprobs":2}')
check "greedy logprobs: each token is its top alternative and the tokens spell the text" 'jt "$r" "(lambda c,l: len(l[\"tokens\"])==12 and all(abs(x-max(a.values()))<1e-7 and len(a)==2 for x,a in zip(l[\"token_logprobs\"],l[\"top_logprobs\"])) and \"\".join(l[\"tokens\"])==c[\"text\"] and all(c[\"text\"][o:].startswith(tk) for o,tk in zip(l[\"text_offset\"],l[\"tokens\"])) and all(x<=0 for x in l[\"token_logprobs\"]))(d[\"choices\"][0], d[\"choices\"][0][\"logprobs\"])"'
g=$("$BIN" generate "$M" -p "Once upon a" -n 12 --temp 0 --json 2>/dev/null)
gen=$(jf "$g" 'json.dumps(d["ids"])')
r2=$(post /v1/completions "{\"prompt\":$(python3 -c "import json;print(json.dumps([1,403,407,261]+json.loads('$gen')))"),\"max_tokens\":0,\"echo\":true,\"logprobs\":2}")
check "generated tokens' logprobs equal the same tokens scored with echo" 'python3 -c "
import json,sys
a=json.loads(sys.argv[1])[\"choices\"][0][\"logprobs\"]; b=json.loads(sys.argv[2])[\"choices\"][0][\"logprobs\"]
assert b[\"tokens\"][4:]==a[\"tokens\"], (a[\"tokens\"], b[\"tokens\"])
assert all(abs(x-y)<1e-5 for x,y in zip(a[\"token_logprobs\"],b[\"token_logprobs\"][4:]))
" "$r" "$r2"'
# a prompt of two chunks (450 tokens) scored: the sum of its tokens' NLL is what bitllm ppl gives
# the same text in one window (1e-6 relative: the same logits, summed in another order)
printf '%s' "$long" > "$tmp/long.txt"
pj=$("$BIN" ppl "$M" -f "$tmp/long.txt" --ctx 512 --json 2>/dev/null)
r=$(post /v1/completions "{\"prompt\":\"$long\",\"max_tokens\":0,\"echo\":true,\"logprobs\":1}")
check "a two-chunk prompt scored with echo sums to bitllm ppl's NLL of the text" 'python3 -c "
import json,sys
l=json.loads(sys.argv[1])[\"choices\"][0][\"logprobs\"][\"token_logprobs\"]; p=json.loads(sys.argv[2])
assert p[\"chunks\"]==1 and len(l)==p[\"tokens\"]+1>256, (len(l), p[\"tokens\"])
nll=-sum(l[1:]); assert abs(nll-p[\"nll\"])<1e-6*p[\"nll\"], (nll, p[\"nll\"])
" "$r" "$pj"'
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":3,"temperature":0,"echo":true}')
check "echo without logprobs: the prompt as given, then the text" 'jt "$r" "d[\"choices\"][0][\"text\"].startswith(\"Once upon a time,\") and d[\"choices\"][0][\"logprobs\"] is None"'
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":3,"temperature":0,"echo":true,"logprobs":0}')
check "echoed string prompt: text_offset in the text as returned" 'jt "$r" "(lambda c,l: l[\"text_offset\"][1:3]==[0,4] and all(c[\"text\"][o:].startswith(tk if i else tk.lstrip()) for i,(o,tk) in enumerate(zip(l[\"text_offset\"][1:],l[\"tokens\"][1:]))) and all(t=={} for t in l[\"top_logprobs\"][1:]))(d[\"choices\"][0], d[\"choices\"][0][\"logprobs\"])"'
# scored while 3 other requests decode beside it: the same numbers
for i in 1 2 3; do post /v1/completions "{\"prompt\":\"The dog $i\",\"max_tokens\":30,\"temperature\":0}" > /dev/null & done
r3=$(post /v1/completions "{\"prompt\":$(python3 -c "import json;print(json.dumps([1,403,407,261]+json.loads('$gen')))"),\"max_tokens\":0,\"echo\":true,\"logprobs\":2}")
wait_bg() { for j in $(jobs -p); do [ "$j" = "$SRV_PID" ] || wait "$j"; done; }
wait_bg
check "a prompt scored beside other requests gets the same logprobs" 'python3 -c "
import json,sys; assert json.loads(sys.argv[1])[\"choices\"][0][\"logprobs\"]==json.loads(sys.argv[2])[\"choices\"][0][\"logprobs\"]" "$r3" "$r2"'
r=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":6,"temperature":0,"logprobs":true,"top_logprobs":3}')
check "chat logprobs: content entries with token, logprob, bytes and 3 alternatives" 'jt "$r" "(lambda l: len(l[\"content\"])==6 and l[\"refusal\"] is None and all(set(e)=={\"token\",\"logprob\",\"bytes\",\"top_logprobs\"} and len(e[\"top_logprobs\"])==3 and bytes(e[\"bytes\"]).decode(\"utf-8\",\"replace\")==e[\"token\"] and abs(e[\"logprob\"]-e[\"top_logprobs\"][0][\"logprob\"])<1e-7 for e in l[\"content\"]) and \"\".join(e[\"token\"] for e in l[\"content\"])==d[\"choices\"][0][\"message\"][\"content\"])(d[\"choices\"][0][\"logprobs\"])"'
# streamed: each token's event carries its entry; together they are the plain answer's
b='{"prompt":"Once upon a time","max_tokens":10,"temperature":0,"logprobs":2'
post /v1/completions "$b}" > "$tmp/lp_plain"
post /v1/completions "$b,\"stream\":true}" > "$tmp/lp_stream"
check "streamed logprobs: one entry per token event, together the plain answer's" 'python3 -c "
import json,sys
plain=json.load(open(sys.argv[1]))[\"choices\"][0][\"logprobs\"]
ev=[json.loads(e[6:]) for e in open(sys.argv[2]).read().split(\"\n\n\") if e.startswith(\"data: {\")]
lps=[c[\"choices\"][0][\"logprobs\"] for c in ev[:-1]]
assert ev[-1][\"choices\"][0][\"logprobs\"] is None and all(len(l[\"tokens\"])==1 for l in lps), lps
got={k:sum((l[k] for l in lps),[]) for k in (\"tokens\",\"token_logprobs\",\"top_logprobs\",\"text_offset\")}
assert got==plain, (got, plain)
" "$tmp/lp_plain" "$tmp/lp_stream"'
# a stream of several choices (3 prompts, n = 2, echo, logprobs): per index, its events put
# together are the plain answer's choice (text, logprobs, finish), each event carries one choice,
# the echo comes first with the prompt's entries, and usage is the plain answer's
same_stream() { python3 - "$1" "$2" <<'PY'
import json,sys
plain=json.load(open(sys.argv[1]))
ev=open(sys.argv[2]).read().split("\n\n")
assert ev[-1]=="" and ev[-2]=="data: [DONE]", ev[-2:]
ev=[json.loads(e[6:]) for e in ev[:-2]]
usage=[e["usage"] for e in ev if "usage" in e and e["usage"]]
ev=[e for e in ev if e["choices"]]
assert all(len(e["choices"])==1 for e in ev)
chat=plain["object"]=="chat.completion"
for want in plain["choices"]:
    i=want["index"]; mine=[e["choices"][0] for e in ev if e["choices"][0]["index"]==i]
    assert mine and mine[-1]["finish_reason"]==want["finish_reason"], (i, mine[-1:])
    assert all(c["finish_reason"] is None for c in mine[:-1]), i
    if chat:
        assert mine[0]["delta"].get("role")=="assistant", mine[0]
        text="".join(c["delta"].get("content","") for c in mine); assert text==want["message"]["content"], (i, text)
        if want["logprobs"]:
            got=sum((c["logprobs"]["content"] for c in mine if c["logprobs"]),[])
            assert got==want["logprobs"]["content"], i
        continue
    text="".join(c["text"] for c in mine); assert text==want["text"], (i, text, want["text"])
    if want["logprobs"]:
        lps=[c["logprobs"] for c in mine if c["logprobs"]]
        got={k:sum((l[k] for l in lps),[]) for k in ("tokens","token_logprobs","top_logprobs","text_offset")}
        assert got==want["logprobs"], (i, got, want["logprobs"])
if "usage" in plain and usage: assert usage[-1]==plain["usage"], (usage, plain["usage"])
print(len(plain["choices"]))
PY
}
b='{"prompt":["Once upon a time",[1,403,407],"The cat sat"],"n":2,"max_tokens":6,"temperature":1,"seed":9,"logprobs":1,"echo":true'
post /v1/completions "$b}" > "$tmp/m_plain"
post /v1/completions "$b,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" > "$tmp/m_stream"
check "a stream of 6 choices (3 prompts, n = 2, echo, logprobs) puts together the plain answer" '[ "$(same_stream "$tmp/m_plain" "$tmp/m_stream")" = 6 ] && jt "$(cat "$tmp/m_plain")" "len(set(c[\"text\"] for c in d[\"choices\"]))>=4"'
check "a streamed echo comes first, with the prompt's log-probabilities" 'python3 -c "
import json,sys
ev=[json.loads(e[6:]) for e in open(sys.argv[1]).read().split(\"\n\n\") if e.startswith(\"data: {\")]
first=[e for e in ev if e[\"choices\"] and e[\"choices\"][0][\"index\"]==0][0][\"choices\"][0]
assert first[\"text\"]==\"Once upon a time\" and first[\"logprobs\"][\"text_offset\"]==[0,0,4,9,11] and first[\"logprobs\"][\"token_logprobs\"][0] is None
" "$tmp/m_stream"'
for b in '"prompt":"Once upon a time","max_tokens":0' '"prompt":"Once upon a time","max_tokens":0,"logprobs":0' '"prompt":[1,403,407,261],"max_tokens":4,"temperature":0'; do
  post /v1/completions "{$b,\"echo\":true}" > "$tmp/e_plain"; post /v1/completions "{$b,\"echo\":true,\"stream\":true}" > "$tmp/e_stream"
  check "streamed echo equals the plain answer ($b)" '[ "$(same_stream "$tmp/e_plain" "$tmp/e_stream")" = 1 ]'
done
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":0,"echo":true,"logprobs":0}')
check "echo of a string prompt with max_tokens 0: text_offset in the text as returned" 'jt "$r" "d[\"choices\"][0][\"logprobs\"][\"text_offset\"]==[0,0,4,9,11] and d[\"choices\"][0][\"text\"]==\"Once upon a time\""'
b='{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":5,"n":2,"seed":3,"temperature":1,"logprobs":true,"top_logprobs":1'
post /v1/chat/completions "$b}" > "$tmp/c_plain"; post /v1/chat/completions "$b,\"stream\":true}" > "$tmp/c_stream"
check "a chat stream with n = 2: each index opens with the role and puts together its message" '[ "$(same_stream "$tmp/c_plain" "$tmp/c_stream")" = 2 ]'
# logit_bias: +100 forces a token, -100 bans it (logprobs stay the model's: the banned token is
# still the top alternative), bad keys and values are 400
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":4,"temperature":0,"logit_bias":{"261":100}}')
check "logit_bias +100 forces the token (' a' four times)" 'jt "$r" "d[\"choices\"][0][\"text\"]==\" a a a a\""'
gid=$("$BIN" generate "$M" -p "Once upon a time" -n 1 --temp 0 --json 2>/dev/null | python3 -c "import json,sys;print(json.load(sys.stdin)['ids'][0])")
r=$(post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":3,\"temperature\":0,\"logprobs\":1,\"logit_bias\":{\"$gid\":-100}}")
check "logit_bias -100 bans the greedy token; its logprob is still the top alternative" 'python3 -c "
import json,sys
p=json.load(open(sys.argv[1]))[\"choices\"][0][\"logprobs\"]; l=json.loads(sys.argv[2])[\"choices\"][0][\"logprobs\"]
assert l[\"tokens\"][0]!=p[\"tokens\"][0], (l[\"tokens\"], p[\"tokens\"])
assert l[\"top_logprobs\"][0]=={p[\"tokens\"][0]: p[\"token_logprobs\"][0]}, (l[\"top_logprobs\"][0], p)
assert l[\"token_logprobs\"][0]<p[\"token_logprobs\"][0]
" "$tmp/lp_plain" "$r"'
bad400 "400 logit_bias key not a token id" /v1/completions '{"prompt":"a","logit_bias":{"x1":5}}' logit_bias
bad400 "400 logit_bias above 100" /v1/completions '{"prompt":"a","logit_bias":{"5":100.5}}' logit_bias
bad400 "400 logit_bias not an object" /v1/completions '{"prompt":"a","logit_bias":[5]}' logit_bias
# what would change the answer and is not implemented is refused, not ignored; neutral values pass
bad400 "400 llama.cpp's grammar" /v1/completions '{"prompt":"a","grammar":"root ::= \"x\""}' grammar
bad400 "400 typical_p below 1" /v1/completions '{"prompt":"a","typical_p":0.9}' typical_p
bad400 "400 legacy functions" /v1/chat/completions '{"messages":[{"role":"user","content":"a"}],"functions":[{"name":"f"}]}' functions
r=$(post /v1/completions '{"prompt":"a","max_tokens":1,"typical_p":1,"mirostat":0,"grammar":""}')
check "neutral values of the refused extensions are accepted" 'jt "$r" "d[\"usage\"][\"completion_tokens\"]==1"'
bad400 "400 logprobs above 20" /v1/completions '{"prompt":"a","logprobs":21}' logprobs
bad400 "400 max_tokens 0 without echo" /v1/completions '{"prompt":"a","max_tokens":0}' max_tokens
bad400 "400 top_logprobs without logprobs (chat)" /v1/chat/completions '{"messages":[{"role":"user","content":"a"}],"top_logprobs":2}' top_logprobs
bad400 "400 echo in a chat completion" /v1/chat/completions '{"messages":[{"role":"user","content":"a"}],"echo":true}' echo
# several prompts in one request, and n samples of one: each choice is what its own request
# gives (the j-th sample of a prompt with seed + j), in OpenAI's order, usage counting a prompt once
r=$(post /v1/completions '{"prompt":["Once upon a time",[1,403,407],"The cat sat"],"max_tokens":8,"temperature":0}')
ok3=0; ptok=0
for i in 0 1 2; do
  pi=$(python3 -c "import json;print(json.dumps(['Once upon a time',[1,403,407],'The cat sat'][$i]))")
  one=$(post /v1/completions "{\"prompt\":$pi,\"max_tokens\":8,\"temperature\":0}")
  [ "$(jf "$r" "d['choices'][$i]['text']")" = "$(jf "$one" "d['choices'][0]['text']")" ] && [ "$(jf "$r" "d['choices'][$i]['index']")" = $i ] && ok3=$((ok3 + 1))
  ptok=$((ptok + $(jf "$one" "d['usage']['prompt_tokens']")))
done
check "3 prompts in one request: each choice equals its prompt's own request" '[ "$ok3" = 3 ] && jt "$r" "d[\"usage\"][\"completion_tokens\"]==24 and d[\"usage\"][\"prompt_tokens\"]==$ptok"'
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":1,"n":3,"seed":40}')
okn=0
for j in 0 1 2; do
  one=$(post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":1,\"seed\":$((40 + j))}")
  [ -n "$(jf "$one" "d['choices'][0]['text']")" ] && [ "$(jf "$r" "d['choices'][$j]['text']")" = "$(jf "$one" "d['choices'][0]['text']")" ] && okn=$((okn + 1))
done
check "n = 3 with seed 40: the samples of seeds 40, 41, 42, not all alike, prompt counted once" '[ "$okn" = 3 ] && jt "$r" "len(set(c[\"text\"] for c in d[\"choices\"]))>1 and d[\"usage\"][\"prompt_tokens\"]==5 and d[\"usage\"][\"completion_tokens\"]==36"'
r=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":5,"n":2,"seed":3,"logprobs":true}')
check "chat n = 2: two messages, each with its logprobs" 'jt "$r" "len(d[\"choices\"])==2 and [c[\"index\"] for c in d[\"choices\"]]==[0,1] and all(len(c[\"logprobs\"][\"content\"])==5 and c[\"message\"][\"role\"]==\"assistant\" for c in d[\"choices\"])"'
post /v1/completions '{"prompt":"Once upon a time","max_tokens":24,"temperature":0,"stream":true}' > "$tmp/s1"
gtext=$(jf "$want24" 'd["text"]')
check "streamed completion: one SSE event per token, [DONE], same text" 'python3 -c "
import json,sys
ev=sys.stdin.read().split(\"\n\n\")
assert ev[-1]==\"\" and ev[-2]==\"data: [DONE]\", ev[-2:]
ch=[json.loads(e[6:]) for e in ev[:-2]]
assert all(e.startswith(\"data: \") for e in ev[:-2])
assert ch[-1][\"choices\"][0][\"finish_reason\"]==\"length\"
assert all(c[\"object\"]==\"text_completion\" for c in ch)
assert len(ch)==25, len(ch)  # one event per token, then the finish
print(\"\".join(c[\"choices\"][0][\"text\"] for c in ch))" < "$tmp/s1" > "$tmp/s1.txt" && [ "$(cat "$tmp/s1.txt")" = "$gtext" ]'
# top_k 1 and min_p 1 leave only the most likely token: the greedy text at any temperature, in
# the server and in generate; min_p 0.05 at temperature 1 gives generate's text for the same seed
for f in '"top_k":1' '"min_p":1'; do
  r=$(post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"temperature\":1.5,\"seed\":5,$f}")
  check "temperature 1.5 with $f gives the greedy text" '[ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$gtext" ]'
done
g=$("$BIN" generate "$M" -p "Once upon a time" -n 24 --temp 1.5 --top-k 1 --json 2>/dev/null)
check "generate --top-k 1 gives the greedy text" '[ "$(jf "$g" "d[\"text\"]")" = "$gtext" ]'
r=$(post /v1/completions '{"prompt":"Once upon a time","max_tokens":24,"temperature":1,"min_p":0.05,"top_k":40,"seed":11}')
g=$("$BIN" generate "$M" -p "Once upon a time" -n 24 --temp 1 --top-p 1 --min-p 0.05 --top-k 40 --seed 11 --json 2>/dev/null)
check "server and generate sample the same text with top_k 40 and min_p 0.05" '[ -n "$(jf "$g" "d[\"text\"]")" ] && [ "$(jf "$r" "d[\"choices\"][0][\"text\"]")" = "$(jf "$g" "d[\"text\"]")" ]'
chat='{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Tell me a story."}],"max_tokens":20,"temperature":0}'
r=$(post /v1/chat/completions "$chat")
check "chat completion object" 'jt "$r" "d[\"object\"]==\"chat.completion\" and d[\"choices\"][0][\"message\"][\"role\"]==\"assistant\" and len(d[\"choices\"][0][\"message\"][\"content\"])>0 and d[\"usage\"][\"completion_tokens\"]==20"'
ctext=$(jf "$r" 'd["choices"][0]["message"]["content"]')
post /v1/chat/completions "${chat%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" > "$tmp/s2"
check "streamed chat: role first, deltas, finish, usage, [DONE]" 'python3 -c "
import json,sys
ev=sys.stdin.read().split(\"\n\n\")
assert ev[-2]==\"data: [DONE]\"
ch=[json.loads(e[6:]) for e in ev[:-2]]
assert ch[0][\"choices\"][0][\"delta\"][\"role\"]==\"assistant\"
assert ch[-1][\"choices\"]==[] and ch[-1][\"usage\"][\"completion_tokens\"]==20
assert ch[-2][\"choices\"][0][\"finish_reason\"]==\"length\"
assert all(c[\"object\"]==\"chat.completion.chunk\" for c in ch)
print(\"\".join(c[\"choices\"][0][\"delta\"].get(\"content\",\"\") for c in ch[:-1]))" < "$tmp/s2" > "$tmp/sc" && [ "$(cat "$tmp/sc")" = "$ctext" ]'

# ---- errors ----
check "400 malformed JSON" '[ "$(status /v1/completions "${A[@]}" -d "{bad")" = 400 ]'
bad400 "400 bad parameter names it (temperature)" /v1/completions '{"prompt":"a","temperature":5}' temperature
bad400 "400 top_k below 0" /v1/completions '{"prompt":"a","top_k":-1}' top_k
bad400 "400 min_p above 1" /v1/completions '{"prompt":"a","min_p":1.5}' min_p
bad400 "400 presence_penalty outside [-2, 2]" /v1/completions '{"prompt":"a","presence_penalty":2.5}' presence_penalty
bad400 "400 repeat_penalty 0" /v1/completions '{"prompt":"a","repeat_penalty":0}' repeat_penalty
bad400 "400 n = 0" /v1/completions '{"prompt":"a","n":0}' n
bad400 "400 more than 16 choices (3 prompts, n = 6)" /v1/completions '{"prompt":["a","b","c"],"n":6}' n
r=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}')
check "400 template role error (llama2 alternation)" 'e400 "$r" messages && jf "$r" "d[\"error\"][\"message\"]" | grep -q alternate'
bad400 "400 empty messages" /v1/chat/completions '{"messages":[]}' messages
r=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"a\u0000b"}]}')
check "400 a NUL character (\\u0000) instead of a cut prompt" '[ "$(jf "$r" "d[\"error\"][\"type\"]")" = invalid_request_error ] && jf "$r" "d[\"error\"][\"message\"]" | grep -q "NUL character"'
r=$(post /v1/completions '{"prompt":"a\\u0000b","max_tokens":1}')
check "an escaped backslash before u0000 is text" '[ "$(jf "$r" "d[\"usage\"][\"completion_tokens\"]")" = 1 ]'
python3 -c "print('{\"prompt\":\"' + 'the cat sat on the mat. '*400 + '\"}')" > "$tmp/big.json"
r=$(c /v1/completions "${A[@]}" -w ' %{http_code}' -d @"$tmp/big.json")
check "413 body over --max-body, error object" '[ "${r##* }" = 413 ] && jt "${r% *}" "d[\"error\"][\"type\"]==\"invalid_request_error\" and \"4096\" in d[\"error\"][\"message\"]"'
head -c 6000 /dev/zero | tr '\0' 'a' > "$tmp/big"
check "413 chunked body over --max-body" '[ "$(status /v1/completions "${A[@]}" -H "Transfer-Encoding: chunked" --data-binary @"$tmp/big")" = 413 ]'
check "401 without a key" '[ "$(status /v1/completions -d "{}")" = 401 ]'
r=$(c /v1/models -H "Authorization: Bearer wrong")
check "401 wrong key, error object" 'jt "$r" "d[\"error\"][\"type\"]==\"authentication_error\" and d[\"error\"][\"code\"]==\"invalid_api_key\""'
check "/health needs no key" '[ "$(status /health)" = 200 ]'
check "404 unknown path" '[ "$(status /v1/embeddings "${A[@]}")" = 404 ] && [ "$(jf "$(c /nope)" "d[\"error\"][\"type\"]")" = not_found_error ]'
check "405 wrong method, with Allow" '[ "$(status /v1/completions "${A[@]}")" = 405 ] && c /v1/chat/completions -i "${A[@]}" | grep -qi "^Allow: POST"'
clean_log "$tmp/a.log" && ok "no sanitizer report (endpoints)" || bad "sanitizer report in $tmp/a.log"

# ---- concurrency: 8 at once equal 8 one after another ----
body() { echo "{\"prompt\":\"$1\",\"max_tokens\":40,\"temperature\":$2,\"seed\":$3}"; }
P=("Once upon a time" "The cat" "Lily went to" "One day, a big" "Tom had a red" "The sun was" "A little bird" "Mom said")
for i in $(seq 0 7); do post /v1/completions "$(body "${P[$i]}" $((i % 2)) $((100 + i)))" > "$tmp/seq$i"; done
for i in $(seq 0 7); do post /v1/completions "$(body "${P[$i]}" $((i % 2)) $((100 + i)))" > "$tmp/par$i" & done
wait_jobs() { for j in $(jobs -p); do [ "$j" = "$SRV_PID" ] || wait "$j"; done; }
wait_jobs
same=0
for i in $(seq 0 7); do
  a=$(jf "$(cat "$tmp/seq$i")" 'd["choices"][0]["text"]'); b=$(jf "$(cat "$tmp/par$i")" 'd["choices"][0]["text"]')
  [ -n "$a" ] && [ "$a" = "$b" ] && same=$((same + 1))
done
check "8 concurrent requests give the texts of 8 sequential ones (greedy and seeded)" '[ "$same" = 8 ]'
check "the 8 texts are not all alike" '[ "$(for i in $(seq 0 7); do jf "$(cat "$tmp/seq$i")" "d[\"choices\"][0][\"text\"]"; done | sort -u | wc -l)" -ge 6 ]'
stop_server "$SRV_PID"; rc=$?
check "SIGTERM with nothing running exits 0" '[ "$rc" = 0 ]'
clean_log "$tmp/a.log" && ok "no sanitizer report (concurrency)" || bad "sanitizer report in $tmp/a.log"

# ---- one slot, no queue: 503, disconnects, prompt too long, SIGTERM drain ----
# stories260K decodes thousands of tokens a second: a request of the whole 2048-token context is
# the longest one there is, ~0.26 s with the AVX-512 attention and ~1.1 s with the reference
# kernels (BITLLM_ISA=ref), which this server runs so that the request lasts long enough to act
# on while it runs
BITLLM_ISA=ref start_server "$tmp/b.log" "$M" --parallel 1 --queue 0 --ctx 2048 || { cat "$tmp/b.log"; exit 1; }
endless='{"prompt":"Once","max_tokens":100000,"ignore_eos":true,"stream":true,"temperature":1,"seed":3}'
curl -s -N --max-time 120 -d "$endless" "http://127.0.0.1:$PORT/v1/completions" > "$tmp/long" & CURL=$!
for _ in $(seq 1 200); do grep -q '"text"' "$tmp/long" 2>/dev/null && break; sleep 0.05; done
r=$(c /v1/completions -d '{"prompt":"a","max_tokens":2}')
check "503 when the slot and the queue are full" '[ "$(jf "$r" "d[\"error\"][\"type\"]")" = unavailable_error ] && [ "$(c /v1/completions -o /dev/null -w "%{http_code}" -d "{\"prompt\":\"a\"}")" = 503 ]'
kill "$CURL" 2>/dev/null; wait "$CURL" 2>/dev/null
r=
for _ in $(seq 1 100); do  # the slot is freed at the scheduler's next step
  r=$(c /v1/completions -d '{"prompt":"Once upon a time","max_tokens":3,"temperature":0}')
  [ "$(jf "$r" "d[\"usage\"][\"completion_tokens\"]")" = 3 ] && break; sleep 0.05
done
check "a disconnected client frees its slot" '[ "$(jf "$r" "d[\"usage\"][\"completion_tokens\"]")" = 3 ] && grep -q cancelled "$tmp/b.log"'
check "/metrics counts the cancelled request" '[ "$(c /metrics | sed -n "s/^bitllm_requests_cancelled_total //p")" = 1 ]'
r=$(c /v1/completions -d "{\"prompt\":\"$(python3 -c "print('the cat sat on the mat. '*400)")\"}")
check "400 prompt longer than --ctx, with the numbers" '[ "$(jf "$r" "d[\"error\"][\"code\"]")" = context_length_exceeded ] && jf "$r" "d[\"error\"][\"message\"]" | grep -q "at most 2048"'
r=$(c /v1/completions -d "{\"prompt\":[1,$(python3 -c "print(','.join(str(300 + i % 200) for i in range(2040)))")],\"max_tokens\":5000,\"temperature\":0}")
check "max_tokens clamped to the context" 'jt "$r" "(d[\"choices\"][0][\"finish_reason\"]==\"length\" and d[\"usage\"][\"total_tokens\"]==2048) or d[\"choices\"][0][\"finish_reason\"]==\"stop\""'
# SIGTERM while a stream runs: it is finished, new requests get 503, then exit 0
curl -s -N --max-time 120 -d '{"prompt":"Once","max_tokens":250,"ignore_eos":true,"stream":true,"temperature":1,"seed":5}' "http://127.0.0.1:$PORT/v1/completions" > "$tmp/drain" & CURL=$!
for _ in $(seq 1 200); do grep -q '"text"' "$tmp/drain" 2>/dev/null && break; sleep 0.05; done
kill -TERM "$SRV_PID"
sleep 0.2
during=$(c /v1/completions -o /dev/null -w '%{http_code}' -d '{"prompt":"a","max_tokens":1}')
wait "$SRV_PID"; rc=$?
wait "$CURL"
check "SIGTERM drains: the running stream completes" 'tail -c 200 "$tmp/drain" | grep -q "data: \[DONE\]" && grep -q "\"finish_reason\":\"length\"" "$tmp/drain"' || { tail -c 600 "$tmp/drain"; tail -5 "$tmp/b.log"; }
check "SIGTERM: requests during the drain get 503 (or find the port closed)" '[ "$during" = 503 ] || [ "$during" = 000 ]'
check "SIGTERM: exit status 0" '[ "$rc" = 0 ]'
clean_log "$tmp/b.log" && ok "no sanitizer report (slots, drain)" || bad "sanitizer report in $tmp/b.log"

# ---- 1000 malformed / random requests ----
N=1000
start_server "$tmp/c.log" "$M" --chat-template chatml --parallel 4 --max-body 65536 --cors http://ui.test || { cat "$tmp/c.log"; exit 1; }
# --cors: browsers' preflights answered, every answer (errors and streams too) naming the origin
h=$(c /v1/chat/completions -i -X OPTIONS -H "Origin: http://ui.test" -H "Access-Control-Request-Method: POST" -H "Access-Control-Request-Headers: authorization, content-type")
check "--cors: a preflight gets 204 with the origin, methods and headers" 'echo "$h" | head -1 | grep -q " 204" && echo "$h" | grep -qi "^Access-Control-Allow-Origin: http://ui.test" && echo "$h" | grep -qi "^Access-Control-Allow-Methods: POST" && echo "$h" | grep -qi "^Access-Control-Allow-Headers: Authorization, Content-Type"'
check "--cors: answers, errors and streams carry the origin" 'c /v1/completions -i -d "{\"prompt\":\"a\",\"max_tokens\":1}" | grep -qi "^Access-Control-Allow-Origin: http://ui.test" && c /v1/completions -i -d "{bad" | grep -qi "^Access-Control-Allow-Origin: http://ui.test" && c /v1/completions -i -d "{\"prompt\":\"a\",\"max_tokens\":1,\"stream\":true}" | grep -qi "^Access-Control-Allow-Origin: http://ui.test"'
# GET /metrics (Prometheus text): one request of a 5-token prompt and 16 tokens moves the
# counters by exactly that
metric() { sed -n "s/^bitllm_$1 //p" "$2"; }
c /metrics > "$tmp/m0"
before=$(c /v1/completions -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}')
c /metrics -i > "$tmp/m1"
check "/metrics: a 5-token prompt and 16 tokens move the counters by that, HELP and TYPE lines" '[ $(( $(metric prompt_tokens_total "$tmp/m1") - $(metric prompt_tokens_total "$tmp/m0") )) = 5 ] && [ $(( $(metric tokens_predicted_total "$tmp/m1") - $(metric tokens_predicted_total "$tmp/m0") )) = 16 ] && [ $(( $(metric requests_finished_total "$tmp/m1") - $(metric requests_finished_total "$tmp/m0") )) = 1 ] && [ "$(metric requests_processing "$tmp/m1")" = 0 ] && [ "$(metric slots "$tmp/m1")" = 4 ] && grep -q "^# TYPE bitllm_tokens_predicted_total counter" "$tmp/m1" && grep -qi "^Content-Type: text/plain; version=0.0.4" "$tmp/m1"'
f=$(python3 "$(dirname "$0")/serve_fuzz.py" "$PORT" "$N" 1 240)
echo "fuzz: $f"
check "$N random requests sent within the time bound" '[ "$(jf "$f" "d[\"sent\"]")" = "$N" ]'
check "the fuzzed requests got answers (400s among them)" '[ "$(jf "$f" "d[\"outcomes\"].get(\"400\",0)>100")" = True ]'
after=$(c /v1/completions -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}')
check "still serving after the fuzz: same greedy text" '[ "$(c /health)" = "{\"status\":\"ok\"}" ] && [ -n "$(jf "$after" "d[\"choices\"][0][\"text\"]")" ] && [ "$after" != "" ] && [ "$(jf "$after" "d[\"choices\"][0][\"text\"]")" = "$(jf "$before" "d[\"choices\"][0][\"text\"]")" ]'
stop_server "$SRV_PID"; rc=$?
check "exit 0 after the fuzz" '[ "$rc" = 0 ]'
clean_log "$tmp/c.log" && ok "no sanitizer report (fuzz)" || { bad "sanitizer report"; grep -m5 -A10 -E "Sanitizer|runtime error" "$tmp/c.log"; }

# ---- flags ----
expect_usage "serve --parallel 0" "--parallel must be in [1, 256], got 0" "$BIN" serve "$M" --parallel 0
expect_usage "serve --ctx 8" "--ctx must be >= 16, got 8" "$BIN" serve "$M" --ctx 8
expect_usage "serve --port 70000" "--port must be in [0, 65535]" "$BIN" serve "$M" --port 70000
expect_usage "serve --max-body 1x" "invalid value '1x' for --max-body" "$BIN" serve "$M" --max-body 1x
expect_usage "chat --seed with --temp 0" "--seed has no effect with --temp 0" "$BIN" chat "$M" --temp 0 --seed 3
expect_usage "generate --repeat-last-n without a penalty" "--repeat-last-n has no effect without" "$BIN" generate "$M" --repeat-last-n 8
expect_usage "chat --repeat-penalty 0" "--repeat-penalty must be > 0" "$BIN" chat "$M" --repeat-penalty 0
check "unknown --chat-template is refused" '"$BIN" serve "$M" --port 0 --chat-template nope 2>&1 | grep -q "unknown chat template"'
check "--host must be an address" '"$BIN" serve "$M" --port 0 --host example 2>&1 | grep -q "not an IPv4"'
finish
