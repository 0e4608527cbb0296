/* The small steps the forward passes of the quantized formats share: diagonal scalings, the
 * token split, and the dequantize-a-chunk forward of the code formats. */
#include "formats/forward_util.h"

#include "core/simd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bl_qc_for_tokens(const bl_exec *ex, int64_t T, int64_t per_token, bl_range_fn fn, void *ctx) {
    bl_pool_for(ex ? ex->pool : NULL, T, T > 1 && T * per_token >= 32768, fn, ctx);
}

typedef struct {
    const float *x, *s;
    int64_t n;
    float *out;
} scale_ctx;

/* o[j] = x[j]·s[j], and the same in place: one rounding per element, so vector and scalar code
 * give the same bits. Two forms so that neither needs a run-time overlap check to vectorize
 * (out may be x, never overlapping it shifted). */
static void mul_to(float *restrict o, const float *restrict x, const float *restrict s,
                   int64_t n) {
    BL_SIMD
    for (int64_t j = 0; j < n; j++) o[j] = x[j] * s[j];
}

static void mul_in_place(float *restrict o, const float *restrict s, int64_t n) {
    BL_SIMD
    for (int64_t j = 0; j < n; j++) o[j] *= s[j];
}

static void scale_rows(void *ctx, int64_t t0, int64_t t1) {
    const scale_ctx *c = ctx;
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = c->x + t * c->n;
        float *o = c->out + t * c->n;
        if (o == xr) mul_in_place(o, c->s, c->n);
        else mul_to(o, xr, c->s, c->n);
    }
}

void bl_qc_scale(const float *x, const float *s, int64_t T, int64_t n, float *out,
                 const bl_exec *ex) {
    scale_ctx c = {x, s, n, out};
    bl_qc_for_tokens(ex, T, n, scale_rows, &c);
}

void bl_qc_sign_scaled(const bl_signmat *S, const float *x, const float *g, int64_t T,
                       const float *h, float *y, float *u, const bl_exec *ex) {
    if (bl_sign_matmul_scaled(S, x, g, T, h, y, ex)) return;
    if (g) {
        bl_qc_scale(x, g, T, S->n, u, ex);
        x = u;
    }
    bl_sign_matmul(S, x, T, y, ex);
    if (h) bl_qc_scale(y, h, T, S->m, y, ex);
}

float bl_qc_dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
    for (; j < n; j++) acc[j & 7] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

typedef struct {
    const void *data;
    bl_qc_dequant_fn dequant;
    int64_t m, n, T;
    const float *x;
    float *y;
} dequant_ctx;

/* Output rows [i0, i1) for every token; each row is dequantized once per chunk and used for all
 * T, so a row's result does not depend on which thread computes it. */
static void dequant_rows(void *ctx, int64_t i0, int64_t i1) {
    const dequant_ctx *c = ctx;
    const int64_t m = c->m, n = c->n, T = c->T;
    float w[BL_QC_CHUNK];
    for (int64_t i = i0; i < i1; i++) {
        for (int64_t t = 0; t < T; t++) c->y[t * m + i] = 0;
        for (int64_t j0 = 0; j0 < n; j0 += BL_QC_CHUNK) {
            int64_t len = n - j0 < BL_QC_CHUNK ? n - j0 : BL_QC_CHUNK;
            c->dequant(c->data, i, j0, len, w);
            for (int64_t t = 0; t < T; t++) c->y[t * m + i] += bl_qc_dot(w, c->x + t * n + j0, len);
        }
    }
}

void bl_qc_dequant_forward(const void *data, bl_qc_dequant_fn dequant, int64_t m, int64_t n,
                           const float *x, int64_t T, float *y, const bl_exec *ex) {
    /* threads split output rows; small products stay serial (a dispatch costs more) */
    dequant_ctx c = {data, dequant, m, n, T, x, y};
    bl_pool_for(ex ? ex->pool : NULL, m, m * n * T >= (1 << 18), dequant_rows, &c);
}
