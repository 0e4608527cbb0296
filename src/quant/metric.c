/* The activation metric of the DBF/MDBF ADMM (bl_qf_metric, qf_internal.h): the correlation part
 * C = D^-½·H·D^-½ / mean (D = the diagonal scaling the caller takes out first), full or, for wide
 * inputs, diagonal plus low rank.
 *
 * Full (n ≤ BL_FIT_H_FULL_MAX, or a rank ≥ n asked for): C = E·diag(λ)·Eᵀ from a symmetric
 * eigendecomposition, with C and C^½ also kept as n×n matrices (one product each).
 *
 * Low rank (k < n): C ≈ E·diag(λ)·Eᵀ + c·(I − E·Eᵀ), E = the top-k eigenvectors (n×k, by subspace
 * iteration: BL_QF_METRIC_POWER passes of C·Y with QR, then the Rayleigh–Ritz k'×k' problem),
 * c = the mean of the other n − k eigenvalues, (tr C − Σλ)/(n − k). Every use costs O(r·n·k):
 * X·C^p = c^p·X + (X·E)·diag(λ^p − c^p)·Eᵀ, and the Sylvester solve of the G-step splits into
 * span(E) and its complement, where C acts as c (admm.c). Memory: E and one n×n copy of C while
 * it is built. */
#include "quant/qf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { OVERSAMPLE = 16, BL_QF_METRIC_POWER = 6 };

static const float FLOOR = 1e-4f; /* added to every eigenvalue: C^-½ exists */

void bl_qf_metric_free(bl_qf_metric *mt) {
    free(mt->E);
    free(mt->lam);
    free(mt->Hhalf);
    free(mt->H);
    memset(mt, 0, sizeof *mt);
}

double bl_qf_metric_mean(const bl_qf_metric *mt) {
    double s = 0.0;
    for (int64_t j = 0; j < mt->k; j++) s += mt->lam[j];
    s += (double)(mt->n - mt->k) * mt->c;
    return s / (double)mt->n;
}

void bl_qf_metric_pow(const bl_qf_metric *mt, const float *X, int64_t r, double p, float *tmp,
                      float *out) {
    const int64_t n = mt->n, k = mt->k;
    if (k == n && (p == 1.0 || p == 0.5)) {
        bl_qf_gemm(false, false, r, n, n, 1.0f, X, n, p == 1.0 ? mt->H : mt->Hhalf, n, 0.0f, out, n);
        return;
    }
    const double cp = k < n ? pow(mt->c, p) : 0.0;
    bl_qf_gemm(false, false, r, k, n, 1.0f, X, n, mt->E, k, 0.0f, tmp, k);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < k; j++) tmp[i * k + j] *= (float)(pow(mt->lam[j], p) - cp);
    if (k < n)
        for (size_t i = 0; i < (size_t)(r * n); i++) out[i] = (float)(cp * X[i]);
    bl_qf_gemm(false, true, r, n, k, 1.0f, tmp, k, mt->E, k, k < n ? 1.0f : 0.0f, out, n);
}

/* Top-k eigenpairs of the symmetric C (n×n) into mt->E (n×k) and mt->lam, by subspace iteration. */
static bl_status top_eigen(const float *C, int64_t n, int64_t k, uint64_t seed, bl_qf_metric *mt,
                           bl_err *err) {
    const int64_t kp = k + OVERSAMPLE < n ? k + OVERSAMPLE : n;
    float *Y = malloc(sizeof(float) * (size_t)(n * kp)), *Z = malloc(sizeof(float) * (size_t)(n * kp));
    float *B = malloc(sizeof(float) * (size_t)(kp * kp)), *w = malloc(sizeof(float) * (size_t)kp);
    bl_status st = BL_OK;
    if (!Y || !Z || !B || !w) {
        st = bl_fail(err, BL_ERR_NOMEM, "activation metric (n=%lld, rank %lld)", (long long)n,
                     (long long)k);
        goto done;
    }
    bl_qf_fill_normal(Y, (size_t)(n * kp), seed);
    for (int it = 0; it < BL_QF_METRIC_POWER && st == BL_OK; it++) {
        bl_qf_gemm(false, false, n, kp, n, 1.0f, C, n, Y, kp, 0.0f, Z, kp);
        memcpy(Y, Z, sizeof(float) * (size_t)(n * kp));
        st = bl_qf_orthonormalize(Y, n, kp, NULL, err);
    }
    if (st != BL_OK) goto done;
    /* Rayleigh–Ritz: B = Yᵀ·C·Y, B = V·diag(w)·Vᵀ (ascending), E = Y·V's last k columns */
    bl_qf_gemm(false, false, n, kp, n, 1.0f, C, n, Y, kp, 0.0f, Z, kp);
    bl_qf_gemm(true, false, kp, kp, n, 1.0f, Y, kp, Z, kp, 0.0f, B, kp);
    for (int64_t i = 0; i < kp; i++)
        for (int64_t j = i + 1; j < kp; j++) B[i * kp + j] = B[j * kp + i] =
                                                 0.5f * (B[i * kp + j] + B[j * kp + i]);
    if ((st = bl_qf_sym_eig(B, kp, w, err)) != BL_OK) goto done;
    bl_qf_gemm(false, false, n, kp, kp, 1.0f, Y, kp, B, kp, 0.0f, Z, kp);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) mt->E[i * k + j] = Z[i * kp + (kp - k) + j];
    for (int64_t j = 0; j < k; j++) mt->lam[j] = w[kp - k + j];
done:
    free(Y);
    free(Z);
    free(B);
    free(w);
    return st;
}

bl_status bl_qf_metric_init(bl_qf_metric *mt, const float *H, int64_t n, const float *si,
                            int64_t rank, uint64_t seed, bl_err *err) {
    memset(mt, 0, sizeof *mt);
    mt->n = n;
    const int64_t k = rank > 0 && rank < n ? rank : n;
    mt->k = k;
    const size_t nn = (size_t)n * (size_t)n;
    mt->E = malloc(sizeof(float) * (size_t)n * (size_t)k);
    mt->lam = malloc(sizeof(float) * (size_t)k);
    float *C = malloc(sizeof(float) * nn), *tmp = NULL;
    bl_status st = BL_OK;
    if (!mt->E || !mt->lam || !C) {
        st = bl_fail(err, BL_ERR_NOMEM, "activation metric (n=%lld)", (long long)n);
        goto done;
    }
    for (size_t i = 0; i < nn; i++)
        if (!isfinite(H[i])) {
            st = bl_fail(err, BL_ERR_ARG, "H contains a non-finite value");
            goto done;
        }
    /* symmetrize, divide by the diagonal scaling, normalize to unit mean diagonal (so ρ and the
     * ridge keep their meaning) */
    double md = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = si ? (double)si[i] * si[i] : 1.0;
        md += H[i * n + i] / d;
    }
    md /= (double)n;
    if (!(md > 0.0)) {
        st = bl_fail(err, BL_ERR_ARG, "H has a non-positive mean diagonal");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double d = si ? (double)si[i] * si[j] : 1.0;
            C[i * n + j] = (float)(0.5 * ((double)H[i * n + j] + H[j * n + i]) / (d * md));
        }
    if (k < n) {
        if ((st = top_eigen(C, n, k, seed, mt, err)) != BL_OK) goto done;
        double rest = (double)n; /* tr C = n after the normalization */
        for (int64_t j = 0; j < k; j++) {
            mt->lam[j] = (mt->lam[j] > 0.0f ? mt->lam[j] : 0.0f);
            rest -= mt->lam[j];
        }
        const double c = rest / (double)(n - k);
        mt->c = (float)(c > 0.0 ? c : 0.0) + FLOOR;
        for (int64_t j = 0; j < k; j++) mt->lam[j] += FLOOR;
        goto done;
    }
    memcpy(mt->E, C, sizeof(float) * nn);
    if ((st = bl_qf_sym_eig(mt->E, n, mt->lam, err)) != BL_OK) goto done;
    /* clamp negative eigenvalues (H is PSD up to rounding) and add a small ridge so H^-½ exists */
    for (int64_t j = 0; j < n; j++) mt->lam[j] = (mt->lam[j] > 0.0f ? mt->lam[j] : 0.0f) + FLOOR;
    /* C^½ = E·diag(√λ)·Eᵀ and C = E·diag(λ)·Eᵀ */
    mt->Hhalf = malloc(sizeof(float) * nn);
    mt->H = malloc(sizeof(float) * nn);
    tmp = malloc(sizeof(float) * nn);
    if (!mt->Hhalf || !mt->H || !tmp) {
        st = bl_fail(err, BL_ERR_NOMEM, "activation metric (n=%lld)", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) tmp[i * n + j] = mt->E[i * n + j] * sqrtf(mt->lam[j]);
    bl_qf_gemm(false, true, n, n, n, 1.0f, tmp, n, mt->E, n, 0.0f, mt->Hhalf, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) tmp[i * n + j] = mt->E[i * n + j] * mt->lam[j];
    bl_qf_gemm(false, true, n, n, n, 1.0f, tmp, n, mt->E, n, 0.0f, mt->H, n);
done:
    free(C);
    free(tmp);
    if (st != BL_OK) bl_qf_metric_free(mt);
    return st;
}
