/* Private interface between the dispatcher and the AVX-512 and AVX2 element-wise and attention
 * kernels (x86/act_avx512.c, x86/act_avx2.c); the public entry points and their specification are
 * in bitllm/kernels.h. */
#ifndef BITLLM_KERNELS_ACT_KERNELS_H
#define BITLLM_KERNELS_ACT_KERNELS_H

#include "bitllm/kernels.h"

void bl_silu_mul_avx512(float *h, const float *u, int64_t n);
void bl_softmax_avx512(float *x, int64_t n);
void bl_attend_avx512(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                      int64_t ld, int hd, int n, float scale, float *P, float *out,
                      int64_t out_stride);
void bl_attend_f16_avx512(const float *q, int64_t q_stride, int G, const uint16_t *K,
                          const uint16_t *V, int64_t ld, int hd, int n, float scale, float *P,
                          float *out, int64_t out_stride);

void bl_silu_mul_avx2(float *h, const float *u, int64_t n);
void bl_softmax_avx2(float *x, int64_t n);
void bl_attend_avx2(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                    int64_t ld, int hd, int n, float scale, float *P, float *out,
                    int64_t out_stride);
void bl_attend_f16_avx2(const float *q, int64_t q_stride, int G, const uint16_t *K,
                        const uint16_t *V, int64_t ld, int hd, int n, float scale, float *P,
                        float *out, int64_t out_stride);

#endif
