#!/usr/bin/env bash
# libbitllm.so exports the public API only: every defined dynamic symbol is a bl_ name declared
# in include/bitllm/ or include/bitllm/formats/, and the internals (nn_*, tr_*, the fitters'
# bl_qf_*, the model loader's helpers) stay hidden. Compiler-generated symbols are ignored:
# sanitizer instrumentation (__asan_*, __odr_asan*, ...) and GCC's locks of named OpenMP critical
# sections (.gomp_critical_user_NAME, which must be global to be shared between objects).
set -u
LIB=${BITLLM_SHARED_LIB:?}
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
bad() { fails=$((fails + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
command -v nm >/dev/null || { echo "SKIP: nm not found"; exit 77; }
syms=$(nm -D --defined-only "$LIB" | awk 'NF == 3 {print $3}' | grep -v '^__\(asan\|odr_asan\|ubsan\|sanitizer\|lsan\)' | grep -v '^\.gomp_critical_user_' | grep -v '^_\(init\|fini\|edata\|end\)$\|^__bss_start$')
n=$(printf '%s\n' "$syms" | grep -c .)
check "exports the public API ($n symbols)" '[ "$n" -gt 100 ]'
check "only bl_ names" '[ -z "$(printf "%s\n" "$syms" | grep -v "^bl_")" ] || { printf "%s\n" "$syms" | grep -v "^bl_" | head; false; }'
check "no internal bl_qf_ / loader helpers" '[ -z "$(printf "%s\n" "$syms" | grep "^bl_qf_\|^bl_model_load_weights$\|^bl_hf_config_fields$\|^bl_strfmt$")" ]'
check "no nn_ / tr_ internals" '! nm -D --defined-only "$LIB" | grep -q " \(nn_\|tr_\)"'
check "public entry points present" 'for s in bl_model_load bl_forward bl_quantize_model bl_arch_tensors bl_quant_provenance; do printf "%s\n" "$syms" | grep -qx "$s" || exit 1; done'
# every exported name is declared in a public header
hdr=$(cat "$(dirname "$0")/../include/bitllm/"*.h "$(dirname "$0")/../include/bitllm/formats/"*.h)
undeclared=$(for s in $syms; do printf '%s\n' "$hdr" | grep -q "\b$s\b" || echo "$s"; done)
check "every export is declared in include/bitllm/" '[ -z "$undeclared" ] || { echo "$undeclared" | head; false; }'
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
