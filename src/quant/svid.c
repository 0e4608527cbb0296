/* SVID (sign-value independent decomposition) and the OneBit initialization (ALGORITHMS.md §1–2):
 *   W = sign(W) ⊙ |W|,  |W| ≈ u·vᵀ (rank 1, non-negative)  ⇒  W ≈ diag(u)·sign(W)·diag(v). */
#include "quant/qf_internal.h"
#include "bitllm/formats/onebit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { RANK1_DEFAULT_ITERS = 200 };
static const double RANK1_TOL = 1e-7; /* relative change of the rank-1 product's norm */

static double norm2(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

static void scale(float *x, int64_t n, double s) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * s);
}

/* Power iteration on A = |W| from the all-ones vector: every iterate stays non-negative, so it
 * converges to the Perron pair, which is the top singular pair of A. */
static void rank1_svd(const float *A, int64_t m, int64_t n, int iters, float *u, float *v) {
    for (int64_t j = 0; j < n; j++) v[j] = 1.0f;
    scale(v, n, 1.0 / sqrt((double)n));
    double sigma = 0.0;
    for (int it = 0; it < iters; it++) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)n, 1.0f, A, (blasint)n, v, 1,
                    0.0f, u, 1);
        double nu = norm2(u, m);
        if (nu == 0.0) break;
        scale(u, m, 1.0 / nu);
        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)m, (blasint)n, 1.0f, A, (blasint)n, u, 1,
                    0.0f, v, 1);
        double s = norm2(v, n); /* = uᵀ·A·v for the new unit v */
        if (s == 0.0) break;
        scale(v, n, 1.0 / s);
        bool done = fabs(s - sigma) <= RANK1_TOL * s;
        sigma = s;
        if (done) break;
    }
    /* final left vector for the final v; σ = ‖A·v‖ */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)n, 1.0f, A, (blasint)n, v, 1, 0.0f,
                u, 1);
    double s = norm2(u, m);
    if (s > 0.0) scale(u, m, 1.0 / sqrt(s)); /* u = û·√σ */
    scale(v, n, sqrt(s));                      /* v = v̂·√σ */
}

/* Lee–Seung multiplicative updates for one component, u_i ← u_i (A v)_i / (u_i ‖v‖²) and
 * v_j ← v_j (Aᵀ u)_j / (v_j ‖u‖²), from the positive start u = row means, v = column means / mean
 * (so u·vᵀ already has the right scale). Entries that start at zero (all-zero rows or columns)
 * stay zero, as multiplicative updates do. */
static void rank1_nmf(const float *A, int64_t m, int64_t n, int iters, float *u, float *v) {
    double total = 0.0;
    for (int64_t i = 0; i < m; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < n; j++) s += A[i * n + j];
        u[i] = (float)(s / (double)n);
        total += s;
    }
    double mean = total / ((double)m * (double)n);
    double *cs = calloc((size_t)n, sizeof(double));
    if (cs) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) cs[j] += A[i * n + j];
    }
    for (int64_t j = 0; j < n; j++)
        v[j] = (cs && mean > 0.0) ? (float)(cs[j] / (double)m / mean) : 1.0f;
    free(cs);
    if (mean == 0.0) {
        memset(u, 0, sizeof(float) * (size_t)m);
        return;
    }
    float *t = malloc(sizeof(float) * (size_t)(m > n ? m : n));
    if (!t) { /* fall back to the start point: still a valid non-negative rank-1 fit */
        return;
    }
    double prev = 0.0;
    for (int it = 0; it < iters; it++) {
        double vv = norm2(v, n);
        vv *= vv;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)n, 1.0f, A, (blasint)n, v, 1,
                    0.0f, t, 1);
        for (int64_t i = 0; i < m; i++) {
            double den = (double)u[i] * vv;
            u[i] = den > 0.0 ? (float)((double)u[i] * t[i] / den) : 0.0f;
        }
        double uu = norm2(u, m);
        uu *= uu;
        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)m, (blasint)n, 1.0f, A, (blasint)n, u, 1,
                    0.0f, t, 1);
        for (int64_t j = 0; j < n; j++) {
            double den = (double)v[j] * uu;
            v[j] = den > 0.0 ? (float)((double)v[j] * t[j] / den) : 0.0f;
        }
        double cur = norm2(u, m) * norm2(v, n); /* ‖u vᵀ‖_F */
        bool done = fabs(cur - prev) <= RANK1_TOL * cur;
        prev = cur;
        if (done || cur == 0.0) break;
    }
    free(t);
}

bl_status bl_rank1_abs(const float *W, int64_t m, int64_t n, bool nmf, int iters, float *u,
                       float *v, bl_err *err) {
    if (!W || !u || !v) return bl_fail(err, BL_ERR_ARG, "bl_rank1_abs: NULL argument");
    if (m < 1 || n < 1 || iters < 0)
        return bl_fail(err, BL_ERR_ARG, "bl_rank1_abs: bad shape %lldx%lld or iters %d",
                       (long long)m, (long long)n, iters);
    if (iters == 0) iters = RANK1_DEFAULT_ITERS;
    size_t total = (size_t)m * (size_t)n;
    float *A = malloc(sizeof(float) * total);
    if (!A) return bl_fail(err, BL_ERR_NOMEM, "bl_rank1_abs: %lldx%lld", (long long)m, (long long)n);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < total; i++) A[i] = fabsf(W[i]);
    if (nmf)
        rank1_nmf(A, m, n, iters, u, v);
    else
        rank1_svd(A, m, n, iters, u, v);
    free(A);
    /* split the scale evenly: ‖u‖ = ‖v‖ (the product is unchanged) */
    double nu = norm2(u, m), nv = norm2(v, n);
    if (nu > 0.0 && nv > 0.0) {
        double c = sqrt(nv / nu);
        scale(u, m, c);
        scale(v, n, 1.0 / c);
    }
    for (int64_t i = 0; i < m; i++)
        if (!isfinite(u[i])) return bl_fail(err, BL_ERR_NUMERIC, "bl_rank1_abs: non-finite result");
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(v[j])) return bl_fail(err, BL_ERR_NUMERIC, "bl_rank1_abs: non-finite result");
    return BL_OK;
}

/* The buffers of a result (malloc'd; bl_onebit_free releases them). On failure nothing stays
 * allocated, the pointers are NULL and false is returned. */
static bool alloc_onebit(int64_t m, int64_t n, bl_onebit *out) {
    out->sign = malloc((size_t)m * (size_t)bl_sign_row_bytes(n));
    out->h = malloc(sizeof(float) * (size_t)m);
    out->g = malloc(sizeof(float) * (size_t)n);
    if (out->sign && out->h && out->g) return true;
    free(out->sign), free(out->h), free(out->g);
    out->sign = NULL, out->h = NULL, out->g = NULL;
    return false;
}

bl_status bl_fit_onebit(const float *W, int64_t m, int64_t n, const bl_fit_opts *o,
                        bl_onebit *out, bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_fit_onebit: NULL output");
    memset(out, 0, sizeof *out);
    if (!W || m < 1 || n < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_onebit: bad input (%lldx%lld)", (long long)m,
                       (long long)n);
    bl_fit_opts def;
    if (!o) {
        bl_fit_opts_default(&def);
        o = &def;
    }
    float *so = NULL, *si = NULL, *T = NULL, *dg = NULL;
    const float *in_imp = o->in_importance;
    if (o->H) { /* the start uses H's diagonal (mean x²) as the input importance */
        if (!(dg = malloc(sizeof(float) * (size_t)n)))
            return bl_fail(err, BL_ERR_NOMEM, "bl_fit_onebit: H diagonal");
        for (int64_t j = 0; j < n; j++) {
            const float d = o->H[j * n + j];
            if (!isfinite(d)) {
                free(dg);
                return bl_fail(err, BL_ERR_ARG, "bl_fit_onebit: H contains a non-finite value");
            }
            dg[j] = d > 0.0f ? d : 0.0f;
        }
        in_imp = dg;
    }
    bl_status st = bl_qf_sqrt_importance(o->out_importance, m, &so, err);
    if (st == BL_OK) st = bl_qf_sqrt_importance(in_imp, n, &si, err);
    if (st != BL_OK) goto fail;
    out->m = m;
    out->n = n;
    if (!alloc_onebit(m, n, out)) {
        st = bl_fail(err, BL_ERR_NOMEM, "bl_fit_onebit: %lldx%lld", (long long)m, (long long)n);
        goto fail;
    }
    bl_qf_pack_signs(W, m, n, out->sign);
    /* Importance weighting (ALGORITHMS.md §4, used by the reference OneBit too): fit the rank-1
     * envelope of |diag(√o)·W·diag(√i)| and divide the scalings back out. */
    const float *src = W;
    if (so || si) {
        T = malloc(sizeof(float) * (size_t)m * (size_t)n);
        if (!T) {
            st = bl_fail(err, BL_ERR_NOMEM, "bl_fit_onebit: importance copy");
            goto fail;
        }
        bl_qf_scale_rows_cols(W, m, n, so, si, T);
        src = T;
    }
    if ((st = bl_rank1_abs(src, m, n, o->nmf, 0, out->h, out->g, err)) != BL_OK) goto fail;
    if (so)
        for (int64_t i = 0; i < m; i++) out->h[i] /= so[i];
    if (si)
        for (int64_t j = 0; j < n; j++) out->g[j] /= si[j];
    /* under an activation metric: refine signs and scales for the output error (onebit_h.c) */
    if (o->H &&
        (st = bl_qf_onebit_hessian(W, m, n, o->H, o->out_importance, out->sign, out->h, out->g,
                                   err)) != BL_OK)
        goto fail;
    /* equal RMS on both sides keeps either vector far from the FP16 range limits */
    double rh = bl_qf_rms(out->h, m, 1), rg = bl_qf_rms(out->g, n, 1);
    if (rh > 0.0 && rg > 0.0) {
        double c = sqrt(rg / rh);
        scale(out->h, m, c);
        scale(out->g, n, 1.0 / c);
    }
    for (int64_t i = 0; i < m; i++) out->h[i] = bl_round_f16(out->h[i]);
    for (int64_t j = 0; j < n; j++) out->g[j] = bl_round_f16(out->g[j]);
    out->post_ln = false; /* plain SVID post-training approximation */
    out->view = false;
    free(so);
    free(si);
    free(T);
    free(dg);
    return BL_OK;
fail:
    free(so);
    free(si);
    free(T);
    free(dg);
    free(out->sign);
    free(out->h);
    free(out->g);
    memset(out, 0, sizeof *out);
    return st;
}

/* ---- random factors (benchmarks; fit.h, the draws of random_factors.c) ---- */

bl_status bl_random_onebit(int64_t m, int64_t n, uint64_t seed, bl_onebit *out, bl_err *err) {
    bl_status s = bl_qf_random_start("bl_random_onebit", out, sizeof *out, m, n, err);
    if (s) return s;
    out->m = m;
    out->n = n;
    if (!alloc_onebit(m, n, out)) {
        bl_onebit_free(out);
        return bl_qf_random_nomem("bl_random_onebit", m, n, err);
    }
    bl_qf_random_bits(out->sign, m, n, seed, 0, BL_QF_RT_SIGN_A);
    /* Ŵ = diag(h)·S·diag(g) */
    bl_qf_random_scales(out->h, m, BL_QF_RANDOM_STD, seed, 0, BL_QF_RT_OUTER);
    bl_qf_random_scales(out->g, n, 1.0, seed, 0, BL_QF_RT_IN);
    out->post_ln = false; /* as bl_fit_onebit: plain SVID */
    return BL_OK;
}
