#!/usr/bin/env bash
# Methods as a format plus parameters: `bitllm formats` lists the registry; a spec and the alias
# plus flags it stands for write byte-identical checkpoints; specs are checked against the
# format's schema; the q8_0 / q4_0 format works end to end.
set -u
. "$(dirname "$0")/testlib.sh"
if [ ! -e "$G" ]; then echo "SKIP: $G not found"; exit 77; fi
head -c 6000 "$DATA/data/wikitext-2/wiki.test.raw" >"$tmp/t.txt" 2>/dev/null ||
  printf 'Once upon a time there was a cat.\n%.0s' {1..40} >"$tmp/t.txt"

j=$($BIN formats --json)
check "formats --json lists the registry with schemas and aliases" 'python3 -c "
import json,sys; d={f[\"name\"]: f for f in json.loads(sys.argv[1])[\"formats\"]}
assert set(d) >= {\"dense\",\"rtn\",\"onebit\",\"dbf\",\"mdbf\",\"qsym\"}
assert d[\"rtn\"][\"aliases\"][\"rtn2\"] == \"bits=2\" and d[\"qsym\"][\"aliases\"][\"q8_0\"] == \"bits=8,group=32\"
assert [p[\"key\"] for p in d[\"mdbf\"][\"params\"]] == [\"mid\",\"rank_l\",\"paths\"] and not d[\"dense\"][\"fittable\"]
" "$j"'
check "formats (text) names every format" '$BIN formats | grep -q "^qsym " && $BIN formats | grep -q "alias rtn4 = rtn:bits=4"'

same() { cmp -s "$1/model.safetensors" "$2/model.safetensors" &&
  [ "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["quantization_config"]["layers"])' "$1/config.json")" = \
    "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["quantization_config"]["layers"])' "$2/config.json")" ]; }
qm() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["quantization_config"]["method"])' "$1/config.json"; }
$BIN quantize "$G" -o "$tmp/a" -m rtn:bits=2,group=64 2>/dev/null
$BIN quantize "$G" -o "$tmp/b" -m rtn2 --group 64 2>/dev/null
check "rtn:bits=2,group=64 = rtn2 --group 64, byte for byte, recorded as rtn2" 'same "$tmp/a" "$tmp/b" && [ "$(qm "$tmp/a")" = rtn2 ]'
$BIN quantize "$G" -o "$tmp/c" -m mdbf:rank=2 --bpw 4 --iters 2 --seed 3 2>/dev/null
$BIN quantize "$G" -o "$tmp/d" -m mdbf --envelope-rank 2 --bpw 4 --iters 2 --seed 3 2>/dev/null
check "mdbf:rank=2 = mdbf --envelope-rank 2, byte for byte" 'same "$tmp/c" "$tmp/d" && [ "$(qm "$tmp/c")" = mdbf ]'
$BIN quantize "$G" -o "$tmp/e" -m dbf:mid=24 --iters 2 2>/dev/null
check "dbf:mid=24: every layer has middle dimension 24" 'python3 -c "
import json,sys; L=json.load(open(sys.argv[1]))[\"quantization_config\"][\"layers\"]
assert len(L) == 35 and all(v[\"mid\"] == 24 for v in L.values())" "$tmp/e/config.json"'

expect_usage "a flag and the spec both set a parameter" "--envelope-rank and -m mdbf:rank_l=2 both set rank_l" $BIN quantize "$G" -o "$tmp/x" -m mdbf:rank_l=2 --envelope-rank 3
expect_usage "unknown key of the format" "qsym has no parameter 'rank' (it has: bits, group)" $BIN quantize "$G" -o "$tmp/x" -m qsym:rank=2
expect_usage "value out of the schema's range" "bits=9 is outside [1, 8]" $BIN quantize "$G" -o "$tmp/x" -m rtn:bits=9
expect_usage "unknown format" "unknown method 'q5_k'" $BIN quantize "$G" -o "$tmp/x" -m q5_k
expect_usage "fit: an option the spec's format does not read" "--bpw is not used by -m q8_0 (used by: dbf, mdbf)" $BIN fit "$G" --tensor model.layers.0.mlp.up_proj.weight -m q8_0 --bpw 2
check "no output was written by any of them" '[ ! -e "$tmp/x" ]'

# q8_0 end to end: bpw, ppl close to the FP model's, reload through the registry
$BIN quantize "$G" -o "$tmp/q8" -m q8_0 2>/dev/null
p0=$($BIN ppl "$G" -f "$tmp/t.txt" --ctx 128 --json 2>/dev/null)
p8=$($BIN ppl "$tmp/q8" -f "$tmp/t.txt" --ctx 128 --json 2>/dev/null)
check "q8_0: 8.5 bpw in the layers, ppl within 2% of FP (8-bit codes), same tokens" 'python3 -c "
import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2])
assert abs(b[\"bpw_layers\"] - 8.5) < 0.06 and a[\"tokens\"] == b[\"tokens\"] and abs(b[\"ppl\"]/a[\"ppl\"] - 1) < 0.02, (a, b)" "$p0" "$p8"'
f=$($BIN fit "$G" --tensor model.layers.0.mlp.down_proj.weight -m q4_0 --json 2>/dev/null)
check "fit -m q4_0: 4 + 16/32 bpw, small error" 'python3 -c "
import json,sys; d=json.loads(sys.argv[1]); assert abs(d[\"bpw\"] - (4 + 16 * 6 / 172)) < 1e-9 and d[\"rel_err\"] < 0.2, d" "$f"'
finish
