/* Group-wise symmetric integer weights with FP16 group scales (ggml's Q8_0 / Q4_0 layout in
 * spirit: one FP16 scale per `group` weights of a row, default 32), bits = params.bits (2..8):
 *   Ŵ[i][j] = d[i][g] · (c[i][j] − 2^(bits−1)),  g = j / group,  c ∈ [1, 2^bits − 1]
 * so the signed value c − 2^(bits−1) lies in [−qmax, qmax], qmax = 2^(bits−1) − 1 (symmetric:
 * no zero point). The fit is round-to-nearest against the stored scale:
 *   d = fp16(max_j |W[i][j]| / qmax) over the group,  c = 2^(bits−1) + clamp(round(W / d)).
 * Aliases: q8_0 = bits 8, group 32; q4_0 = bits 4, group 32. It is the format a quantized
 * embedding table or output head can use: get_row dequantizes one row (a token's embedding).
 *
 * Its tensors: the table below.
 *
 * Kernels: bl_qmat_weight (kernels.h) is the one dequantization formula. The q8_0 / q4_0
 * layouts (bits 4 or 8, group a multiple of 16) run bl_qmat_matmul's AVX2 or AVX-512 kernel,
 * which widens each 8 or 16 codes once per row and step and feeds them to every token of the
 * batch (an output's summation order depends neither on T nor on the thread count); other
 * layouts, and the REF level, use the generic forward (bl_qc_dequant_forward, shared with rtn: a chunk of a row
 * dequantized into a stack buffer, dot products with bl_qc_dot). Both equal x·to_dense()ᵀ up to
 * summation order. */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"
#include "bitllm/fit.h"

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

static bl_qmat qsym_qmat(const qsym_data *q) {
    return (bl_qmat){q->m, q->n, q->bits, q->group, q->qs, q->d};
}

static bool qsym_i8_inputs(const bl_linear *L) {
    const bl_qmat Q = qsym_qmat(bl_layer_d(L));
    return bl_qmat_i8_ok(&Q);
}

/* The int8 inputs of BL_TABLES_I8 (bl_qmat_matmul_i8), for layouts that have it. */
static size_t qsym_workspace(const bl_linear *L, int64_t T) {
    const bl_qmat Q = qsym_qmat(bl_layer_d(L));
    if (!bl_qmat_i8_ok(&Q)) return 0;
    return (bl_qmat_i8_work_bytes(Q.n, T) + sizeof(float) - 1) / sizeof(float);
}

/* w[0..len) = Ŵ[i][j0 .. j0+len), by the one dequantization formula (bl_qmat_weight). */
static void qsym_dequant(const void *data, int64_t i, int64_t j0, int64_t len, float *w) {
    const bl_qmat Q = qsym_qmat(data);
    for (int64_t j = j0; j < j0 + len; j++) w[j - j0] = bl_qmat_weight(&Q, i, j);
}

/* q8_0 / q4_0 layouts (bits 4 or 8, groups of a multiple of 16) run the SIMD kernel of
 * kernels.h (bl_qmat_matmul) at the AVX2 and AVX-512 levels; every other case the generic
 * dequantize-and-dot path. With BL_TABLES_I8 (groups of a multiple of 32) the int8-input
 * product bl_qmat_matmul_i8 at every level: its AVX2 or AVX-512 VNNI kernel, the specification
 * at REF. */
static void qsym_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                         const bl_exec *ex) {
    const qsym_data *q = bl_layer_d(L);
    const bl_qmat Q = qsym_qmat(q);
    if (ex && ex->tables == BL_TABLES_I8 && bl_qmat_i8_ok(&Q))
        bl_qmat_matmul_i8(&Q, x, T, y, work, ex);
    else if (bl_qmat_simd_ok(&Q, ex)) bl_qmat_matmul(&Q, x, T, y, ex);
    else bl_qc_dequant_forward(q, qsym_dequant, q->m, q->n, x, T, y, ex);
}

static void qsym_get_row(const bl_linear *L, int64_t i, float *row) {
    const qsym_data *q = bl_layer_d(L);
    qsym_dequant(q, i, 0, q->n, row);
}

static bl_status qsym_to_dense(const bl_linear *L, float *W, bl_err *err) {
    (void)err;
    for (int64_t i = 0; i < L->m; i++) qsym_get_row(L, i, W + i * L->n);
    return BL_OK;
}

/* ---- the tensor table: "<prefix>.qs" U8 {m, ceil(n·bits/8)}, ".d" F16 {m, ceil(n/group)} ---- */

static int64_t dim_groups(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m;
    return qsym_groups(n, p->group > 0 ? p->group : 1);
}

static const bl_format_tensor qsym_tensors[] = {
    BL_TENSOR("qs", BL_FT_CODES, bl_dim_m, bl_dim_n, offsetof(qsym_data, qs)),
    BL_TENSOR("d", BL_FT_F16, bl_dim_m, dim_groups, offsetof(qsym_data, d)),
};

static void qsym_set_shape(void *data, int64_t m, int64_t n, const bl_format_params *p) {
    qsym_data *q = data;
    q->m = m, q->n = n, q->bits = p->bits, q->group = p->group;
}

static void qsym_get_shape(const void *data, int64_t *m, int64_t *n, bl_format_params *p) {
    const qsym_data *q = data;
    *m = q->m, *n = q->n;
    memset(p, 0, sizeof *p);
    p->bits = q->bits, p->group = q->group;
}

static bl_status qsym_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                            bl_err *err) {
    if (m < 1 || n < 1 || p->bits < 2 || p->bits > 8 || p->group < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad qsym shape %lld×%lld (bits %d, group %d)", who,
                       (long long)m, (long long)n, p->bits, p->group);
    return BL_OK;
}

/* Code 0 would stand for −2^(bits−1), outside the symmetric range the format stores. */
static bl_status qsym_validate(const void *data, const char *who, bl_err *err) {
    const qsym_data *q = data;
    const int64_t rb = qsym_row_bytes(q->n, q->bits);
    for (int64_t i = 0; i < q->m; i++)
        for (int64_t j = 0; j < q->n; j++)
            if (bl_qc_code(q->qs + i * rb, j, q->bits) == 0)
                return bl_fail(err, BL_ERR_FORMAT, "%s: qsym code 0 at row %lld column %lld "
                               "(codes are 1..%d)", who, (long long)i, (long long)j,
                               (1 << q->bits) - 1);
    return BL_OK;
}

static bl_status qsym_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                          const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    (void)fo;
    qsym_data data, *q = &data;
    bl_status s = bl_format_data_alloc(&bl_format_qsym, m, n, p, q, err);
    if (s) return s;
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
    if (!s) s = bl_linear_from_data(out, &bl_format_qsym, q, err);
    if (s) bl_format_data_free(&bl_format_qsym, q);
    return s;
}

/* Codes uniform over [1, 2^bits − 1] and scales normal, from seed (benchmarks only). */
static bl_status qsym_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                             bl_linear *out, bl_err *err) {
    qsym_data data, *q = &data;
    bl_status s = bl_format_data_alloc(&bl_format_qsym, m, n, p, q, err);
    if (s) return s;
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
    if ((s = bl_linear_from_data(out, &bl_format_qsym, q, err)))
        bl_format_data_free(&bl_format_qsym, q);
    return s;
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
    .tensors = qsym_tensors,
    .n_tensors = 2,
    .data_size = sizeof(qsym_data),
    .view_offset = offsetof(qsym_data, view),
    .set_shape = qsym_set_shape,
    .get_shape = qsym_get_shape,
    .check = qsym_check,
    .validate = qsym_validate,
    .fit = qsym_fit,
    .random = qsym_random,
    .forward = qsym_forward,
    .workspace_floats = qsym_workspace,
    .i8_inputs = qsym_i8_inputs,
    .to_dense = qsym_to_dense,
    .get_row = qsym_get_row,
    BL_FORMAT_TABLE_OPS,
    .forward_tol = 1e-5,
};
