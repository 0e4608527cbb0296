/* Multi-envelope double binary factorization (ALGORITHMS.md §5):
 *     W ≈ Σ_p F_p·G_p,   F = S_A ⊙ (A_env·Q_Uᵀ) (m×r),   G = S_B ⊙ (Q_V·B_envᵀ) (r×n)
 * r = params.mid, l = params.rank_l, P = params.paths. The forward uses the binary-primitive form
 *     G x = Σ_j Q_V[:,j] ⊙ ( S_B · (B_env[:,j] ⊙ x) ),   F z = Σ_j A_env[:,j] ⊙ ( S_A · (Q_U[:,j] ⊙ z) )
 * with the l scaled copies of every token stacked as (T·l) rows, so each sign matrix is read once
 * per call (one bl_sign_matmul with T·l right-hand sides) and F, G are never made dense.
 *
 * Its tensors: the table below (per path p: "p{p}.SA", "p{p}.SB", envelopes).
 *
 * l = 1: only the product Q_U ⊙ Q_V matters (one middle scale per component, DBF's μ), so the
 * path stores Q_U = μ and no Q_V (Q_V = 1 in memory): P·[r(m+n) + 16(m+n+r)] bits, DBF's cost per
 * path, so MDBF(l = 1, P = 1) is DBF bit for bit. A layer handed over with any other Q_V has it
 * multiplied into Q_U first. Checkpoints written before this layout carry a Q_V tensor for l = 1;
 * it is still read (and used as stored). */
#include "formats/formats_internal.h"
#include "formats/forward_util.h"
#include "bitllm/formats/mdbf.h"

#include <cblas.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

extern const bl_format_ops bl_format_mdbf;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Layout of the workspace: X (T·l × max(n, r)) holds the stacked scaled inputs of either sign
 * product, Z (T·l × max(r, m)) their outputs, z (T × r) the middle activations of one path. */
static size_t mdbf_workspace(const bl_linear *L, int64_t T) {
    int64_t Tl = T * L->params.rank_l, r = L->params.mid;
    return (size_t)(Tl * max64(L->n, r) + Tl * max64(r, L->m) + T * r);
}

typedef struct {
    const bl_mdbf *d;
    const bl_mdbf_path *e;
    const float *x;
    float *X, *Z, *z, *y;
    int first; /* path 0 writes y, later paths add to it */
} mdbf_ctx;

/* G side: row t·l+j of X is B_env[:,j] ⊙ x_t. */
static void mdbf_g_in(void *ctx, int64_t t0, int64_t t1) {
    const mdbf_ctx *c = ctx;
    const int64_t n = c->d->n, l = c->d->l;
    for (int64_t t = t0; t < t1; t++)
        for (int64_t j = 0; j < l; j++) {
            float *xr = c->X + (t * l + j) * n;
            for (int64_t k = 0; k < n; k++) xr[k] = c->e->B_env[k * l + j] * c->x[t * n + k];
        }
}

/* z_t = Σ_j Q_V[:,j] ⊙ Z[t·l+j], then row t·l+j of X becomes Q_U[:,j] ⊙ z_t. */
static void mdbf_mid(void *ctx, int64_t t0, int64_t t1) {
    const mdbf_ctx *c = ctx;
    const int64_t r = c->d->r, l = c->d->l;
    for (int64_t t = t0; t < t1; t++) {
        float *zt = c->z + t * r;
        for (int64_t i = 0; i < r; i++) {
            float s = 0;
            for (int64_t j = 0; j < l; j++) s += c->e->Q_V[i * l + j] * c->Z[(t * l + j) * r + i];
            zt[i] = s;
        }
        for (int64_t j = 0; j < l; j++)
            for (int64_t i = 0; i < r; i++) c->X[(t * l + j) * r + i] = c->e->Q_U[i * l + j] * zt[i];
    }
}

/* y_t (+)= Σ_j A_env[:,j] ⊙ Z[t·l+j]; paths are added in order 0..P-1. */
static void mdbf_out(void *ctx, int64_t t0, int64_t t1) {
    const mdbf_ctx *c = ctx;
    const int64_t m = c->d->m, l = c->d->l;
    for (int64_t t = t0; t < t1; t++) {
        float *yt = c->y + t * m;
        for (int64_t o = 0; o < m; o++) {
            float s = 0;
            for (int64_t j = 0; j < l; j++) s += c->e->A_env[o * l + j] * c->Z[(t * l + j) * m + o];
            yt[o] = c->first ? s : yt[o] + s;
        }
    }
}

static void mdbf_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                         const bl_exec *ex) {
    const bl_mdbf *d = bl_layer_d(L);
    const bl_signmat *S = bl_layer_signs(L); /* S[2p] = S_A of path p, S[2p+1] = S_B */
    const int64_t m = d->m, n = d->n, r = d->r, l = d->l, Tl = T * l;
    float *X = work, *Z = X + Tl * max64(n, r), *z = Z + Tl * max64(r, m);
    for (int p = 0; p < d->P; p++) {
        mdbf_ctx c = {d, &d->paths[p], x, X, Z, z, y, p == 0};
        bl_qc_for_tokens(ex, T, l * n, mdbf_g_in, &c);
        bl_sign_matmul(&S[2 * p + 1], X, Tl, Z, ex);
        bl_qc_for_tokens(ex, T, l * r, mdbf_mid, &c);
        bl_sign_matmul(&S[2 * p], X, Tl, Z, ex);
        bl_qc_for_tokens(ex, T, l * m, mdbf_out, &c);
    }
}

/* Ŵ = Σ_p F_p·G_p with F and G unpacked (signs times envelope products) and one sgemm per path. */
static bl_status mdbf_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_mdbf *d = bl_layer_d(L);
    const int64_t m = d->m, n = d->n, r = d->r, l = d->l;
    const int64_t rbA = bl_sign_row_bytes(r), rbB = bl_sign_row_bytes(n);
    float *F = bl_malloc_array((size_t)(m * r), sizeof *F);
    float *G = bl_malloc_array((size_t)(r * n), sizeof *G);
    if (!F || !G) {
        free(F);
        free(G);
        return bl_fail(err, BL_ERR_NOMEM, "mdbf: out of memory for a %lld×%lld dense copy",
                       (long long)m, (long long)n);
    }
    for (int p = 0; p < d->P; p++) {
        const bl_mdbf_path *e = &d->paths[p];
        for (int64_t i = 0; i < m; i++)
            for (int64_t c = 0; c < r; c++) {
                float s = 0;
                for (int64_t j = 0; j < l; j++) s += e->A_env[i * l + j] * e->Q_U[c * l + j];
                F[i * r + c] = (float)bl_sign_get(e->SA, rbA, i, c) * s;
            }
        for (int64_t c = 0; c < r; c++)
            for (int64_t k = 0; k < n; k++) {
                float s = 0;
                for (int64_t j = 0; j < l; j++) s += e->Q_V[c * l + j] * e->B_env[k * l + j];
                G[c * n + k] = (float)bl_sign_get(e->SB, rbB, c, k) * s;
            }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0f, F,
                    (int)r, G, (int)n, p ? 1.0f : 0.0f, W, (int)n);
    }
    free(F);
    free(G);
    return BL_OK;
}

/* ---- the tensor table, per path p: "<prefix>.p{p}.SA" U8 {m, ceil(r/8)}, ".p{p}.SB" U8
 * {r, ceil(n/8)}, ".p{p}.A_env" F16 {m, l}, ".p{p}.Q_U" F16 {r, l}, ".p{p}.Q_V" F16 {r, l} (l ≥ 2;
 * for l = 1 it is 1 in memory and not stored), ".p{p}.B_env" F16 {n, l} ---- */

static bool q_v_stored(const bl_format_params *p) { return p->rank_l > 1; }

#define PATH_TENSOR(part_, kind_, rows_, cols_, field_)                                    \
    {.part = "p%d." part_, .kind = (kind_), .rows = (rows_), .cols = (cols_),             \
     .offset = offsetof(bl_mdbf_path, field_), .repeated = true}
static const bl_format_tensor mdbf_tensors[] = {
    PATH_TENSOR("SA", BL_FT_SIGNS, bl_dim_m, bl_dim_mid, SA),
    PATH_TENSOR("SB", BL_FT_SIGNS, bl_dim_mid, bl_dim_n, SB),
    PATH_TENSOR("A_env", BL_FT_F16, bl_dim_m, bl_dim_rank_l, A_env),
    PATH_TENSOR("Q_U", BL_FT_F16, bl_dim_mid, bl_dim_rank_l, Q_U),
    {.part = "p%d.Q_V", .kind = BL_FT_F16, .rows = bl_dim_mid, .cols = bl_dim_rank_l,
     .offset = offsetof(bl_mdbf_path, Q_V), .repeated = true, .stored = q_v_stored, .fill = 1.0f},
    PATH_TENSOR("B_env", BL_FT_F16, bl_dim_n, bl_dim_rank_l, B_env),
};

static int mdbf_repeats(const bl_format_params *p) { return p->paths; }

static void mdbf_set_shape(void *data, int64_t m, int64_t n, const bl_format_params *p) {
    bl_mdbf *d = data;
    d->m = m, d->n = n, d->r = p->mid, d->l = p->rank_l, d->P = p->paths;
}

static void mdbf_get_shape(const void *data, int64_t *m, int64_t *n, bl_format_params *p) {
    const bl_mdbf *d = data;
    *m = d->m, *n = d->n;
    memset(p, 0, sizeof *p);
    p->mid = d->r, p->rank_l = d->l, p->paths = d->P;
}

static bl_status mdbf_check(int64_t m, int64_t n, const bl_format_params *p, const char *who,
                            bl_err *err) {
    if (m < 1 || n < 1 || p->mid < 1 || p->rank_l < 1 || p->paths < 1 || p->paths > 64)
        return bl_fail(err, BL_ERR_ARG, "%s: bad mdbf shape %lld×%lld (r %lld, l %d, paths %d)",
                       who, (long long)m, (long long)n, (long long)p->mid, p->rank_l, p->paths);
    return BL_OK;
}

/* l = 1: one middle scale per component, μ = Q_U ⊙ Q_V, kept in Q_U (Q_V = 1). */
static void mdbf_normalize(void *data, const bl_format_params *p) {
    bl_mdbf *d = data;
    if (p->rank_l != 1) return;
    for (int k = 0; k < d->P; k++)
        for (int64_t i = 0; i < d->r; i++) {
            d->paths[k].Q_U[i] *= d->paths[k].Q_V[i];
            d->paths[k].Q_V[i] = 1.0f;
        }
}

static const bl_format_param mdbf_params[] = {
    {"mid", "r", BL_FPT_I64, offsetof(bl_format_params, mid), 0, 0, BL_MAX_MID, -1,
     "rank r of each path (0: the largest that fits the bpw target)"},
    {"rank_l", "rank", BL_FPT_INT, offsetof(bl_format_params, rank_l), 1, 1, 1024,
     BL_QP_ENVELOPE_RANK, "envelope rank l"},
    {"paths", NULL, BL_FPT_INT, offsetof(bl_format_params, paths), 1, 1, 64, BL_QP_PATHS,
     "number of paths P"},
};
static unsigned mdbf_opts(const bl_format_params *p) {
    (void)p;
    return BL_QP_BIT(BL_QP_BPW) | BL_QP_BIT(BL_QP_ENVELOPE_RANK) | BL_QP_BIT(BL_QP_PATHS) |
           BL_QP_BIT(BL_QP_ACTIVATION_AWARE) | BL_QP_BIT(BL_QP_ADAM_STEPS) |
           BL_QP_BIT(BL_QP_CALIB) | BL_QP_BIT(BL_QP_ITERS) | BL_QP_BIT(BL_QP_SEED);
}
static bl_status mdbf_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                          const struct bl_fit_opts *fo, bl_linear *out, bl_err *err);
static bl_status mdbf_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                             bl_linear *out, bl_err *err);

const bl_format_ops bl_format_mdbf = {
    .name = "mdbf",
    .desc = "MDBF: P paths of signs S_A (m×r), S_B (r×n) with rank-l FP16 envelopes",
    .params = mdbf_params,
    .n_params = 3,
    .opts_used = mdbf_opts,
    .mid_from_bpw = true,
    .trainable = true,
    .compare_default = "mdbf",
    .fit = mdbf_fit,
    .random = mdbf_random,
    .tensors = mdbf_tensors,
    .n_tensors = 6,
    .data_size = sizeof(bl_mdbf),
    .view_offset = offsetof(bl_mdbf, view),
    .repeats = mdbf_repeats,
    .repeat_offset = offsetof(bl_mdbf, paths),
    .repeat_size = sizeof(bl_mdbf_path),
    .set_shape = mdbf_set_shape,
    .get_shape = mdbf_get_shape,
    .check = mdbf_check,
    .normalize = mdbf_normalize,
    .forward = mdbf_forward,
    .workspace_floats = mdbf_workspace,
    .to_dense = mdbf_to_dense,
    BL_FORMAT_TABLE_OPS,
    .forward_tol = 5e-5,
};

bl_status bl_linear_from_mdbf(bl_linear *L, bl_mdbf *q, bl_err *err) {
    return bl_linear_from_data(L, &bl_format_mdbf, q, err);
}

void bl_mdbf_free(bl_mdbf *q) { bl_format_data_free(&bl_format_mdbf, q); }

static bl_status mdbf_fit(const float *W, int64_t m, int64_t n, const bl_format_params *p,
                          const struct bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    bl_mdbf q;
    bl_status s = bl_fit_mdbf(W, m, n, p->mid, p->rank_l, p->paths, fo, &q, err);
    if (!s && (s = bl_linear_from_mdbf(out, &q, err))) bl_mdbf_free(&q);
    return s;
}

static bl_status mdbf_random(int64_t m, int64_t n, const bl_format_params *p, uint64_t seed,
                             bl_linear *out, bl_err *err) {
    bl_mdbf q;
    bl_status s = bl_random_mdbf(m, n, p->mid, p->rank_l, p->paths, seed, &q, err);
    if (!s && (s = bl_linear_from_mdbf(out, &q, err))) bl_mdbf_free(&q);
    return s;
}
