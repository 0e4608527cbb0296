#!/usr/bin/env bash
# bitllm eval / compare / report end to end on stories260K: JSON shapes, --limit, per-item dumps,
# a small comparison matrix with its results.jsonl, report.md and plot, and clean failures.
set -u
BIN=${BITLLM_BIN:?}
DATA=${BITLLM_DATA:-../shared}
M=$DATA/models/stories260K/stories260K.gguf
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
if [ ! -e "$M" ] || [ ! -e "$DATA/data/llm-foundry-icl/boolq.jsonl" ]; then
  echo "SKIP: $M or task data not found"; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py() { python3 -c "$@"; }
# smaller runs under the sanitizers
if [ -n "${BITLLM_TEST_QUICK:-}" ] && [ "${BITLLM_TEST_QUICK}" != 0 ]; then N=2; PT=600; else N=4; PT=1500; fi

# eval --json over every task
$BIN eval "$M" --tasks all --limit $N --json --dump "$tmp/items.jsonl" >"$tmp/all.json" 2>"$tmp/err"
check "eval --json all tasks" 'py "
import json,sys
d=json.load(open(sys.argv[1]))
t=d[\"tasks\"]
assert set(t)=={\"piqa\",\"arc_easy\",\"arc_challenge\",\"hellaswag\",\"winogrande\",\"boolq\",\"lambada\",\"openbookqa\"}, t.keys()
for k,v in t.items():
    assert v[\"n\"]==int(sys.argv[2]) and 0<=v[\"acc\"]<=1 and \"acc_stderr\" in v, k
    assert (\"acc_norm\" in v)==(k not in (\"winogrande\",\"boolq\",\"lambada\")), k
    assert v[\"tokens\"]>0 and v[\"computed_tokens\"]<=v[\"tokens\"], k
assert t[\"lambada\"][\"ppl\"]>1
assert abs(d[\"average\"]-sum(v[\"acc\"] for v in t.values())/8)<1e-12
assert d[\"ctx\"]>0 and d[\"bos\"] is True and d[\"bpw_layers\"]>0 and d[\"method\"]==\"fp\"
" "$tmp/all.json" $N'
check "eval --dump: one line per item, acc from the dump" 'py "
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
d=json.load(open(sys.argv[2]))
assert len(rows)==8*int(sys.argv[3])
for task in d[\"tasks\"]:
    r=[x for x in rows if x[\"task\"]==task]
    acc=sum(x[\"pred\"]==x[\"gold\"] for x in r)/len(r)
    assert abs(acc-d[\"tasks\"][task][\"acc\"])<1e-12, task
    if \"pred_norm\" in r[0]:
        an=sum(x[\"pred_norm\"]==x[\"gold\"] for x in r)/len(r)
        assert abs(an-d[\"tasks\"][task][\"acc_norm\"])<1e-12, task
" "$tmp/items.jsonl" "$tmp/all.json" $N'
check "eval progress on stderr" 'grep -q "piqa" "$tmp/err"'

# --limit N scores the first N items exactly as a longer run does
$BIN eval "$M" --tasks piqa,winogrande --limit 2 --dump "$tmp/two.jsonl" >/dev/null 2>&1
check "--limit is a prefix of a longer run" 'py "
import json,sys
a=[json.loads(l) for l in open(sys.argv[1])]
b=[json.loads(l) for l in open(sys.argv[2]) if json.loads(l)[\"task\"] in (\"piqa\",\"winogrande\")]
b=[x for x in b if x[\"index\"]<2]
assert [x[\"ll\"] for x in a]==[x[\"ll\"] for x in b]
" "$tmp/two.jsonl" "$tmp/items.jsonl"'

out=$($BIN eval "$M" --tasks boolq --limit 3 2>/dev/null)
check "eval text output" 'echo "$out" | grep -q "^boolq" && echo "$out" | grep -q "^average" && echo "$out" | grep -q "bpw 32.000 layers"'
bytes=$($BIN eval "$M" --tasks arc_easy --limit 3 --norm bytes --json 2>/dev/null)
check "--norm bytes" 'py "import json,sys; assert json.loads(sys.argv[1])[\"norm\"]==\"bytes\"" "$bytes"'

# compare: FP + rtn1 + dbf at onebit's cost, a few items, a short ppl text
$BIN compare "$M" --methods rtn1,dbf --bpw onebit --tasks piqa,lambada --limit $N \
  --ppl-tokens $PT --out "$tmp/cmp" --json >"$tmp/cmp.json" 2>"$tmp/cmp.err"
check "compare writes one line per run" 'py "
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
assert [r[\"label\"] for r in rows]==[\"fp\",\"rtn1\",\"dbf-onebit\"], rows
for r in rows:
    for k in (\"model\",\"method\",\"params\",\"bpw_layers\",\"bpw_model\",\"seed\",\"ctx\",\"tokens\",\"version\",\"ppl\",\"tasks\",\"average\"):
        assert k in r, k
    assert r[\"tokens\"]==int(sys.argv[3]) and set(r[\"tasks\"])=={\"piqa\",\"lambada\"}
assert rows[0][\"bpw_layers\"]==32 and rows[1][\"bpw_layers\"]<2 and rows[2][\"params\"][\"bpw_target\"]==\"onebit\"
d=json.load(open(sys.argv[2])); assert len(d[\"runs\"])==3
" "$tmp/cmp/results.jsonl" "$tmp/cmp.json" $PT'
check "compare removes the quantized models" '[ -d "$tmp/cmp/models" ] && [ -z "$(ls "$tmp/cmp/models")" ]'
check "report.md has a row per run and the FP column" 'grep -c "^| \(fp\|rtn1\|dbf\) " "$tmp/cmp/report.md" | grep -qx 3 && grep -q "% of FP" "$tmp/cmp/report.md"'
if command -v gnuplot >/dev/null; then
  check "plot written" '[ -s "$tmp/cmp/ppl_vs_bpw.png" ] || [ -s "$tmp/cmp/ppl_vs_bpw.svg" ]'
fi
# report re-renders; a repeated label keeps only its latest line
tail -n 1 "$tmp/cmp/results.jsonl" | sed 's/"ppl":[0-9.e+]*/"ppl":12345.5/' >>"$tmp/cmp/results.jsonl"
$BIN report "$tmp/cmp" -q 2>/dev/null
check "report: latest line per label" 'grep -q "12345.50" "$tmp/cmp/report.md" && [ $(grep -c "^| dbf " "$tmp/cmp/report.md") -eq 1 ]'

expect_fail() { # name, command...
  local name=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 127 ] && [ -s "$tmp/err" ]; then ok "$name (rc $rc: $(head -c 100 "$tmp/err" | tr '\n' ' '))"; else bad "$name (rc $rc)"; fi
}
expect_fail "eval without --tasks" $BIN eval "$M"
expect_fail "eval unknown task" $BIN eval "$M" --tasks piqa,mmlu
expect_fail "eval bad --norm" $BIN eval "$M" --tasks piqa --norm words
expect_fail "eval missing data" $BIN eval "$M" --tasks boolq --data "$tmp/none"
expect_fail "eval missing model" $BIN eval "$tmp/none.gguf" --tasks piqa
expect_fail "compare unknown method" $BIN compare "$M" --methods rtn9 --out "$tmp/x"
expect_fail "compare bad bpw" $BIN compare "$M" --methods dbf --bpw 0 --out "$tmp/x"
expect_fail "report without results" $BIN report "$tmp/none"
for c in eval compare report; do $BIN $c --help >/dev/null && ok "$c --help" || bad "$c --help"; done

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
