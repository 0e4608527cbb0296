#!/usr/bin/env bash
# The held-out story-like text of the stories260K protocols: 40 stories sampled from the FP model
# (temperature 1, top-p 0.95, seeds 1..40, 250 tokens each), written once to FILE.
#   scripts/stories_text.sh BITLLM MODEL FILE
set -euo pipefail
BIN=$1 M=$2 F=$3
[ -s "$F" ] && exit 0
for s in $(seq 1 40); do
  "$BIN" generate "$M" -n 250 --temp 1.0 --top-p 0.95 --seed "$s" --json 2>/dev/null |
    python3 -c "import json,sys; print(json.load(sys.stdin)['text'].strip())"
done > "$F.part" && mv "$F.part" "$F"
