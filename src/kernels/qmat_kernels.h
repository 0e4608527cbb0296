/* Private interface between the dispatcher and the per-ISA group-quantized (qsym) kernels: the
 * ISA file exports a micro-kernel over ranges of row units; the driver in dispatch.c splits the
 * units across threads. */
#ifndef BITLLM_KERNELS_QMAT_KERNELS_H
#define BITLLM_KERNELS_QMAT_KERNELS_H

#include "bitllm/kernels.h"

#define BL_QMAT_ROWS 4 /* rows of Ŵ per unit */

typedef struct {
    const bl_qmat *Q;
    const float *X;
    int64_t T;
    float *Y;
} bl_qmat_job;

/* Rows [BL_QMAT_ROWS·u0, BL_QMAT_ROWS·u1) ∩ [0, m) of Y, every token (bits 4 or 8, group a
 * multiple of 16: bl_qmat_simd_ok). */
void bl_qmat_avx512(const bl_qmat_job *j, int64_t u0, int64_t u1);

#endif
