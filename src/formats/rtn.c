/* Round-to-nearest baselines (ALGORITHMS.md §6), bits = params.bits:
 *   bits 1:    Ŵ[i][j] = scale[i] · S[i][j]                 (sign × per-row scale; S packed signs)
 *   bits 2..8: Ŵ[i][j] = scale[i][g] · (q[i][j] − zero[i][g]), g = j / group, q ∈ [0, 2^bits)
 * zero is in code units (asymmetric quantization), scale and zero are FP16.
 *
 * Its tensors: the table below. */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"
#include "bitllm/formats/rtn.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

extern const bl_format_ops bl_format_rtn;

static int64_t rtn_groups(int64_t n, int group) { return group > 0 ? (n + group - 1) / group : 1; }

static size_t rtn_workspace(const bl_linear *L, int64_t T) { return 0; }

/* w[0..len) = Ŵ[i][j0 .. j0+len) for bits ≥ 2: the one dequantization formula, shared by the
 * forward and to_dense so both see the same float weights. */
static void rtn_dequant(const void *data, int64_t i, int64_t j0, int64_t len, float *w) {
    const bl_rtn *d = data;
    const uint8_t *row = d->q + i * ((d->n * d->bits + 7) / 8);
    int64_t G = rtn_groups(d->n, d->group);
    for (int64_t j = j0; j < j0 + len;) {
        int64_t g = j / d->group, end = (g + 1) * d->group;
        if (end > j0 + len) end = j0 + len;
        float s = d->scale[i * G + g], z = d->zero[i * G + g];
        for (; j < end; j++) w[j - j0] = s * ((float)bl_qc_code(row, j, d->bits) - z);
    }
}

static void rtn_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                        const bl_exec *ex) {
    const bl_rtn *d = bl_layer_d(L);
    if (d->bits == 1) {
        bl_sign_matmul(&bl_layer_signs(L)[0], x, T, y, ex);
        bl_qc_scale(y, d->scale, T, d->m, y, ex);
        return;
    }
    bl_qc_dequant_forward(d, rtn_dequant, d->m, d->n, x, T, y, ex);
}

static bl_status rtn_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_rtn *d = bl_layer_d(L);
    int64_t rb = bl_sign_row_bytes(d->n);
    for (int64_t i = 0; i < d->m; i++) {
        if (d->bits >= 2) {
            rtn_dequant(d, i, 0, d->n, W + i * d->n);
            continue;
        }
        for (int64_t j = 0; j < d->n; j++)
            W[i * d->n + j] = (float)bl_sign_get(d->q, rb, i, j) * d->scale[i];
    }
    return BL_OK;
}

/* ---- the tensor table: "<prefix>.q" U8 {m, ceil(n·bits/8)} (bits 1: signs, else codes),
 * ".scale" F16 {m} for bits 1 and F16 {m, ceil(n/group)} otherwise, ".zero" F16
 * {m, ceil(n/group)} for bits ≥ 2 only. A group of 0 (unset) counts as one group per row. ---- */

static bool one_bit(const bl_format_params *p) { return p->bits <= 1; }
static bool multi_bit(const bl_format_params *p) { return p->bits >= 2; }
static int64_t dim_groups(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m;
    return p->bits >= 2 ? rtn_groups(n, p->group) : 0;
}
static int64_t dim_zero_groups(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m;
    return rtn_groups(n, p->group);
}

static const bl_format_tensor rtn_tensors[] = {
    {.part = "q", .kind = BL_FT_SIGNS, .rows = bl_dim_m, .cols = bl_dim_n,
     .offset = offsetof(bl_rtn, q), .present = one_bit},
    {.part = "q", .kind = BL_FT_CODES, .rows = bl_dim_m, .cols = bl_dim_n,
     .offset = offsetof(bl_rtn, q), .present = multi_bit},
    BL_TENSOR("scale", BL_FT_F16, bl_dim_m, dim_groups, offsetof(bl_rtn, scale)),
    {.part = "zero", .kind = BL_FT_F16, .rows = bl_dim_m, .cols = dim_zero_groups,
     .offset = offsetof(bl_rtn, zero), .present = multi_bit},
};

static void rtn_set_shape(void *data, int64_t m, int64_t n, const bl_format_params *p) {
    bl_rtn *d = data;
    d->m = m, d->n = n, d->bits = p->bits, d->group = p->group;
}

static void rtn_get_shape(const void *data, int64_t *m, int64_t *n, bl_format_params *p) {
    const bl_rtn *d = data;
    *m = d->m, *n = d->n;
    memset(p, 0, sizeof *p);
    p->bits = d->bits;
    p->group = d->bits >= 2 ? d->group : 0;
}

static bl_status rtn_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                           bl_err *err) {
    if (m < 1 || n < 1 || p->bits < 1 || p->bits > 8 || (p->bits >= 2 && p->group < 1))
        return bl_fail(err, BL_ERR_ARG, "%s: bad rtn shape %lld×%lld (bits %d, group %d)", who,
                       (long long)m, (long long)n, p->bits, p->group);
    return BL_OK;
}

static const bl_format_param rtn_params[] = {
    {"bits", NULL, BL_FPT_INT, offsetof(bl_format_params, bits), 2, 1, 8, -1,
     "bits per weight code"},
    {"group", NULL, BL_FPT_INT, offsetof(bl_format_params, group), 128, 1, 1 << 20, BL_QP_GROUP,
     "input columns per scale/zero group (bits >= 2)"},
};
static const bl_format_alias rtn_aliases[] = {
    {"rtn1", "bits=1"}, {"rtn2", "bits=2"}, {"rtn3", "bits=3"}, {"rtn4", "bits=4"},
};
static unsigned rtn_opts(const bl_format_params *p) {
    return p->bits >= 2 ? BL_QP_BIT(BL_QP_GROUP) : 0;
}
static bl_status rtn_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                         const struct bl_fit_opts *fo, bl_linear *out, bl_err *err);
static bl_status rtn_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                            bl_linear *out, bl_err *err);

const bl_format_ops bl_format_rtn = {
    .name = "rtn",
    .desc = "round-to-nearest baselines: bits 1 = sign × row scale; 2..8 = asymmetric per group",
    .params = rtn_params,
    .n_params = 2,
    .aliases = rtn_aliases,
    .n_aliases = 4,
    .opts_used = rtn_opts,
    .compare_default = "rtn1",
    .fit = rtn_fit,
    .random = rtn_random,
    .tensors = rtn_tensors,
    .n_tensors = 4,
    .data_size = sizeof(bl_rtn),
    .view_offset = offsetof(bl_rtn, view),
    .set_shape = rtn_set_shape,
    .get_shape = rtn_get_shape,
    .check = rtn_check,
    .forward = rtn_forward,
    .workspace_floats = rtn_workspace,
    .to_dense = rtn_to_dense,
    BL_FORMAT_TABLE_OPS,
    .forward_tol = 1e-5,
};

bl_status bl_linear_from_rtn(bl_linear *L, bl_rtn *q, bl_err *err) {
    return bl_linear_from_data(L, &bl_format_rtn, q, err);
}

void bl_rtn_free(bl_rtn *q) { bl_format_data_free(&bl_format_rtn, q); }

static bl_status rtn_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                         const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    (void)fo;
    bl_rtn q;
    bl_status s = bl_fit_rtn(W, m, n, p->bits, p->group, &q, err);
    if (!s && (s = bl_linear_from_rtn(out, &q, err))) bl_rtn_free(&q);
    return s;
}

static bl_status rtn_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                            bl_linear *out, bl_err *err) {
    bl_rtn q;
    bl_status s = bl_random_rtn(m, n, p->bits, p->group, seed, &q, err);
    if (!s && (s = bl_linear_from_rtn(out, &q, err))) bl_rtn_free(&q);
    return s;
}
