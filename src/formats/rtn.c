/* Round-to-nearest baselines (ALGORITHMS.md §6), bits = params.bits:
 *   bits 1:    Ŵ[i][j] = scale[i] · S[i][j]                 (sign × per-row scale; S packed signs)
 *   bits 2..8: Ŵ[i][j] = scale[i][g] · (q[i][j] − zero[i][g]), g = j / group, q ∈ [0, 2^bits)
 * zero is in code units (asymmetric quantization), scale and zero are FP16.
 *
 * Tensors: "<prefix>.q" U8 {m, ceil(n·bits/8)} (bits 1: the canonical sign layout; otherwise codes
 * packed LSB first, code j at bit j·bits of its row, a code may straddle two bytes),
 * "<prefix>.scale" F16 {m} for bits 1, F16 {m, ceil(n/group)} otherwise, "<prefix>.zero" F16
 * {m, ceil(n/group)} for bits ≥ 2 only. */
#include "formats/formats_internal.h"
#include "formats/quant_common.h"
#include "bitllm/quant.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bl_rtn d;
    bl_signmat S; /* bits 1 only */
} rtn_impl;

static int64_t rtn_groups(int64_t n, int group) { return group > 0 ? (n + group - 1) / group : 1; }

/* A group of 0 (unset) counts as one group per row, so the formula never divides by zero. */
static uint64_t rtn_stored_bits(int64_t m, int64_t n, const bl_format_params *p) {
    uint64_t mn = (uint64_t)m * (uint64_t)n;
    if (p->bits <= 1) return mn + 16u * (uint64_t)m;
    return mn * (uint64_t)p->bits + 32u * (uint64_t)m * (uint64_t)rtn_groups(n, p->group);
}

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
    const rtn_impl *q = L->impl;
    const bl_rtn *d = &q->d;
    if (d->bits == 1) {
        bl_sign_matmul(&q->S, x, T, y, ex);
        bl_qc_scale(y, d->scale, T, d->m, y, ex);
        return;
    }
    bl_qc_dequant_forward(d, rtn_dequant, d->m, d->n, x, T, y, ex);
}

static bl_status rtn_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_rtn *d = &((const rtn_impl *)L->impl)->d;
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

static bl_status rtn_save(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err) {
    const bl_rtn *d = &((const rtn_impl *)L->impl)->d;
    int64_t G = rtn_groups(d->n, d->group);
    bl_status s = bl_qc_save_u8(w, prefix, "q", d->q, d->m, (d->n * d->bits + 7) / 8, err);
    if (!s) s = bl_qc_save_f16(w, prefix, "scale", d->scale, d->m, d->bits >= 2 ? G : 0, err);
    if (!s && d->bits >= 2) s = bl_qc_save_f16(w, prefix, "zero", d->zero, d->m, G, err);
    return s;
}

static void rtn_free_impl(bl_linear *L) {
    rtn_impl *q = L->impl;
    if (!q) return;
    bl_signmat_release(&q->S);
    bl_rtn_free(&q->d);
    free(q);
    L->impl = NULL;
}

static bl_status rtn_attach(bl_linear *L, const bl_rtn *d, bl_pool *pool, bl_err *err) {
    rtn_impl *q = calloc(1, sizeof *q);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "rtn: out of memory");
    q->d = *d;
    if (d->bits == 1) {
        bl_status s = bl_qc_signmat(&q->S, d->m, d->n, d->q, pool, err);
        if (s) {
            bl_signmat_release(&q->S);
            free(q);
            return s;
        }
    }
    L->ops = &bl_format_rtn;
    L->m = d->m;
    L->n = d->n;
    memset(&L->params, 0, sizeof L->params);
    L->params.bits = d->bits;
    L->params.group = d->bits >= 2 ? d->group : 0;
    L->impl = q;
    return BL_OK;
}

static bl_status check_dims(int64_t m, int64_t n, int bits, int group, const char *who,
                            bl_err *err) {
    if (m < 1 || n < 1 || bits < 1 || bits > 8 || (bits >= 2 && group < 1))
        return bl_fail(err, BL_ERR_ARG, "%s: bad rtn shape %lld×%lld (bits %d, group %d)", who,
                       (long long)m, (long long)n, bits, group);
    return BL_OK;
}

static bl_status rtn_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                          bl_err *err) {
    const bl_format_params *p = &L->params;
    bl_status s = check_dims(L->m, L->n, p->bits, p->group, prefix, err);
    if (s) return s;
    bl_rtn d = {.m = L->m, .n = L->n, .bits = p->bits, .group = p->group, .view = true};
    int64_t G = d.bits >= 2 ? rtn_groups(d.n, d.group) : 0;
    const uint8_t *codes = NULL;
    s = bl_qc_load_bits(ts, prefix, "q", d.m, d.n * d.bits, &codes, err);
    d.q = (uint8_t *)codes; /* view into the mapped file: never written or freed */
    if (!s) s = bl_qc_load_f16(ts, prefix, "scale", d.m, G, &d.scale, err);
    if (!s && d.bits >= 2) s = bl_qc_load_f16(ts, prefix, "zero", d.m, G, &d.zero, err);
    if (!s) s = rtn_attach(L, &d, ts->pool, err);
    if (s) {
        bl_rtn_free(&d);
        return s;
    }
    if (d.bits == 1) bl_qc_release_bits(ts, &((const rtn_impl *)L->impl)->S);
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
static const void *rtn_data(const bl_linear *L) { return &((const rtn_impl *)L->impl)->d; }

const bl_format_ops bl_format_rtn = {
    .name = "rtn",
    .desc = "round-to-nearest baselines: bits 1 = sign × row scale; 2..8 = asymmetric per group",
    .params = rtn_params,
    .n_params = 2,
    .aliases = rtn_aliases,
    .n_aliases = 4,
    .opts_used = rtn_opts,
    .fit = rtn_fit,
    .random = rtn_random,
    .data = rtn_data,
    .stored_bits = rtn_stored_bits,
    .forward = rtn_forward,
    .workspace_floats = rtn_workspace,
    .to_dense = rtn_to_dense,
    .save = rtn_save,
    .load = rtn_load,
    .free_impl = rtn_free_impl,
    .forward_tol = 1e-5,
};

bl_status bl_linear_from_rtn(bl_linear *L, bl_rtn *q, bl_err *err) {
    bl_status s = check_dims(q->m, q->n, q->bits, q->group, "rtn", err);
    int64_t G = q->bits >= 2 ? rtn_groups(q->n, q->group) : 1;
    if (!s) s = bl_qc_need(q->q, "rtn q", err);
    if (!s) s = bl_qc_need(q->scale, "rtn scale", err);
    if (!s && q->bits >= 2) s = bl_qc_need(q->zero, "rtn zero", err);
    if (!s) s = bl_qc_check_padding(q->q, q->m, q->n * q->bits, "rtn q", err);
    if (!s) s = bl_qc_round_f16(q->scale, q->m * G, "rtn scale", err);
    if (!s && q->bits >= 2) s = bl_qc_round_f16(q->zero, q->m * G, "rtn zero", err);
    if (!s) s = rtn_attach(L, q, NULL, err);
    if (!s) memset(q, 0, sizeof *q); /* the layer owns the buffers now */
    return s;
}

void bl_rtn_free(bl_rtn *q) {
    if (!q) return;
    if (!q->view) free(q->q);
    free(q->scale);
    free(q->zero);
    memset(q, 0, sizeof *q);
}

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
