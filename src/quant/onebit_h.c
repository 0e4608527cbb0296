/* Hessian-aware OneBit fit. The layer computes y = h ⊙ S(g ⊙ x), i.e. Ŵ = diag(h)·S·diag(g), and
 * under the calibration inputs' covariance H = XᵀX/N (with per-output weights o, the output-
 * gradient importance) the error to minimize is the output error
 *
 *   E(S, h, g) = Σ_i o_i·(w_i − h_i·s_i⊙g)·H·(w_i − h_i·s_i⊙g)ᵀ = tr(diag(o)·(W−Ŵ)·H·(W−Ŵ)ᵀ).
 *
 * Block coordinate descent from the diagonal-importance SVID start (svid.c), each step exact or
 * guarded:
 *   S: for fixed h, g every row is a least-squares problem over the two-level grid {±g_j} for the
 *      target w_i/h_i under the shared metric H — the problem GPTQ solves (Frantar et al. 2022):
 *      columns are decided one after the other and each decision's error is fed forward to the
 *      columns not yet decided through the upper Cholesky factor of H⁻¹ (lazy batches of
 *      GPTQ_BLOCK columns, the rest of the matrix updated by one GEMM per batch);
 *   g: for fixed S, h, E is a quadratic in g: [H ⊙ (Sᵀ·diag(o·h²)·S)]·g = Σ_i o_i·h_i·s_i ⊙ (W·H)_i
 *      (the Schur product of two PSD matrices is PSD; a tiny ridge keeps it definite);
 *   h: for fixed S, g each h_i is a one-dimensional least squares: h_i = ⟨(W·H)_i, q_i⟩/⟨q_i·H, q_i⟩,
 *      q_i = s_i ⊙ g.
 * The objective is evaluated after every round and the best (S, h, g) is kept, so the result is
 * never worse (in E) than the start; rounds stop when E improves by less than ROUND_TOL. With
 * H = I the sign step keeps sign(W) (no feedback: H⁻¹ is diagonal) and the g/h steps are the
 * alternating least squares of the rank-1 fit of |W|, i.e. the plain SVID. */
#include "quant/qf_internal.h"

#include "core/parallel.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { GPTQ_BLOCK = 128, ROUNDS = 8 };
static const double ROUND_TOL = 1e-4; /* relative improvement of E that ends the rounds */
static const float GPTQ_DAMP = 0.01f; /* H + damp·mean(diag H)·I before inversion (GPTQ's) */

/* U (n×n, row-major upper triangle, zeros below) with (H + damp·I)⁻¹ = Uᵀ·U. */
static bl_status inverse_factor(const float *H, int64_t n, float *U, bl_err *err) {
    double md = 0.0;
    for (int64_t j = 0; j < n; j++) md += H[j * n + j];
    md = md > 0.0 ? md / (double)n : 1.0;
    memcpy(U, H, sizeof(float) * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) U[j * n + j] += GPTQ_DAMP * (float)md;
    bl_blas_single_thread();
    /* row-major upper = column-major lower (see bl_qf_spd_factor) */
    lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, U, (lapack_int)n);
    if (info == 0) info = LAPACKE_spotri(LAPACK_COL_MAJOR, 'L', (lapack_int)n, U, (lapack_int)n);
    if (info == 0) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++) U[j * n + i] = U[i * n + j];
        info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, U, (lapack_int)n);
    }
    if (info != 0)
        return bl_fail(err, BL_ERR_NUMERIC, "onebit: H (n=%lld) is not positive definite after "
                       "damping (LAPACK info %d)", (long long)n, (int)info);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) U[i * n + j] = 0.0f;
    return BL_OK;
}

/* The sign step: S (m×n, ±1 as floats) for the targets T = W/h (destroyed), grid ±g. Err is m×B
 * scratch. */
static void gptq_signs(float *T, int64_t m, int64_t n, const float *g, const float *U, float *S,
                       float *Err) {
    for (int64_t b0 = 0; b0 < n; b0 += GPTQ_BLOCK) {
        const int64_t b1 = b0 + GPTQ_BLOCK < n ? b0 + GPTQ_BLOCK : n, B = b1 - b0;
        for (int64_t j = b0; j < b1; j++) {
            const float d = U[j * n + j], gj = g[j];
            const float *uj = U + j * n;
            for (int64_t i = 0; i < m; i++) {
                float *t = T + i * n;
                const float s = t[j] * gj >= 0.0f ? 1.0f : -1.0f;
                const float e = (t[j] - s * gj) / d;
                S[i * n + j] = s;
                Err[i * B + (j - b0)] = e;
                for (int64_t k = j + 1; k < b1; k++) t[k] -= e * uj[k];
            }
        }
        if (b1 < n) /* T[:, b1:] −= Err·U[b0:b1, b1:] */
            bl_qf_gemm(false, false, m, n - b1, B, -1.0f, Err, B, U + b0 * n + b1, n, 1.0f,
                       T + b1, n);
    }
}

typedef struct {
    int64_t m, n;
    const float *W, *H, *o; /* o: m row weights (NULL = ones) */
    float *WH, *Q, *QH;      /* m×n each */
    double *wref;            /* m: w_i·H·w_iᵀ */
} ctx;

static double row_w(const ctx *c, int64_t i) { return c->o ? c->o[i] : 1.0; }

/* Q = S·diag(g), QH = Q·H, h ← the optimal h for (S, g); returns E. */
static double h_step(ctx *c, const float *S, const float *g, float *h) {
    const int64_t m = c->m, n = c->n;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c->Q[i * n + j] = S[i * n + j] * g[j];
    bl_qf_gemm(false, false, m, n, n, 1.0f, c->Q, n, c->H, n, 0.0f, c->QH, n);
    double E = 0.0;
    for (int64_t i = 0; i < m; i++) {
        double num = 0.0, den = 0.0;
        for (int64_t j = 0; j < n; j++) {
            num += (double)c->WH[i * n + j] * c->Q[i * n + j];
            den += (double)c->QH[i * n + j] * c->Q[i * n + j];
        }
        h[i] = den > 0.0 ? (float)(num / den) : 0.0f;
        const double ei = den > 0.0 ? c->wref[i] - num * num / den : c->wref[i];
        E += row_w(c, i) * (ei > 0.0 ? ei : 0.0);
    }
    return E;
}

/* g ← argmin E for fixed S, h. A (m×n), M, Uf (n×n) and rhs (n) are scratch. */
static bl_status g_step(ctx *c, const float *S, const float *h, float *g, float *A, float *M,
                        float *Uf, bl_err *err) {
    const int64_t m = c->m, n = c->n;
    for (int64_t i = 0; i < m; i++) {
        const float a = (float)(sqrt(row_w(c, i)) * h[i]);
        for (int64_t j = 0; j < n; j++) A[i * n + j] = S[i * n + j] * a;
    }
    bl_qf_gemm(true, false, n, n, m, 1.0f, A, n, A, n, 0.0f, M, n);
    double md = 0.0;
    for (int64_t j = 0; j < n * n; j++) M[j] *= c->H[j];
    for (int64_t j = 0; j < n; j++) md += M[j * n + j];
    md = md > 0.0 ? md / (double)n : 1.0;
    double *rhs = calloc((size_t)n, sizeof(double));
    if (!rhs) return bl_fail(err, BL_ERR_NOMEM, "onebit: g step (n=%lld)", (long long)n);
    for (int64_t i = 0; i < m; i++) {
        const double a = row_w(c, i) * h[i];
        for (int64_t j = 0; j < n; j++) rhs[j] += a * S[i * n + j] * c->WH[i * n + j];
    }
    for (int64_t j = 0; j < n; j++) g[j] = (float)rhs[j];
    free(rhs);
    bl_status st = bl_qf_spd_factor(M, n, (float)(1e-6 * md), Uf, err);
    if (st != BL_OK) return st;
    bl_qf_spd_solve(Uf, n, g, 1);
    return BL_OK;
}

bl_status bl_qf_onebit_hessian(const float *W, int64_t m, int64_t n, const float *H,
                               const float *o, uint8_t *sign, float *h, float *g, bl_err *err) {
    const size_t mn = (size_t)m * (size_t)n, nn = (size_t)n * (size_t)n;
    ctx c = {.m = m, .n = n, .W = W, .H = H, .o = o};
    c.WH = malloc(sizeof(float) * mn);
    c.Q = malloc(sizeof(float) * mn);
    c.QH = malloc(sizeof(float) * mn);
    c.wref = malloc(sizeof(double) * (size_t)m);
    float *S = malloc(sizeof(float) * mn), *T = malloc(sizeof(float) * mn);
    float *U = malloc(sizeof(float) * nn), *M = malloc(sizeof(float) * nn);
    float *Uf = malloc(sizeof(float) * nn);
    float *Err = malloc(sizeof(float) * (size_t)m * GPTQ_BLOCK);
    float *bh = malloc(sizeof(float) * (size_t)m), *bg = malloc(sizeof(float) * (size_t)n);
    uint8_t *bs = malloc((size_t)m * (size_t)bl_sign_row_bytes(n));
    bl_status st = BL_OK;
    if (!c.WH || !c.Q || !c.QH || !c.wref || !S || !T || !U || !M || !Uf || !Err || !bh || !bg || !bs) {
        st = bl_fail(err, BL_ERR_NOMEM, "onebit: Hessian-aware fit (%lldx%lld)", (long long)m,
                     (long long)n);
        goto done;
    }
    bl_qf_gemm(false, false, m, n, n, 1.0f, W, n, H, n, 0.0f, c.WH, n);
    for (int64_t i = 0; i < m; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < n; j++) s += (double)W[i * n + j] * c.WH[i * n + j];
        c.wref[i] = s;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            S[i * n + j] = bl_sign_get(sign, bl_sign_row_bytes(n), i, j) < 0 ? -1.0f : 1.0f;
    if ((st = inverse_factor(H, n, U, err)) != BL_OK) goto done;
    /* the start: the given signs and g, the optimal h for them */
    double best = h_step(&c, S, g, h);
    memcpy(bh, h, sizeof(float) * (size_t)m);
    memcpy(bg, g, sizeof(float) * (size_t)n);
    memcpy(bs, sign, (size_t)m * (size_t)bl_sign_row_bytes(n));
    for (int round = 0; round < ROUNDS; round++) {
        for (int64_t i = 0; i < m; i++) {
            const float inv = h[i] != 0.0f ? 1.0f / h[i] : 1.0f;
            for (int64_t j = 0; j < n; j++) T[i * n + j] = W[i * n + j] * inv;
        }
        gptq_signs(T, m, n, g, U, S, Err);
        if ((st = g_step(&c, S, h, g, T, M, Uf, err)) != BL_OK) goto done;
        const double E = h_step(&c, S, g, h);
        if (!isfinite(E)) break;
        const bool better = E < best;
        const double gain = best - E;
        if (better) {
            best = E;
            memcpy(bh, h, sizeof(float) * (size_t)m);
            memcpy(bg, g, sizeof(float) * (size_t)n);
            bl_qf_pack_signs(S, m, n, bs);
        }
        if (!better || gain < ROUND_TOL * best) break;
    }
    memcpy(h, bh, sizeof(float) * (size_t)m);
    memcpy(g, bg, sizeof(float) * (size_t)n);
    memcpy(sign, bs, (size_t)m * (size_t)bl_sign_row_bytes(n));
done:
    free(c.WH);
    free(c.Q);
    free(c.QH);
    free(c.wref);
    free(S);
    free(T);
    free(U);
    free(M);
    free(Uf);
    free(Err);
    free(bh);
    free(bg);
    free(bs);
    return st;
}
