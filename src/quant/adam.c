/* Gradient refinement of the MDBF envelopes with the sign matrices frozen (ALGORITHMS.md §5, last
 * step; OneCompression mdbf/gradient_refine.py). With F = S_A ⊙ (A·Q_Uᵀ), G = S_B ⊙ (Q_V·Bᵀ) and
 * D = ∂L/∂Ŵ (the residual, or residual·H under the metric):
 *   ∂L/∂F = D·Gᵀ,  ∂L/∂G = Fᵀ·D,
 *   ∂L/∂A = (∂F ⊙ S_A)·Q_U,  ∂L/∂Q_U = (∂F ⊙ S_A)ᵀ·A,
 *   ∂L/∂Q_V = (∂G ⊙ S_B)·B,  ∂L/∂B = (∂G ⊙ S_B)ᵀ·Q_V   (constant factor 2 dropped: Adam is
 * invariant to gradient scale). */
#include "quant/qf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *x;      /* the parameter (inside a bl_mdbf_path) */
    int64_t len;
    float *g, *m1, *m2, *best; /* views into shared arrays */
    float scale, eps;
} tensor;

static void unpack_signs(const uint8_t *bits, int64_t rows, int64_t cols, float *out) {
    int64_t rb = bl_sign_row_bytes(cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            out[i * cols + j] = 1.0f - 2.0f * (float)((bits[i * rb + (j >> 3)] >> (j & 7)) & 1);
}

/* out (rows×cols) = S ⊙ (X·Yᵀ), X rows×l, Y cols×l */
static void signed_product(const float *S, const float *X, const float *Y, int64_t rows,
                           int64_t cols, int l, float *out) {
    if (l > 1) bl_qf_gemm(false, true, rows, cols, l, 1.0f, X, l, Y, l, 0.0f, out, cols);
    for (int64_t i = 0; i < rows; i++) {
        float *o = out + i * cols;
        const float *s = S + i * cols;
        if (l == 1)
            for (int64_t j = 0; j < cols; j++) o[j] = s[j] * X[i] * Y[j];
        else
            for (int64_t j = 0; j < cols; j++) o[j] *= s[j];
    }
}

static void mul_inplace(float *a, const float *s, size_t len) {
    for (size_t i = 0; i < len; i++) a[i] *= s[i];
}

static double dot(const float *a, const float *b, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += (double)a[i] * b[i];
    return s;
}

bl_status bl_qf_adam(bl_mdbf_path *paths, int P, int64_t m, int64_t n, int64_t r, int l,
                     const float *T, const bl_qf_metric *mt, int steps, float lr,
                     bl_progress_fn progress, void *ctx, double base, double span, bl_err *err) {
    const double b1 = 0.9, b2 = 0.999;
    size_t mr = (size_t)(m * r), rn = (size_t)(r * n), mn = (size_t)(m * n);
    int nt = 4 * P;
    size_t total = (size_t)P * (size_t)l * (size_t)(m + 2 * r + n);
    tensor *ts = calloc((size_t)nt, sizeof(tensor));
    float *state = malloc(sizeof(float) * total * 4);
    float *SA = malloc(sizeof(float) * mr * (size_t)P), *SB = malloc(sizeof(float) * rn * (size_t)P);
    float *F = malloc(sizeof(float) * mr * (size_t)P), *G = malloc(sizeof(float) * rn * (size_t)P);
    float *Y = malloc(sizeof(float) * mn), *D = mt ? malloc(sizeof(float) * mn) : Y;
    float *mscr = mt ? malloc(sizeof(float) * (size_t)m * (size_t)mt->k) : NULL;
    float *dF = malloc(sizeof(float) * mr), *dG = malloc(sizeof(float) * rn);
    bl_status st = BL_OK;
    if (!ts || !state || !SA || !SB || !F || !G || !Y || !D || !dF || !dG || (mt && !mscr)) {
        st = bl_fail(err, BL_ERR_NOMEM, "Adam refinement buffers");
        goto done;
    }
    memset(state, 0, sizeof(float) * total * 4);
    size_t off = 0;
    for (int p = 0; p < P; p++) {
        float *xs[4] = {paths[p].A_env, paths[p].Q_U, paths[p].Q_V, paths[p].B_env};
        int64_t lens[4] = {m * l, r * l, r * l, n * l};
        for (int k = 0; k < 4; k++) {
            tensor *t = &ts[4 * p + k];
            t->x = xs[k];
            t->len = lens[k];
            t->g = state + off;
            t->m1 = state + total + off;
            t->m2 = state + 2 * total + off;
            t->best = state + 3 * total + off;
            t->scale = (float)bl_qf_rms(t->x, t->len, 1);
            memcpy(t->best, t->x, sizeof(float) * (size_t)t->len);
            off += (size_t)t->len;
        }
        unpack_signs(paths[p].SA, m, r, SA + (size_t)p * mr);
        unpack_signs(paths[p].SB, r, n, SB + (size_t)p * rn);
    }
    double best = INFINITY;
    for (int step = 0; step <= steps; step++) {
        /* forward: Y = Σ F_p G_p − T */
        memcpy(Y, T, sizeof(float) * mn);
        for (int p = 0; p < P; p++) {
            float *Fp = F + (size_t)p * mr, *Gp = G + (size_t)p * rn;
            signed_product(SA + (size_t)p * mr, paths[p].A_env, paths[p].Q_U, m, r, l, Fp);
            signed_product(SB + (size_t)p * rn, paths[p].Q_V, paths[p].B_env, r, n, l, Gp);
            bl_qf_gemm(false, false, m, n, r, 1.0f, Fp, r, Gp, n, p == 0 ? -1.0f : 1.0f, Y, n);
        }
        double loss;
        if (mt) {
            bl_qf_metric_pow(mt, Y, m, 1.0, mscr, D);
            loss = dot(Y, D, mn);
        } else {
            loss = dot(Y, Y, mn);
        }
        if (!isfinite(loss)) break; /* keep the best finite iterate */
        if (loss < best) {
            best = loss;
            for (int k = 0; k < nt; k++)
                memcpy(ts[k].best, ts[k].x, sizeof(float) * (size_t)ts[k].len);
        }
        if (step == steps) break;
        /* backward */
        for (int p = 0; p < P; p++) {
            float *Fp = F + (size_t)p * mr, *Gp = G + (size_t)p * rn;
            tensor *t = &ts[4 * p];
            bl_qf_gemm(false, true, m, r, n, 1.0f, D, n, Gp, n, 0.0f, dF, r);
            mul_inplace(dF, SA + (size_t)p * mr, mr);
            bl_qf_gemm(false, false, m, l, r, 1.0f, dF, r, paths[p].Q_U, l, 0.0f, t[0].g, l);
            bl_qf_gemm(true, false, r, l, m, 1.0f, dF, r, paths[p].A_env, l, 0.0f, t[1].g, l);
            bl_qf_gemm(true, false, r, n, m, 1.0f, Fp, r, D, n, 0.0f, dG, n);
            mul_inplace(dG, SB + (size_t)p * rn, rn);
            bl_qf_gemm(false, false, r, l, n, 1.0f, dG, n, paths[p].B_env, l, 0.0f, t[2].g, l);
            bl_qf_gemm(true, false, n, l, r, 1.0f, dG, n, paths[p].Q_V, l, 0.0f, t[3].g, l);
        }
        /* Adam step, cosine-decayed, relative to each tensor's initial RMS */
        double lr_t = lr * 0.5 * (1.0 + cos(M_PI * (double)step / (double)steps));
        double c1 = 1.0 - pow(b1, step + 1), c2 = 1.0 - pow(b2, step + 1);
        for (int k = 0; k < nt; k++) {
            tensor *t = &ts[k];
            if (step == 0) t->eps = (float)(1e-8 * bl_qf_rms(t->g, t->len, 1)) + 1e-30f;
            float sc = t->scale > 0.0f ? t->scale : 1e-3f;
            for (int64_t i = 0; i < t->len; i++) {
                double gi = t->g[i];
                t->m1[i] = (float)(b1 * t->m1[i] + (1.0 - b1) * gi);
                t->m2[i] = (float)(b2 * t->m2[i] + (1.0 - b2) * gi * gi);
                double mh = t->m1[i] / c1, vh = t->m2[i] / c2;
                t->x[i] -= (float)(lr_t * sc * mh / (sqrt(vh) + t->eps));
            }
        }
        if (progress) progress(ctx, base + span * (double)(step + 1) / (double)steps);
    }
    for (int k = 0; k < nt; k++) memcpy(ts[k].x, ts[k].best, sizeof(float) * (size_t)ts[k].len);
done:
    free(ts);
    free(state);
    free(SA);
    free(SB);
    free(F);
    free(G);
    if (D != Y) free(D);
    free(mscr);
    free(Y);
    free(dF);
    free(dG);
    return st;
}
