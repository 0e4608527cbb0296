#!/usr/bin/env bash
# The bad-input suite (tests/badinput.py): truncated, bit-flipped, oversized and wrong-type files
# for every loader, through the bitllm command; each must fail cleanly with a message naming the
# file and the problem, and without a sanitizer report.
exec python3 "$(dirname "$0")/badinput.py"
