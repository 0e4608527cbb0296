/* Private interface between the dispatcher and the per-ISA dense kernels (16-bit and f32
 * weights share one implementation per ISA, compiled once per weight kind). */
#ifndef BITLLM_KERNELS_HALF_KERNELS_H
#define BITLLM_KERNELS_HALF_KERNELS_H

#include "bitllm/kernels.h"

/* Rows of W per OpenMP work item, and the work (m·n·T) below which one thread does it all. */
#define BL_HALF_ROW_GROUP 4
#define BL_HALF_PAR_MIN_WORK (1 << 18)

/* Weight kinds of the shared implementation. */
enum { BL_WK_F16 = 0, BL_WK_BF16 = 1, BL_WK_F32 = 2 };

void bl_half_matmul_avx2(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                         int64_t T, float *Y);
void bl_half_to_f32_avx2(bl_dtype dt, const uint16_t *src, float *dst, size_t count);
void bl_half_matmul_avx512(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                           int64_t T, float *Y);
void bl_half_to_f32_avx512(bl_dtype dt, const uint16_t *src, float *dst, size_t count);
void bl_f32_matmul_avx2(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                        float *Y);
void bl_f32_matmul_avx512(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                          float *Y);

#endif
