/* Group-wise symmetric integer weights with FP16 group scales (ggml's Q8_0 / Q4_0 layout in
 * spirit: one FP16 scale per `group` weights of a row, default 32), bits = params.bits (2..8):
 *   Ŵ[i][j] = d[i][g] · (c[i][j] − 2^(bits−1)),  g = j / group,  c ∈ [1, 2^bits − 1]
 * so the signed value c − 2^(bits−1) lies in [−qmax, qmax], qmax = 2^(bits−1) − 1 (symmetric:
 * no zero point). The fit is round-to-nearest against the stored scale:
 *   d = fp16(max_j |W[i][j]| / qmax) over the group,  c = 2^(bits−1) + clamp(round(W / d)).
 * Aliases: q8_0 = bits 8, group 32; q4_0 = bits 4, group 32. It is the format a quantized
 * embedding table or output head can use: get_row dequantizes one row (a token's embedding).
 *
 * Tensors: "<prefix>.qs" U8 {m, ceil(n·bits/8)} (codes packed LSB first, code j at bit j·bits of
 * its row, a code may straddle two bytes; padding bits 0), "<prefix>.d" F16 {m, ceil(n/group)}.
 *
 * Kernels: bl_qmat_weight (kernels.h) is the one dequantization formula. The q8_0 / q4_0
 * layouts (bits 4 or 8, group a multiple of 16) run the AVX-512 kernel bl_qmat_matmul, which
 * widens each 16 codes once per row and step and feeds them to every token of the batch (an
 * output's summation order depends neither on T nor on the thread count); other layouts and
 * levels use the generic forward (bl_qc_dequant_forward, shared with rtn: a chunk of a row
 * dequantized into a stack buffer, dot products with bl_qc_dot). Both equal x·to_dense()ᵀ up to
 * summation order. */
#include "formats/formats_internal.h"
#include "formats/quant_common.h"
#include "bitllm/quant.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

extern const bl_format_ops bl_format_qsym;

typedef struct {
    int64_t m, n;
    int bits, group;
    uint8_t *qs;  /* m × ceil(n·bits/8) */
    float *d;     /* m × ceil(n/group), FP16-representable */
    bool view;    /* qs points into a mapped file */
} qsym_data;

static int64_t qsym_groups(int64_t n, int group) { return (n + group - 1) / group; }
static int64_t qsym_row_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }

static uint64_t qsym_stored_bits(int64_t m, int64_t n, const bl_format_params *p) {
    int group = p->group > 0 ? p->group : 1;
    return (uint64_t)m * (uint64_t)n * (uint64_t)p->bits +
           16u * (uint64_t)m * (uint64_t)qsym_groups(n, group);
}

static size_t qsym_workspace(const bl_linear *L, int64_t T) {
    (void)L;
    (void)T;
    return 0;
}

/* w[0..len) = Ŵ[i][j0 .. j0+len), by the one dequantization formula (bl_qmat_weight). */
static void qsym_dequant(const void *data, int64_t i, int64_t j0, int64_t len, float *w) {
    const qsym_data *q = data;
    const bl_qmat Q = {q->m, q->n, q->bits, q->group, q->qs, q->d};
    for (int64_t j = j0; j < j0 + len; j++) w[j - j0] = bl_qmat_weight(&Q, i, j);
}

/* q8_0 / q4_0 layouts (bits 4 or 8, groups of a multiple of 16) run the AVX-512 kernel of
 * kernels.h (bl_qmat_matmul) where the exec's level has it; every other case the generic
 * dequantize-and-dot path. */
static void qsym_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                         const bl_exec *ex) {
    (void)work;
    const qsym_data *q = L->impl;
    const bl_qmat Q = {q->m, q->n, q->bits, q->group, q->qs, q->d};
    if (bl_qmat_simd_ok(&Q, ex)) bl_qmat_matmul(&Q, x, T, y, ex);
    else bl_qc_dequant_forward(q, qsym_dequant, q->m, q->n, x, T, y, ex);
}

static void qsym_get_row(const bl_linear *L, int64_t i, float *row) {
    const qsym_data *q = L->impl;
    qsym_dequant(q, i, 0, q->n, row);
}

static bl_status qsym_to_dense(const bl_linear *L, float *W, bl_err *err) {
    (void)err;
    for (int64_t i = 0; i < L->m; i++) qsym_get_row(L, i, W + i * L->n);
    return BL_OK;
}

static bl_status qsym_save(const bl_linear *L, const char *prefix, bl_st_writer *w, bl_err *err) {
    const qsym_data *q = L->impl;
    bl_status s = bl_qc_save_u8(w, prefix, "qs", q->qs, q->m, qsym_row_bytes(q->n, q->bits), err);
    if (!s) s = bl_qc_save_f16(w, prefix, "d", q->d, q->m, qsym_groups(q->n, q->group), err);
    return s;
}

static void qsym_data_free(qsym_data *q) {
    if (!q) return;
    if (!q->view) free(q->qs);
    free(q->d);
    free(q);
}

static void qsym_free_impl(bl_linear *L) {
    qsym_data_free(L->impl);
    L->impl = NULL;
}

static const void *qsym_data_of(const bl_linear *L) { return L->impl; }

static bl_status qsym_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                            bl_err *err) {
    if (m < 1 || n < 1 || p->bits < 2 || p->bits > 8 || p->group < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad qsym shape %lld×%lld (bits %d, group %d)", who,
                       (long long)m, (long long)n, p->bits, p->group);
    return BL_OK;
}

/* A layer around q (taken over; freed on failure). */
static bl_status qsym_attach(bl_linear *L, qsym_data *q, bl_err *err) {
    (void)err;
    L->ops = &bl_format_qsym;
    L->m = q->m;
    L->n = q->n;
    memset(&L->params, 0, sizeof L->params);
    L->params.bits = q->bits;
    L->params.group = q->group;
    L->impl = q;
    return BL_OK;
}

/* Zeroed codes and scales of the layer's shape. */
static qsym_data *qsym_alloc(int64_t m, int64_t n, const bl_format_params *p) {
    qsym_data *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    *q = (qsym_data){.m = m, .n = n, .bits = p->bits, .group = p->group};
    q->qs = calloc((size_t)(m * qsym_row_bytes(n, p->bits)), 1);
    q->d = calloc((size_t)(m * qsym_groups(n, p->group)), sizeof(float));
    if (!q->qs || !q->d) {
        qsym_data_free(q);
        return NULL;
    }
    return q;
}

static bl_status qsym_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                           bl_err *err) {
    bl_status s = qsym_check(L->m, L->n, &L->params, prefix, err);
    if (s) return s;
    qsym_data *q = calloc(1, sizeof *q);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", prefix);
    *q = (qsym_data){.m = L->m, .n = L->n, .bits = L->params.bits, .group = L->params.group,
                     .view = true};
    const uint8_t *codes = NULL;
    s = bl_qc_load_bits(ts, prefix, "qs", q->m, q->n * q->bits, &codes, err);
    q->qs = (uint8_t *)codes; /* view into the mapped file: never written or freed */
    if (!s) s = bl_qc_load_f16(ts, prefix, "d", q->m, qsym_groups(q->n, q->group), &q->d, err);
    if (s) {
        qsym_data_free(q);
        return s;
    }
    return qsym_attach(L, q, err);
}

static bl_status qsym_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                          const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    (void)fo;
    bl_status s = qsym_check(m, n, p, "qsym fit", err);
    if (s) return s;
    qsym_data *q = qsym_alloc(m, n, p);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "qsym fit: out of memory (%lld x %lld)",
                           (long long)m, (long long)n);
    const int64_t G = qsym_groups(n, p->group), rb = qsym_row_bytes(n, p->bits);
    const int qmax = (1 << (p->bits - 1)) - 1;
    for (int64_t i = 0; i < m && !s; i++)
        for (int64_t g = 0; g < G && !s; g++) {
            const int64_t j0 = g * p->group, j1 = j0 + p->group < n ? j0 + p->group : n;
            float amax = 0.0f;
            for (int64_t j = j0; j < j1; j++) {
                const float v = W[i * n + j];
                if (!isfinite(v)) {
                    s = bl_fail(err, BL_ERR_ARG, "qsym fit: W[%lld][%lld] = %g is not finite",
                                (long long)i, (long long)j, (double)v);
                    break;
                }
                if (fabsf(v) > amax) amax = fabsf(v);
            }
            if (s) break;
            const float d = bl_round_f16(amax / (float)qmax); /* the scale as stored */
            if (!isfinite(d)) {
                s = bl_fail(err, BL_ERR_ARG, "qsym fit: row %lld group %lld: scale %g overflows "
                            "FP16", (long long)i, (long long)g, (double)(amax / (float)qmax));
                break;
            }
            q->d[i * G + g] = d;
            for (int64_t j = j0; j < j1; j++) {
                long c = d > 0.0f ? lroundf(W[i * n + j] / d) : 0;
                if (c > qmax) c = qmax;
                if (c < -qmax) c = -qmax;
                bl_qc_put_code(q->qs + i * rb, j, p->bits, (unsigned)(c + qmax + 1));
            }
        }
    if (s) {
        qsym_data_free(q);
        return s;
    }
    return qsym_attach(out, q, err);
}

/* Codes uniform over [1, 2^bits − 1] and scales normal, from seed (benchmarks only). */
static bl_status qsym_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                             bl_linear *out, bl_err *err) {
    bl_status s = qsym_check(m, n, p, "qsym random", err);
    if (s) return s;
    qsym_data *q = qsym_alloc(m, n, p);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "qsym random: out of memory (%lld x %lld)",
                           (long long)m, (long long)n);
    bl_rng r;
    bl_rng_seed(&r, seed);
    const int64_t G = qsym_groups(n, p->group), rb = qsym_row_bytes(n, p->bits);
    const unsigned levels = (1u << p->bits) - 1u;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            bl_qc_put_code(q->qs + i * rb, j, p->bits, 1u + (unsigned)(bl_rng_u64(&r) % levels));
    /* the dequantized weights get a standard deviation of about 0.02, as random onebit/rtn */
    const double step = 0.02 / sqrt(((double)levels * levels - 1.0) / 12.0);
    for (int64_t k = 0; k < m * G; k++)
        q->d[k] = bl_round_f16((float)(step * (1.0 + 0.1 * bl_rng_normal(&r))));
    return qsym_attach(out, q, err);
}

static unsigned qsym_opts(const bl_format_params *p) {
    (void)p;
    return BL_QP_BIT(BL_QP_GROUP);
}

static const bl_format_param qsym_params[] = {
    {"bits", NULL, BL_FPT_INT, offsetof(bl_format_params, bits), 8, 2, 8, -1,
     "bits per weight code (symmetric: values in [-(2^(bits-1)-1), 2^(bits-1)-1])"},
    {"group", NULL, BL_FPT_INT, offsetof(bl_format_params, group), 32, 1, 1 << 20, BL_QP_GROUP,
     "weights of a row per FP16 scale"},
};

static const bl_format_alias qsym_aliases[] = {
    {"q8_0", "bits=8,group=32"},
    {"q4_0", "bits=4,group=32"},
};

const bl_format_ops bl_format_qsym = {
    .name = "qsym",
    .desc = "group-wise symmetric 2..8-bit codes with one FP16 scale per group (q8_0, q4_0)",
    .params = qsym_params,
    .n_params = 2,
    .aliases = qsym_aliases,
    .n_aliases = 2,
    .opts_used = qsym_opts,
    .stored_bits = qsym_stored_bits,
    .fit = qsym_fit,
    .random = qsym_random,
    .forward = qsym_forward,
    .workspace_floats = qsym_workspace,
    .to_dense = qsym_to_dense,
    .get_row = qsym_get_row,
    .save = qsym_save,
    .load = qsym_load,
    .free_impl = qsym_free_impl,
    .data = qsym_data_of,
    .forward_tol = 1e-5,
};
