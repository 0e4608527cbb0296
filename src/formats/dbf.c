/* Double binary factorization (ALGORITHMS.md §4):
 *     W ≈ diag(a) · A · diag(μ) · B · diag(b),   y = a ⊙ ( A · ( μ ⊙ ( B · ( b ⊙ x ) ) ) )
 * A (m×k) and B (k×n) are packed sign matrices, a (m), μ (k), b (n) FP16 vectors; k = params.mid.
 * The forward never forms W: two sign products through the k-wide middle.
 *
 * Tensors "<prefix>.A" U8 {m, ceil(k/8)}, ".B" U8 {k, ceil(n/8)}, ".a" F16 {m}, ".mu" F16 {k},
 * ".b" F16 {n}. */
#include "formats/formats_internal.h"
#include "formats/quant_common.h"
#include "bitllm/quant.h"

#include <cblas.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bl_dbf d;
    bl_signmat A, B;
} dbf_impl;

static uint64_t dbf_stored_bits(int64_t m, int64_t n, const bl_format_params *p) {
    uint64_t k = (uint64_t)p->mid;
    return k * (uint64_t)(m + n) + 16u * ((uint64_t)(m + n) + k);
}

static size_t dbf_workspace(const bl_linear *L, int64_t T) {
    return (size_t)(T * (L->n + L->params.mid)); /* b ⊙ x, then the middle activations */
}

static void dbf_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                        const bl_exec *ex) {
    const dbf_impl *q = L->impl;
    const bl_dbf *d = &q->d;
    float *u = work, *z = work + T * d->n;
    bl_qc_scale(x, d->b, T, d->n, u, ex);
    bl_sign_matmul(&q->B, u, T, z, ex);
    bl_qc_scale(z, d->mu, T, d->k, z, ex);
    bl_sign_matmul(&q->A, z, T, y, ex);
    bl_qc_scale(y, d->a, T, d->m, y, ex);
}

/* Ŵ = (diag(a)·A·diag(μ)) · (B·diag(b)) as one sgemm of the two unpacked factors. */
static bl_status dbf_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_dbf *d = &((const dbf_impl *)L->impl)->d;
    int64_t m = d->m, n = d->n, k = d->k, rbA = bl_sign_row_bytes(k), rbB = bl_sign_row_bytes(n);
    float *U = bl_malloc_array((size_t)(m * k), sizeof *U);
    float *V = bl_malloc_array((size_t)(k * n), sizeof *V);
    if (!U || !V) {
        free(U);
        free(V);
        return bl_fail(err, BL_ERR_NOMEM, "dbf: out of memory for a %lld×%lld dense copy",
                       (long long)m, (long long)n);
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < k; c++)
            U[i * k + c] = (float)bl_sign_get(d->A, rbA, i, c) * (d->a[i] * d->mu[c]);
    for (int64_t c = 0; c < k; c++)
        for (int64_t j = 0; j < n; j++)
            V[c * n + j] = (float)bl_sign_get(d->B, rbB, c, j) * d->b[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, U,
                (int)k, V, (int)n, 0.0f, W, (int)n);
    free(U);
    free(V);
    return BL_OK;
}

static bl_status dbf_save(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err) {
    const bl_dbf *d = &((const dbf_impl *)L->impl)->d;
    bl_status s = bl_qc_save_u8(w, prefix, "A", d->A, d->m, bl_sign_row_bytes(d->k), err);
    if (!s) s = bl_qc_save_u8(w, prefix, "B", d->B, d->k, bl_sign_row_bytes(d->n), err);
    if (!s) s = bl_qc_save_f16(w, prefix, "a", d->a, d->m, 0, err);
    if (!s) s = bl_qc_save_f16(w, prefix, "mu", d->mu, d->k, 0, err);
    if (!s) s = bl_qc_save_f16(w, prefix, "b", d->b, d->n, 0, err);
    return s;
}

static void dbf_free_impl(bl_linear *L) {
    dbf_impl *q = L->impl;
    if (!q) return;
    bl_signmat_release(&q->A);
    bl_signmat_release(&q->B);
    bl_dbf_free(&q->d);
    free(q);
    L->impl = NULL;
}

/* Moves d (validated) into a new impl with both sign matrices prepared; on failure the caller
 * keeps d's buffers. */
static bl_status dbf_attach(bl_linear *L, const bl_dbf *d, bl_pool *pool, bl_err *err) {
    dbf_impl *q = calloc(1, sizeof *q);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "dbf: out of memory");
    q->d = *d;
    bl_status s = bl_qc_signmat(&q->A, d->m, d->k, d->A, pool, err);
    if (!s) s = bl_qc_signmat(&q->B, d->k, d->n, d->B, pool, err);
    if (s) {
        bl_signmat_release(&q->A);
        bl_signmat_release(&q->B);
        free(q);
        return s;
    }
    L->ops = &bl_format_dbf;
    L->m = d->m;
    L->n = d->n;
    memset(&L->params, 0, sizeof L->params);
    L->params.mid = d->k;
    L->impl = q;
    return BL_OK;
}

static bl_status dbf_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                          bl_err *err) {
    if (L->m < 1 || L->n < 1 || L->params.mid < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad dbf shape %lld×%lld with mid %lld", prefix,
                       (long long)L->m, (long long)L->n, (long long)L->params.mid);
    bl_dbf d = {.m = L->m, .n = L->n, .k = L->params.mid, .view = true};
    const uint8_t *A = NULL, *B = NULL;
    bl_status s = bl_qc_load_bits(ts, prefix, "A", d.m, d.k, &A, err);
    if (!s) s = bl_qc_load_bits(ts, prefix, "B", d.k, d.n, &B, err);
    d.A = (uint8_t *)A; /* views into the mapped file: never written or freed */
    d.B = (uint8_t *)B;
    if (!s) s = bl_qc_load_f16(ts, prefix, "a", d.m, 0, &d.a, err);
    if (!s) s = bl_qc_load_f16(ts, prefix, "mu", d.k, 0, &d.mu, err);
    if (!s) s = bl_qc_load_f16(ts, prefix, "b", d.n, 0, &d.b, err);
    if (!s) s = dbf_attach(L, &d, ts->pool, err);
    if (s) {
        bl_dbf_free(&d);
        return s;
    }
    const dbf_impl *q = L->impl;
    bl_qc_release_bits(ts, &q->A);
    bl_qc_release_bits(ts, &q->B);
    return BL_OK;
}

static const bl_format_param dbf_params[] = {
    {"mid", "k", BL_FPT_I64, offsetof(bl_format_params, mid), 0, 0, BL_MAX_MID, -1,
     "middle dimension k (0: the largest that fits the bpw target)"},
};
static unsigned dbf_opts(const bl_format_params *p) {
    (void)p;
    return BL_QP_BIT(BL_QP_BPW) | BL_QP_BIT(BL_QP_CALIB) | BL_QP_BIT(BL_QP_ACTIVATION_AWARE) |
           BL_QP_BIT(BL_QP_ITERS) | BL_QP_BIT(BL_QP_SEED);
}
static bl_status dbf_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                         const struct bl_fit_opts *fo, bl_linear *out, bl_err *err);
static bl_status dbf_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                            bl_linear *out, bl_err *err);
static const void *dbf_data(const bl_linear *L) { return &((const dbf_impl *)L->impl)->d; }

const bl_format_ops bl_format_dbf = {
    .name = "dbf",
    .desc = "DBF: y = a ⊙ (A · (mu ⊙ (B · (b ⊙ x)))), sign matrices A (m×k), B (k×n)",
    .params = dbf_params,
    .n_params = 1,
    .opts_used = dbf_opts,
    .mid_from_bpw = true,
    .fit = dbf_fit,
    .random = dbf_random,
    .data = dbf_data,
    .stored_bits = dbf_stored_bits,
    .forward = dbf_forward,
    .workspace_floats = dbf_workspace,
    .to_dense = dbf_to_dense,
    .save = dbf_save,
    .load = dbf_load,
    .free_impl = dbf_free_impl,
    .forward_tol = 1e-5,
};

bl_status bl_linear_from_dbf(bl_linear *L, bl_dbf *q, bl_err *err) {
    if (q->m < 1 || q->n < 1 || q->k < 1)
        return bl_fail(err, BL_ERR_ARG, "dbf: bad shape %lld×%lld with mid %lld",
                       (long long)q->m, (long long)q->n, (long long)q->k);
    bl_status s = bl_qc_need(q->A, "dbf A", err);
    if (!s) s = bl_qc_need(q->B, "dbf B", err);
    if (!s) s = bl_qc_need(q->a, "dbf a", err);
    if (!s) s = bl_qc_need(q->mu, "dbf mu", err);
    if (!s) s = bl_qc_need(q->b, "dbf b", err);
    if (!s) s = bl_qc_check_padding(q->A, q->m, q->k, "dbf A", err);
    if (!s) s = bl_qc_check_padding(q->B, q->k, q->n, "dbf B", err);
    if (!s) s = bl_qc_round_f16(q->a, q->m, "dbf a", err);
    if (!s) s = bl_qc_round_f16(q->mu, q->k, "dbf mu", err);
    if (!s) s = bl_qc_round_f16(q->b, q->n, "dbf b", err);
    if (!s) s = dbf_attach(L, q, NULL, err);
    if (!s) memset(q, 0, sizeof *q); /* the layer owns the buffers now */
    return s;
}

void bl_dbf_free(bl_dbf *q) {
    if (!q) return;
    if (!q->view) {
        free(q->A);
        free(q->B);
    }
    free(q->a);
    free(q->mu);
    free(q->b);
    memset(q, 0, sizeof *q);
}

static bl_status dbf_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                         const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    bl_dbf q;
    bl_status s = bl_fit_dbf(W, m, n, p->mid, fo, &q, err);
    if (!s && (s = bl_linear_from_dbf(out, &q, err))) bl_dbf_free(&q);
    return s;
}

static bl_status dbf_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                            bl_linear *out, bl_err *err) {
    bl_dbf q;
    bl_status s = bl_random_dbf(m, n, p->mid, seed, &q, err);
    if (!s && (s = bl_linear_from_dbf(out, &q, err))) bl_dbf_free(&q);
    return s;
}
