/* OneBit linear layer (ALGORITHMS.md §1):  y = LN( h ⊙ ( S · (g ⊙ x) ) )
 *
 * S (m×n) is a packed sign matrix, g (n) and h (m) are FP16 vectors. LN is optional (post_ln):
 * a LayerNorm over the m outputs of each token with no learned scale or bias and eps = 1e-5,
 * exactly torch.nn.LayerNorm(m, elementwise_affine=False) as in the OneBit reference BitLinear
 * (biased variance, default eps). It belongs to the architecture of a distilled OneBit model; a
 * plain SVID layer has it off. to_dense() returns the linear part diag(h)·S·diag(g) only.
 *
 * Its tensors: the table below. */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"
#include "bitllm/formats/onebit.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define ONEBIT_LN_EPS 1e-5

extern const bl_format_ops bl_format_onebit;

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
    const bl_onebit *d = bl_layer_d(L);
    bl_qc_sign_scaled(&bl_layer_signs(L)[0], x, d->g, T, d->h, y, work, ex);
    if (d->post_ln) {
        ln_ctx c = {y, L->m};
        bl_qc_for_tokens(ex, T, L->m, post_layer_norm_rows, &c);
    }
}

static bl_status onebit_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_onebit *d = bl_layer_d(L);
    int64_t rb = bl_sign_row_bytes(d->n);
    for (int64_t i = 0; i < d->m; i++)
        for (int64_t j = 0; j < d->n; j++)
            W[i * d->n + j] = (float)bl_sign_get(d->sign, rb, i, j) * (d->h[i] * d->g[j]);
    return BL_OK;
}

/* ---- the tensor table: "<prefix>.sign" U8 {m, ceil(n/8)}, ".g" F16 {n}, ".h" F16 {m} ---- */

static const bl_format_tensor onebit_tensors[] = {
    BL_TENSOR("sign", BL_FT_SIGNS, bl_dim_m, bl_dim_n, offsetof(bl_onebit, sign)),
    BL_TENSOR("g", BL_FT_F16, bl_dim_n, bl_dim_vector, offsetof(bl_onebit, g)),
    BL_TENSOR("h", BL_FT_F16, bl_dim_m, bl_dim_vector, offsetof(bl_onebit, h)),
};

static void onebit_set_shape(void *data, int64_t m, int64_t n, const bl_format_params *p) {
    bl_onebit *d = data;
    d->m = m, d->n = n, d->post_ln = p->post_ln;
}

static void onebit_get_shape(const void *data, int64_t *m, int64_t *n, bl_format_params *p) {
    const bl_onebit *d = data;
    *m = d->m, *n = d->n;
    memset(p, 0, sizeof *p);
    p->post_ln = d->post_ln;
}

static bl_status onebit_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                              bl_err *err) {
    (void)p;
    if (m < 1 || n < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad onebit shape %lld×%lld", who, (long long)m,
                       (long long)n);
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

const bl_format_ops bl_format_onebit = {
    .name = "onebit",
    .desc = "OneBit: y = h ⊙ (S · (g ⊙ x)), signs S and FP16 vectors g, h (SVID init)",
    .params = onebit_params,
    .n_params = 1,
    .opts_used = onebit_opts,
    .bpw_reference = true,
    .trainable = true,
    .compare_default = "onebit",
    .fit = onebit_fit,
    .random = onebit_random,
    .tensors = onebit_tensors,
    .n_tensors = 3,
    .data_size = sizeof(bl_onebit),
    .view_offset = offsetof(bl_onebit, view),
    .set_shape = onebit_set_shape,
    .get_shape = onebit_get_shape,
    .check = onebit_check,
    .forward = onebit_forward,
    .workspace_floats = onebit_workspace,
    .to_dense = onebit_to_dense,
    BL_FORMAT_TABLE_OPS,
    .forward_tol = 1e-5,
};

bl_status bl_linear_from_onebit(bl_linear *L, bl_onebit *q, bl_err *err) {
    return bl_linear_from_data(L, &bl_format_onebit, q, err);
}

void bl_onebit_free(bl_onebit *q) { bl_format_data_free(&bl_format_onebit, q); }

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
