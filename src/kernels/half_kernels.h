/* Private interface between the dispatcher and the per-ISA dense kernels (16-bit and f32 weights
 * share one implementation per ISA, compiled once per weight kind): the ISA files export
 * micro-kernels over ranges of row units; the driver in dispatch.c splits the units across
 * threads. */
#ifndef BITLLM_KERNELS_HALF_KERNELS_H
#define BITLLM_KERNELS_HALF_KERNELS_H

#include "bitllm/kernels.h"
#include "kernels/cpu_features.h"

/* Rows of W per unit (a multiple of every ISA's tile height), and the work (m·n·T) below which
 * one thread does it all. */
#define BL_HALF_ROW_GROUP 6
#define BL_HALF_PAR_MIN_WORK (1 << 18)
/* Columns per block of the summation order (a multiple of 32; half_rows.h). */
#define BL_HALF_KBLOCK 1024

/* Weight kinds of the shared implementation. */
enum { BL_WK_F16 = 0, BL_WK_BF16 = 1, BL_WK_F32 = 2 };

/* Y (T×m) = X·Wᵀ for W m×n of weight kind `kind` (W points to uint16_t or float elements). */
typedef struct {
    int kind;
    const void *W;
    int64_t m, n;
    const float *X;
    int64_t T;
    float *Y;
} bl_half_job;

/* Rows [BL_HALF_ROW_GROUP·u0, BL_HALF_ROW_GROUP·u1) ∩ [0, m) of Y, every token. */
void bl_half_avx2(const bl_half_job *j, int64_t u0, int64_t u1);
void bl_half_avx512(const bl_half_job *j, int64_t u0, int64_t u1);
void bl_half_to_f32_avx2(bl_dtype dt, const uint16_t *src, float *dst, size_t count);
void bl_half_to_f32_avx512(bl_dtype dt, const uint16_t *src, float *dst, size_t count);
void bl_f32_to_f16_n_avx512(const float *src, uint16_t *dst, size_t count);
void bl_f32_to_f16_n_avx2(const float *src, uint16_t *dst, size_t count);

#endif
