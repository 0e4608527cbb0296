/* Private interface between the dispatcher and the AVX-512 and AVX2 element-wise and attention
 * kernels (x86/act_avx512.c, x86/act_avx2.c); the public entry points and their specification are
 * in bitllm/kernels.h. */
#ifndef BITLLM_KERNELS_ACT_KERNELS_H
#define BITLLM_KERNELS_ACT_KERNELS_H

#include "bitllm/kernels.h"

/* A K or V operand of the attention kernels: rows of hd values, stride ld elements, of the cache
 * type `type`; BL_KV_Q8 rows have their scales in s, rows of lds floats. */
typedef struct {
    const void *v;
    const float *s;
    int64_t ld, lds;
    bl_kv_type type;
} bl_kv_view;

void bl_silu_mul_avx512(float *h, const float *u, int64_t n);
void bl_softmax_avx512(float *x, int64_t n);
void bl_attend_avx512(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                      int64_t ld, int hd, int n, float scale, float *P, float *out,
                      int64_t out_stride);
void bl_attend_f16_avx512(const float *q, int64_t q_stride, int G, const uint16_t *K,
                          const uint16_t *V, int64_t ld, int hd, int n, float scale, float *P,
                          float *out, int64_t out_stride);
void bl_kv_q8_quantize_avx512(const float *x, int n, int8_t *codes, float *scales);
void bl_attend_q8_avx512(const float *q, int64_t q_stride, int G, bl_kv_view K, bl_kv_view V,
                         int hd, int n, float scale, float *P, float *out, int64_t out_stride);

void bl_silu_mul_avx2(float *h, const float *u, int64_t n);
void bl_softmax_avx2(float *x, int64_t n);
void bl_attend_avx2(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                    int64_t ld, int hd, int n, float scale, float *P, float *out,
                    int64_t out_stride);
void bl_attend_f16_avx2(const float *q, int64_t q_stride, int G, const uint16_t *K,
                        const uint16_t *V, int64_t ld, int hd, int n, float scale, float *P,
                        float *out, int64_t out_stride);
void bl_kv_q8_quantize_avx2(const float *x, int n, int8_t *codes, float *scales);
void bl_attend_q8_avx2(const float *q, int64_t q_stride, int G, bl_kv_view K, bl_kv_view V,
                       int hd, int n, float scale, float *P, float *out, int64_t out_stride);

#endif
