/* OneBit linear layer (ALGORITHMS.md §1):  y = LN( h ⊙ ( S · (g ⊙ x) ) )
 *
 * S (m×n) is a packed sign matrix, g (n) and h (m) are FP16 vectors. LN is optional (post_ln):
 * a LayerNorm over the m outputs of each token with no learned scale or bias and eps = 1e-5,
 * exactly torch.nn.LayerNorm(m, elementwise_affine=False) as in the OneBit reference BitLinear
 * (biased variance, default eps). It belongs to the architecture of a distilled OneBit model; a
 * plain SVID layer has it off. to_dense() returns the linear part diag(h)·S·diag(g) only.
 *
 * Tensors "<prefix>.sign" U8 {m, ceil(n/8)}, "<prefix>.g" F16 {n}, "<prefix>.h" F16 {m}. */
#include "formats/formats_internal.h"
#include "formats/quant_common.h"
#include "bitllm/quant.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define ONEBIT_LN_EPS 1e-5

typedef struct {
    bl_onebit d;
    bl_signmat S;
} onebit_impl;

static uint64_t onebit_stored_bits(int64_t m, int64_t n, const bl_format_params *p) {
    (void)p;
    return (uint64_t)m * (uint64_t)n + 16u * (uint64_t)(m + n);
}

static size_t onebit_workspace(const bl_linear *L, int64_t T) {
    return (size_t)(T * L->n); /* g ⊙ x */
}

/* Per-token LayerNorm without affine parameters, statistics in double. Each token is computed
 * whole by one thread, so the result does not depend on the thread count. */
typedef struct {
    float *y;
    int64_t m;
} ln_ctx;

static void post_layer_norm_rows(void *ctx, int64_t t0, int64_t t1) {
    const ln_ctx *c = ctx;
    const int64_t m = c->m;
    for (int64_t t = t0; t < t1; t++) {
        float *yr = c->y + t * m;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < m; i++) mean += yr[i];
        mean /= (double)m;
        for (int64_t i = 0; i < m; i++) var += ((double)yr[i] - mean) * ((double)yr[i] - mean);
        var /= (double)m;
        double inv = 1.0 / sqrt(var + ONEBIT_LN_EPS);
        for (int64_t i = 0; i < m; i++) yr[i] = (float)(((double)yr[i] - mean) * inv);
    }
}

static void onebit_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                           const bl_exec *ex) {
    const onebit_impl *q = L->impl;
    bl_qc_scale(x, q->d.g, T, L->n, work, ex);
    bl_sign_matmul(&q->S, work, T, y, ex);
    bl_qc_scale(y, q->d.h, T, L->m, y, ex);
    if (q->d.post_ln) {
        ln_ctx c = {y, L->m};
        bl_qc_for_tokens(ex, T, L->m, post_layer_norm_rows, &c);
    }
}

static bl_status onebit_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_onebit *d = &((const onebit_impl *)L->impl)->d;
    int64_t rb = bl_sign_row_bytes(d->n);
    for (int64_t i = 0; i < d->m; i++)
        for (int64_t j = 0; j < d->n; j++)
            W[i * d->n + j] = (float)bl_sign_get(d->sign, rb, i, j) * (d->h[i] * d->g[j]);
    return BL_OK;
}

static bl_status onebit_save(const bl_linear *L, const char *prefix, bl_st_writer *w,
                             bl_err *err) {
    const bl_onebit *d = &((const onebit_impl *)L->impl)->d;
    bl_status s = bl_qc_save_u8(w, prefix, "sign", d->sign, d->m, bl_sign_row_bytes(d->n), err);
    if (!s) s = bl_qc_save_f16(w, prefix, "g", d->g, d->n, 0, err);
    if (!s) s = bl_qc_save_f16(w, prefix, "h", d->h, d->m, 0, err);
    return s;
}

static void onebit_free_impl(bl_linear *L) {
    onebit_impl *q = L->impl;
    if (!q) return;
    bl_signmat_release(&q->S);
    bl_onebit_free(&q->d);
    free(q);
    L->impl = NULL;
}

/* Takes d (already validated) into a new impl and prepares the kernel's sign matrix. On failure
 * nothing is taken: the caller still owns d's buffers. */
static bl_status onebit_attach(bl_linear *L, const bl_onebit *d, bl_pool *pool, bl_err *err) {
    onebit_impl *q = calloc(1, sizeof *q);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "onebit: out of memory");
    q->d = *d;
    bl_status s = bl_qc_signmat(&q->S, d->m, d->n, d->sign, pool, err);
    if (s) {
        bl_signmat_release(&q->S);
        free(q);
        return s;
    }
    L->ops = &bl_format_onebit;
    L->m = d->m;
    L->n = d->n;
    memset(&L->params, 0, sizeof L->params);
    L->params.post_ln = d->post_ln;
    L->impl = q;
    return BL_OK;
}

static bl_status onebit_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                             bl_err *err) {
    if (L->m < 1 || L->n < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad onebit shape %lld×%lld", prefix,
                       (long long)L->m, (long long)L->n);
    bl_onebit d = {.m = L->m, .n = L->n, .post_ln = L->params.post_ln, .view = true};
    const uint8_t *sign = NULL;
    bl_status s = bl_qc_load_bits(ts, prefix, "sign", d.m, d.n, &sign, err);
    d.sign = (uint8_t *)sign; /* view into the mapped file: never written or freed */
    if (!s) s = bl_qc_load_f16(ts, prefix, "g", d.n, 0, &d.g, err);
    if (!s) s = bl_qc_load_f16(ts, prefix, "h", d.m, 0, &d.h, err);
    if (!s) s = onebit_attach(L, &d, ts->pool, err);
    if (s) {
        bl_onebit_free(&d);
        return s;
    }
    bl_qc_release_bits(ts, &((const onebit_impl *)L->impl)->S);
    return BL_OK;
}

static const bl_format_param onebit_params[] = {
    {"post_ln", NULL, BL_FPT_BOOL, offsetof(bl_format_params, post_ln), 0, 0, 1, -1,
     "parameter-free LayerNorm over the outputs (distilled checkpoints)"},
};
static unsigned onebit_opts(const bl_format_params *p) {
    (void)p;
    return BL_QP_BIT(BL_QP_SVID) | BL_QP_BIT(BL_QP_CALIB) | BL_QP_BIT(BL_QP_ACTIVATION_AWARE);
}
static bl_status onebit_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                            const struct bl_fit_opts *fo, bl_linear *out, bl_err *err);
static bl_status onebit_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                               bl_linear *out, bl_err *err);
static const void *onebit_data(const bl_linear *L) { return &((const onebit_impl *)L->impl)->d; }

const bl_format_ops bl_format_onebit = {
    .name = "onebit",
    .desc = "OneBit: y = h ⊙ (S · (g ⊙ x)), signs S and FP16 vectors g, h (SVID init)",
    .params = onebit_params,
    .n_params = 1,
    .opts_used = onebit_opts,
    .fit = onebit_fit,
    .random = onebit_random,
    .data = onebit_data,
    .stored_bits = onebit_stored_bits,
    .forward = onebit_forward,
    .workspace_floats = onebit_workspace,
    .to_dense = onebit_to_dense,
    .save = onebit_save,
    .load = onebit_load,
    .free_impl = onebit_free_impl,
    .forward_tol = 1e-5,
};

bl_status bl_linear_from_onebit(bl_linear *L, bl_onebit *q, bl_err *err) {
    if (q->m < 1 || q->n < 1)
        return bl_fail(err, BL_ERR_ARG, "onebit: bad shape %lld×%lld", (long long)q->m,
                       (long long)q->n);
    bl_status s = bl_qc_need(q->sign, "onebit sign", err);
    if (!s) s = bl_qc_need(q->g, "onebit g", err);
    if (!s) s = bl_qc_need(q->h, "onebit h", err);
    if (!s) s = bl_qc_check_padding(q->sign, q->m, q->n, "onebit sign", err);
    if (!s) s = bl_qc_round_f16(q->g, q->n, "onebit g", err);
    if (!s) s = bl_qc_round_f16(q->h, q->m, "onebit h", err);
    if (!s) s = onebit_attach(L, q, NULL, err);
    if (!s) memset(q, 0, sizeof *q); /* the layer owns the buffers now */
    return s;
}

void bl_onebit_free(bl_onebit *q) {
    if (!q) return;
    if (!q->view) free(q->sign);
    free(q->g);
    free(q->h);
    memset(q, 0, sizeof *q);
}

static bl_status onebit_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                            const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    if (p->post_ln)
        return bl_fail(err, BL_ERR_ARG, "onebit: post_ln belongs to distilled checkpoints; an "
                       "SVID fit has none");
    bl_onebit q;
    bl_status s = bl_fit_onebit(W, m, n, fo, &q, err);
    if (!s && (s = bl_linear_from_onebit(out, &q, err))) bl_onebit_free(&q);
    return s;
}

static bl_status onebit_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                               bl_linear *out, bl_err *err) {
    (void)p;
    bl_onebit q;
    bl_status s = bl_random_onebit(m, n, seed, &q, err);
    if (!s && (s = bl_linear_from_onebit(out, &q, err))) bl_onebit_free(&q);
    return s;
}
