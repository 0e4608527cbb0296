/* Double binary factorization (ALGORITHMS.md §4):
 *     W ≈ diag(a) · A · diag(μ) · B · diag(b),   y = a ⊙ ( A · ( μ ⊙ ( B · ( b ⊙ x ) ) ) )
 * A (m×k) and B (k×n) are packed sign matrices, a (m), μ (k), b (n) FP16 vectors; k = params.mid.
 * The forward never forms W: two sign products through the k-wide middle.
 *
 * Its tensors: the table below. */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"
#include "bitllm/formats/dbf.h"

#include <cblas.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

extern const bl_format_ops bl_format_dbf;

static size_t dbf_workspace(const bl_linear *L, int64_t T) {
    return (size_t)(T * (L->n + L->params.mid)); /* b ⊙ x, then the middle activations */
}

static void dbf_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                        const bl_exec *ex) {
    const bl_dbf *d = bl_layer_d(L);
    const bl_signmat *S = bl_layer_signs(L); /* A, B */
    float *u = work, *z = work + T * d->n;
    bl_qc_sign_scaled(&S[1], x, d->b, T, d->mu, z, u, ex);
    bl_qc_sign_scaled(&S[0], z, NULL, T, d->a, y, NULL, ex);
}

/* Ŵ = (diag(a)·A·diag(μ)) · (B·diag(b)) as one sgemm of the two unpacked factors. */
static bl_status dbf_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_dbf *d = bl_layer_d(L);
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

/* ---- the tensor table: "<prefix>.A" U8 {m, ceil(k/8)}, ".B" U8 {k, ceil(n/8)}, ".a" F16 {m},
 * ".mu" F16 {k}, ".b" F16 {n} ---- */

static const bl_format_tensor dbf_tensors[] = {
    BL_TENSOR("A", BL_FT_SIGNS, bl_dim_m, bl_dim_mid, offsetof(bl_dbf, A)),
    BL_TENSOR("B", BL_FT_SIGNS, bl_dim_mid, bl_dim_n, offsetof(bl_dbf, B)),
    BL_TENSOR("a", BL_FT_F16, bl_dim_m, bl_dim_vector, offsetof(bl_dbf, a)),
    BL_TENSOR("mu", BL_FT_F16, bl_dim_mid, bl_dim_vector, offsetof(bl_dbf, mu)),
    BL_TENSOR("b", BL_FT_F16, bl_dim_n, bl_dim_vector, offsetof(bl_dbf, b)),
};

static void dbf_set_shape(void *data, int64_t m, int64_t n, const bl_format_params *p) {
    bl_dbf *d = data;
    d->m = m, d->n = n, d->k = p->mid;
}

static void dbf_get_shape(const void *data, int64_t *m, int64_t *n, bl_format_params *p) {
    const bl_dbf *d = data;
    *m = d->m, *n = d->n;
    memset(p, 0, sizeof *p);
    p->mid = d->k;
}

static bl_status dbf_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                           bl_err *err) {
    if (m < 1 || n < 1 || p->mid < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad dbf shape %lld×%lld with mid %lld", who,
                       (long long)m, (long long)n, (long long)p->mid);
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

const bl_format_ops bl_format_dbf = {
    .name = "dbf",
    .desc = "DBF: y = a ⊙ (A · (mu ⊙ (B · (b ⊙ x)))), sign matrices A (m×k), B (k×n)",
    .params = dbf_params,
    .n_params = 1,
    .opts_used = dbf_opts,
    .mid_from_bpw = true,
    .trainable = true,
    .compare_default = "dbf",
    .fit = dbf_fit,
    .random = dbf_random,
    .tensors = dbf_tensors,
    .n_tensors = 5,
    .data_size = sizeof(bl_dbf),
    .view_offset = offsetof(bl_dbf, view),
    .set_shape = dbf_set_shape,
    .get_shape = dbf_get_shape,
    .check = dbf_check,
    .forward = dbf_forward,
    .workspace_floats = dbf_workspace,
    .to_dense = dbf_to_dense,
    BL_FORMAT_TABLE_OPS,
    .forward_tol = 1e-5,
};

bl_status bl_linear_from_dbf(bl_linear *L, bl_dbf *q, bl_err *err) {
    return bl_linear_from_data(L, &bl_format_dbf, q, err);
}

void bl_dbf_free(bl_dbf *q) { bl_format_data_free(&bl_format_dbf, q); }

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
