/* Multi-envelope double binary factorization (ALGORITHMS.md §5):
 *     W ≈ Σ_p F_p·G_p,   F = S_A ⊙ (A_env·Q_Uᵀ) (m×r),   G = S_B ⊙ (Q_V·B_envᵀ) (r×n)
 * r = params.mid, l = params.rank_l, P = params.paths. The forward uses the binary-primitive form
 *     G x = Σ_j Q_V[:,j] ⊙ ( S_B · (B_env[:,j] ⊙ x) ),   F z = Σ_j A_env[:,j] ⊙ ( S_A · (Q_U[:,j] ⊙ z) )
 * with the l scaled copies of every token stacked as (T·l) rows, so each sign matrix is read once
 * per call (one bl_sign_matmul with T·l right-hand sides) and F, G are never made dense.
 *
 * Tensors per path p: "<prefix>.p{p}.SA" U8 {m, ceil(r/8)}, ".p{p}.SB" U8 {r, ceil(n/8)},
 * ".p{p}.A_env" F16 {m, l}, ".p{p}.Q_U" F16 {r, l}, ".p{p}.Q_V" F16 {r, l}, ".p{p}.B_env" F16 {n, l}.
 *
 * l = 1: only the product Q_U ⊙ Q_V matters (one middle scale per component, DBF's μ), so the
 * path stores Q_U = μ and no Q_V (Q_V = 1 in memory): P·[r(m+n) + 16(m+n+r)] bits, DBF's cost per
 * path, so MDBF(l = 1, P = 1) is DBF bit for bit. A layer handed over with any other Q_V has it
 * multiplied into Q_U first. Checkpoints written before this layout carry a Q_V tensor for l = 1;
 * it is still read (and used as stored). */
#include "formats/formats_internal.h"
#include "formats/quant_common.h"
#include "bitllm/quant.h"

#include <cblas.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bl_mdbf d;
    bl_signmat *S; /* 2·P: S[2p] = S_A of path p (m×r), S[2p+1] = S_B (r×n) */
} mdbf_impl;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static uint64_t mdbf_stored_bits(int64_t m, int64_t n, const bl_format_params *p) {
    uint64_t r = (uint64_t)p->mid, l = (uint64_t)p->rank_l, mn = (uint64_t)(m + n);
    uint64_t middle = l == 1 ? r : 2 * l * r; /* Q_U and Q_V, merged for l = 1 */
    return (uint64_t)p->paths * (r * mn + 16u * (l * mn + middle));
}

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
    const mdbf_impl *q = L->impl;
    const int64_t m = q->d.m, n = q->d.n, r = q->d.r, l = q->d.l, Tl = T * l;
    float *X = work, *Z = X + Tl * max64(n, r), *z = Z + Tl * max64(r, m);
    for (int p = 0; p < q->d.P; p++) {
        mdbf_ctx c = {&q->d, &q->d.paths[p], x, X, Z, z, y, p == 0};
        bl_qc_for_tokens(ex, T, l * n, mdbf_g_in, &c);
        bl_sign_matmul(&q->S[2 * p + 1], X, Tl, Z, ex);
        bl_qc_for_tokens(ex, T, l * r, mdbf_mid, &c);
        bl_sign_matmul(&q->S[2 * p], X, Tl, Z, ex);
        bl_qc_for_tokens(ex, T, l * m, mdbf_out, &c);
    }
}

/* Ŵ = Σ_p F_p·G_p with F and G unpacked (signs times envelope products) and one sgemm per path. */
static bl_status mdbf_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const bl_mdbf *d = &((const mdbf_impl *)L->impl)->d;
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

static bl_status mdbf_save(const bl_linear *L, const char *prefix, bl_st_writer *w,
                           bl_err *err) {
    const bl_mdbf *d = &((const mdbf_impl *)L->impl)->d;
    bl_status s = BL_OK;
    char part[32];
    for (int p = 0; p < d->P && !s; p++) {
        const bl_mdbf_path *e = &d->paths[p];
        snprintf(part, sizeof part, "p%d.SA", p);
        s = bl_qc_save_u8(w, prefix, part, e->SA, d->m, bl_sign_row_bytes(d->r), err);
        snprintf(part, sizeof part, "p%d.SB", p);
        if (!s) s = bl_qc_save_u8(w, prefix, part, e->SB, d->r, bl_sign_row_bytes(d->n), err);
        snprintf(part, sizeof part, "p%d.A_env", p);
        if (!s) s = bl_qc_save_f16(w, prefix, part, e->A_env, d->m, d->l, err);
        snprintf(part, sizeof part, "p%d.Q_U", p);
        if (!s) s = bl_qc_save_f16(w, prefix, part, e->Q_U, d->r, d->l, err);
        snprintf(part, sizeof part, "p%d.Q_V", p);
        if (!s && d->l > 1) s = bl_qc_save_f16(w, prefix, part, e->Q_V, d->r, d->l, err);
        snprintf(part, sizeof part, "p%d.B_env", p);
        if (!s) s = bl_qc_save_f16(w, prefix, part, e->B_env, d->n, d->l, err);
    }
    return s;
}

static void release_signmats(bl_signmat *S, int count) {
    if (!S) return;
    for (int i = 0; i < count; i++) bl_signmat_release(&S[i]);
    free(S);
}

static void mdbf_free_impl(bl_linear *L) {
    mdbf_impl *q = L->impl;
    if (!q) return;
    release_signmats(q->S, 2 * q->d.P);
    bl_mdbf_free(&q->d);
    free(q);
    L->impl = NULL;
}

/* Moves d (validated) into a new impl with its 2·P sign matrices prepared; on failure the caller
 * keeps d's buffers. */
static bl_status mdbf_attach(bl_linear *L, const bl_mdbf *d, bl_pool *pool, bl_err *err) {
    mdbf_impl *q = calloc(1, sizeof *q);
    bl_signmat *S = calloc((size_t)(2 * d->P), sizeof *S);
    if (!q || !S) {
        free(q);
        free(S);
        return bl_fail(err, BL_ERR_NOMEM, "mdbf: out of memory");
    }
    bl_status s = BL_OK;
    for (int p = 0; p < d->P && !s; p++) {
        s = bl_qc_signmat(&S[2 * p], d->m, d->r, d->paths[p].SA, pool, err);
        if (!s) s = bl_qc_signmat(&S[2 * p + 1], d->r, d->n, d->paths[p].SB, pool, err);
    }
    if (s) {
        release_signmats(S, 2 * d->P);
        free(q);
        return s;
    }
    q->d = *d;
    q->S = S;
    L->ops = &bl_format_mdbf;
    L->m = d->m;
    L->n = d->n;
    memset(&L->params, 0, sizeof L->params);
    L->params.mid = d->r;
    L->params.rank_l = d->l;
    L->params.paths = d->P;
    L->impl = q;
    return BL_OK;
}

static bl_status check_dims(int64_t m, int64_t n, int64_t r, int l, int P, const char *who,
                            bl_err *err) {
    if (m < 1 || n < 1 || r < 1 || l < 1 || P < 1 || P > 64)
        return bl_fail(err, BL_ERR_ARG, "%s: bad mdbf shape %lld×%lld (r %lld, l %d, paths %d)",
                       who, (long long)m, (long long)n, (long long)r, l, P);
    return BL_OK;
}

static bl_status load_path(const bl_tensor_set *ts, const char *prefix, int p, bl_mdbf *d,
                           bl_err *err) {
    bl_mdbf_path *e = &d->paths[p];
    char part[32];
    const uint8_t *bits = NULL;
    snprintf(part, sizeof part, "p%d.SA", p);
    bl_status s = bl_qc_load_bits(ts, prefix, part, d->m, d->r, &bits, err);
    e->SA = (uint8_t *)bits; /* views into the mapped file: never written or freed */
    snprintf(part, sizeof part, "p%d.SB", p);
    if (!s) s = bl_qc_load_bits(ts, prefix, part, d->r, d->n, &bits, err);
    if (!s) e->SB = (uint8_t *)bits;
    snprintf(part, sizeof part, "p%d.A_env", p);
    if (!s) s = bl_qc_load_f16(ts, prefix, part, d->m, d->l, &e->A_env, err);
    snprintf(part, sizeof part, "p%d.Q_U", p);
    if (!s) s = bl_qc_load_f16(ts, prefix, part, d->r, d->l, &e->Q_U, err);
    snprintf(part, sizeof part, "p%d.Q_V", p);
    if (!s && d->l == 1 && !bl_qc_has(ts, prefix, part)) { /* merged into Q_U */
        e->Q_V = malloc(sizeof(float) * (size_t)d->r);
        if (!e->Q_V) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", prefix);
        for (int64_t i = 0; i < d->r; i++) e->Q_V[i] = 1.0f;
    } else if (!s) {
        s = bl_qc_load_f16(ts, prefix, part, d->r, d->l, &e->Q_V, err);
    }
    snprintf(part, sizeof part, "p%d.B_env", p);
    if (!s) s = bl_qc_load_f16(ts, prefix, part, d->n, d->l, &e->B_env, err);
    return s;
}

static bl_status mdbf_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                           bl_err *err) {
    const bl_format_params *pr = &L->params;
    bl_status s = check_dims(L->m, L->n, pr->mid, pr->rank_l, pr->paths, prefix, err);
    if (s) return s;
    bl_mdbf d = {.m = L->m, .n = L->n, .r = pr->mid, .l = pr->rank_l, .P = pr->paths,
                 .view = true};
    d.paths = calloc((size_t)d.P, sizeof *d.paths);
    if (!d.paths) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", prefix);
    for (int p = 0; p < d.P && !s; p++) s = load_path(ts, prefix, p, &d, err);
    if (!s) s = mdbf_attach(L, &d, ts->pool, err);
    if (s) {
        bl_mdbf_free(&d);
        return s;
    }
    const mdbf_impl *q = L->impl;
    for (int k = 0; k < 2 * d.P; k++) bl_qc_release_bits(ts, &q->S[k]);
    return BL_OK;
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
static const void *mdbf_data(const bl_linear *L) { return &((const mdbf_impl *)L->impl)->d; }

const bl_format_ops bl_format_mdbf = {
    .name = "mdbf",
    .desc = "MDBF: P paths of signs S_A (m×r), S_B (r×n) with rank-l FP16 envelopes",
    .params = mdbf_params,
    .n_params = 3,
    .opts_used = mdbf_opts,
    .mid_from_bpw = true,
    .fit = mdbf_fit,
    .random = mdbf_random,
    .data = mdbf_data,
    .stored_bits = mdbf_stored_bits,
    .forward = mdbf_forward,
    .workspace_floats = mdbf_workspace,
    .to_dense = mdbf_to_dense,
    .save = mdbf_save,
    .load = mdbf_load,
    .free_impl = mdbf_free_impl,
    .forward_tol = 5e-5,
};

bl_status bl_linear_from_mdbf(bl_linear *L, bl_mdbf *q, bl_err *err) {
    bl_status s = check_dims(q->m, q->n, q->r, q->l, q->P, "mdbf", err);
    if (!s) s = bl_qc_need(q->paths, "mdbf paths", err);
    const int64_t m = q->m, n = q->n, r = q->r, l = q->l;
    for (int p = 0; p < q->P && !s; p++) {
        bl_mdbf_path *e = &q->paths[p];
        s = bl_qc_need(e->SA, "mdbf SA", err);
        if (!s) s = bl_qc_need(e->SB, "mdbf SB", err);
        if (!s) s = bl_qc_need(e->A_env, "mdbf A_env", err);
        if (!s) s = bl_qc_need(e->Q_U, "mdbf Q_U", err);
        if (!s) s = bl_qc_need(e->Q_V, "mdbf Q_V", err);
        if (!s) s = bl_qc_need(e->B_env, "mdbf B_env", err);
        if (!s) s = bl_qc_check_padding(e->SA, m, r, "mdbf SA", err);
        if (!s) s = bl_qc_check_padding(e->SB, r, n, "mdbf SB", err);
        if (!s && l == 1) /* one middle scale per component: μ = Q_U ⊙ Q_V */
            for (int64_t i = 0; i < r; i++) {
                e->Q_U[i] *= e->Q_V[i];
                e->Q_V[i] = 1.0f;
            }
        if (!s) s = bl_qc_round_f16(e->A_env, m * l, "mdbf A_env", err);
        if (!s) s = bl_qc_round_f16(e->Q_U, r * l, "mdbf Q_U", err);
        if (!s) s = bl_qc_round_f16(e->Q_V, r * l, "mdbf Q_V", err);
        if (!s) s = bl_qc_round_f16(e->B_env, n * l, "mdbf B_env", err);
    }
    if (!s) s = mdbf_attach(L, q, NULL, err);
    if (!s) memset(q, 0, sizeof *q); /* the layer owns the buffers now */
    return s;
}

void bl_mdbf_free(bl_mdbf *q) {
    if (!q) return;
    for (int p = 0; q->paths && p < q->P; p++) {
        bl_mdbf_path *e = &q->paths[p];
        if (!q->view) {
            free(e->SA);
            free(e->SB);
        }
        free(e->A_env);
        free(e->Q_U);
        free(e->Q_V);
        free(e->B_env);
    }
    free(q->paths);
    memset(q, 0, sizeof *q);
}

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
