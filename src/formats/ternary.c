/* Ternary weights with one FP16 scale per group (BitNet b1.58's absmean quantization, in ggml's
 * TQ2_0 spirit: 2-bit codes, one FP16 scale per `group` weights of a row, default 128):
 *   Ŵ[i][j] = d[i][g] · (c[i][j] − 1),  g = j / group,  c ∈ {0, 1, 2}  (−1, 0, +1)
 * The fit is round-to-nearest against the stored scale:
 *   d = fp16(mean_j |W[i][j]|) over the group,  c = 1 + clamp(round(W / d), −1, 1)
 * (d = 0 for an all-zero group: every code 1). Alias: tq2_0 = group 256. Cost: 2 bits per
 * weight plus 16 per group (2.0625 bpw at group 256).
 *
 * Kernels: the scalar dequantization below is the reference and the only formula; the forward
 * reuses the dequantize-a-chunk driver of the code formats (bl_qc_dequant_forward, a fixed
 * 8-lane dot product the compiler vectorizes for the build's ISA), so the forward equals
 * x·to_dense()ᵀ up to summation order on every CPU. Its tensors: the table below. */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TERNARY_BITS 2

extern const bl_format_ops bl_format_ternary;

typedef struct {
    int64_t m, n;
    int group;
    uint8_t *codes; /* m × ceil(2n/8) */
    float *d;       /* m × ceil(n/group), FP16-representable */
    bool view;      /* codes point into a mapped file */
} ternary_data;

static int64_t groups_of(int64_t n, int group) { return (n + group - 1) / group; }
static int64_t row_bytes(int64_t n) { return (n * TERNARY_BITS + 7) / 8; }

/* ---- the tensor table: "<prefix>.codes" U8 {m, ceil(2n/8)}, ".d" F16 {m, ceil(n/group)} ---- */

static int64_t dim_groups(int64_t m, int64_t n, const bl_format_params *p) {
    (void)m;
    return groups_of(n, p->group > 0 ? p->group : 1);
}

static const bl_format_tensor ternary_tensors[] = {
    {.part = "codes", .kind = BL_FT_CODES, .rows = bl_dim_m, .cols = bl_dim_n,
     .offset = offsetof(ternary_data, codes), .code_bits = TERNARY_BITS},
    BL_TENSOR("d", BL_FT_F16, bl_dim_m, dim_groups, offsetof(ternary_data, d)),
};

static void ternary_set_shape(void *data, int64_t m, int64_t n, const bl_format_params *p) {
    ternary_data *q = data;
    q->m = m, q->n = n, q->group = p->group;
}

static void ternary_get_shape(const void *data, int64_t *m, int64_t *n, bl_format_params *p) {
    const ternary_data *q = data;
    *m = q->m, *n = q->n;
    memset(p, 0, sizeof *p);
    p->group = q->group;
}

static bl_status ternary_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                               bl_err *err) {
    if (m < 1 || n < 1 || p->group < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad ternary shape %lld×%lld (group %d)", who,
                       (long long)m, (long long)n, p->group);
    return BL_OK;
}

/* Code 3 is no ternary value. */
static bl_status ternary_validate(const void *data, const char *who, bl_err *err) {
    const ternary_data *q = data;
    const int64_t rb = row_bytes(q->n);
    for (int64_t i = 0; i < q->m; i++)
        for (int64_t j = 0; j < q->n; j++)
            if (bl_qc_code(q->codes + i * rb, j, TERNARY_BITS) > 2)
                return bl_fail(err, BL_ERR_FORMAT, "%s: ternary code 3 at row %lld column %lld "
                               "(codes are 0, 1, 2)", who, (long long)i, (long long)j);
    return BL_OK;
}

/* ---- compute ---- */

/* w[0..len) = Ŵ[i][j0 .. j0+len): the one dequantization formula (reference). */
static void ternary_dequant(const void *data, int64_t i, int64_t j0, int64_t len, float *w) {
    const ternary_data *q = data;
    const uint8_t *row = q->codes + i * row_bytes(q->n);
    const int64_t G = groups_of(q->n, q->group);
    for (int64_t j = j0; j < j0 + len;) {
        int64_t g = j / q->group, end = (g + 1) * q->group;
        if (end > j0 + len) end = j0 + len;
        const float d = q->d[i * G + g];
        for (; j < end; j++) w[j - j0] = d * (float)((int)bl_qc_code(row, j, TERNARY_BITS) - 1);
    }
}

static size_t ternary_workspace(const bl_linear *L, int64_t T) {
    (void)L;
    (void)T;
    return 0;
}

static void ternary_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                            const bl_exec *ex) {
    (void)work;
    const ternary_data *q = bl_layer_d(L);
    bl_qc_dequant_forward(q, ternary_dequant, q->m, q->n, x, T, y, ex);
}

static void ternary_get_row(const bl_linear *L, int64_t i, float *row) {
    const ternary_data *q = bl_layer_d(L);
    ternary_dequant(q, i, 0, q->n, row);
}

static bl_status ternary_to_dense(const bl_linear *L, float *W, bl_err *err) {
    (void)err;
    for (int64_t i = 0; i < L->m; i++) ternary_get_row(L, i, W + i * L->n);
    return BL_OK;
}

/* ---- fit and random ---- */

static bl_status ternary_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                             const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    (void)fo;
    ternary_data data, *q = &data;
    bl_status s = bl_format_data_alloc(&bl_format_ternary, m, n, p, q, err);
    if (s) return s;
    const int64_t G = groups_of(n, p->group), rb = row_bytes(n);
    for (int64_t i = 0; i < m && !s; i++)
        for (int64_t g = 0; g < G && !s; g++) {
            const int64_t j0 = g * p->group, j1 = j0 + p->group < n ? j0 + p->group : n;
            double sum = 0.0;
            for (int64_t j = j0; j < j1 && !s; j++) {
                const float v = W[i * n + j];
                if (!isfinite(v))
                    s = bl_fail(err, BL_ERR_ARG, "ternary fit: W[%lld][%lld] = %g is not finite",
                                (long long)i, (long long)j, (double)v);
                sum += fabs((double)v);
            }
            if (s) break;
            const float d = bl_round_f16((float)(sum / (double)(j1 - j0))); /* as stored */
            if (!isfinite(d)) {
                s = bl_fail(err, BL_ERR_ARG, "ternary fit: row %lld group %lld: scale "
                            "overflows FP16", (long long)i, (long long)g);
                break;
            }
            q->d[i * G + g] = d;
            for (int64_t j = j0; j < j1; j++) {
                long c = d > 0.0f ? lroundf(W[i * n + j] / d) : 0;
                c = c > 1 ? 1 : c < -1 ? -1 : c;
                bl_qc_put_code(q->codes + i * rb, j, TERNARY_BITS, (unsigned)(c + 1));
            }
        }
    if (!s) s = bl_linear_from_data(out, &bl_format_ternary, q, err);
    if (s) bl_format_data_free(&bl_format_ternary, q);
    return s;
}

/* Codes uniform over {0, 1, 2} and scales near 0.02·sqrt(3/2) (a standard deviation of about
 * 0.02, as the other random formats), from seed (benchmarks only). */
static bl_status ternary_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                                bl_linear *out, bl_err *err) {
    ternary_data data, *q = &data;
    bl_status s = bl_format_data_alloc(&bl_format_ternary, m, n, p, q, err);
    if (s) return s;
    bl_rng r;
    bl_rng_seed(&r, seed);
    const int64_t G = groups_of(n, p->group), rb = row_bytes(n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            bl_qc_put_code(q->codes + i * rb, j, TERNARY_BITS, (unsigned)(bl_rng_u64(&r) % 3));
    for (int64_t k = 0; k < m * G; k++)
        q->d[k] = bl_round_f16((float)(0.0245 * (1.0 + 0.1 * bl_rng_normal(&r))));
    if ((s = bl_linear_from_data(out, &bl_format_ternary, q, err)))
        bl_format_data_free(&bl_format_ternary, q);
    return s;
}

/* ---- traits ---- */

static unsigned ternary_opts(const bl_format_params *p) {
    (void)p;
    return BL_QP_BIT(BL_QP_GROUP);
}

static const bl_format_param ternary_params[] = {
    {"group", NULL, BL_FPT_INT, offsetof(bl_format_params, group), 128, 1, 1 << 20, BL_QP_GROUP,
     "weights of a row per FP16 scale"},
};

static const bl_format_alias ternary_aliases[] = {
    {"tq2_0", "group=256"},
};

const bl_format_ops bl_format_ternary = {
    .name = "ternary",
    .desc = "ternary {-1, 0, +1} x FP16 group scale, absmean fit (BitNet b1.58; tq2_0)",
    .params = ternary_params,
    .n_params = 1,
    .aliases = ternary_aliases,
    .n_aliases = 1,
    .opts_used = ternary_opts,
    .tensors = ternary_tensors,
    .n_tensors = 2,
    .data_size = sizeof(ternary_data),
    .view_offset = offsetof(ternary_data, view),
    .set_shape = ternary_set_shape,
    .get_shape = ternary_get_shape,
    .check = ternary_check,
    .validate = ternary_validate,
    .fit = ternary_fit,
    .random = ternary_random,
    .forward = ternary_forward,
    .workspace_floats = ternary_workspace,
    .to_dense = ternary_to_dense,
    .get_row = ternary_get_row,
    BL_FORMAT_TABLE_OPS,
    .forward_tol = 1e-5,
};
