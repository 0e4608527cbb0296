/* CPU features the kernels and their driver ask about (kernels/cpu.c); each answer is computed
 * once by the compiler's CPU detection and is cheap to ask again. */
#ifndef BITLLM_KERNELS_CPU_FEATURES_H
#define BITLLM_KERNELS_CPU_FEATURES_H

#include <stdbool.h>

/* GFNI (the AVX-512 transposed sign kernel's bit transpose). */
bool bl_cpu_has_gfni(void);
/* AVX512-VBMI and AVX512-VNNI (the AVX-512 int8-table sign kernel; without them the AVX2 one
 * runs). */
bool bl_cpu_has_vbmi_vnni(void);
/* AVX512-VNNI (the AVX-512 int8 block kernels). */
bool bl_cpu_has_vnni(void);
/* Whether the CPU is Intel's: only there do the AVX-512 streaming loops also prefetch far ahead
 * into L2 (x86/half_avx512.c, x86/lut_avx512.h), which helps on Intel's Xeons and costs on AMD's
 * Zen 5. */
bool bl_cpu_is_intel(void);

#endif
