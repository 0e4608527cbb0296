/* The SVID projection and its multi-envelope generalization (ALGORITHMS.md §2, §4, §5):
 *   proj(M) = sign(M) ⊙ TSVD_l(|M|).
 * For l = 1 this is OneBit's SVID / DBF's svd_abs; for l > 1 it is MDBF's svd_abs_rank_l. */
#include "quant/qf_internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bl_status bl_qf_env_alloc(bl_qf_env *e, int64_t rows, int64_t cols, int l, uint64_t seed,
                          bl_err *err) {
    memset(e, 0, sizeof *e);
    e->rows = rows;
    e->cols = cols;
    e->l = l;
    e->seed = seed;
    e->L = calloc((size_t)rows * (size_t)l, sizeof(float));
    e->R = calloc((size_t)cols * (size_t)l, sizeof(float));
    e->sign = calloc((size_t)rows * (size_t)bl_sign_row_bytes(cols), 1);
    if (!e->L || !e->R || !e->sign) {
        bl_qf_env_free(e);
        return bl_fail(err, BL_ERR_NOMEM, "envelope buffers (%lldx%lld, l=%d)", (long long)rows,
                       (long long)cols, l);
    }
    return BL_OK;
}

void bl_qf_env_free(bl_qf_env *e) {
    free(e->L);
    free(e->R);
    free(e->sign);
    e->L = e->R = NULL;
    e->sign = NULL;
}

void bl_qf_pack_signs(const float *M, int64_t r, int64_t c, uint8_t *bits) {
    int64_t rb = bl_sign_row_bytes(c);
    for (int64_t i = 0; i < r; i++) {
        const float *m = M + i * c;
        uint8_t *b = bits + i * rb;
        for (int64_t k = 0; k < rb; k++) {
            unsigned byte = 0;
            int64_t j0 = k * 8, j1 = j0 + 8 < c ? j0 + 8 : c;
            for (int64_t j = j0; j < j1; j++) byte |= (unsigned)(m[j] < 0.0f) << (j - j0);
            b[k] = (uint8_t)byte; /* padding bits stay 0 */
        }
    }
}

void bl_qf_transpose_signs(const uint8_t *in, int64_t r, int64_t c, uint8_t *out) {
    int64_t rb_in = bl_sign_row_bytes(c), rb_out = bl_sign_row_bytes(r);
    for (int64_t j = 0; j < c; j++) {
        uint8_t *o = out + j * rb_out;
        memset(o, 0, (size_t)rb_out);
        for (int64_t i = 0; i < r; i++)
            o[i >> 3] |= (uint8_t)(((in[i * rb_in + (j >> 3)] >> (j & 7)) & 1) << (i & 7));
    }
}

/* Sum of a column of a row-major matrix. */
static double col_sum(const float *X, int64_t rows, int64_t ld, int64_t j) {
    double s = 0.0;
    for (int64_t i = 0; i < rows; i++) s += X[i * ld + j];
    return s;
}

static float normalize(float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    double nr = sqrt(s);
    if (nr > 0.0) {
        float inv = (float)(1.0 / nr);
        for (int64_t i = 0; i < n; i++) x[i] *= inv;
    }
    return (float)nr;
}

/* l = 1: power iteration on the non-negative N. Starting from a non-negative vector keeps every
 * iterate non-negative, so the result is the Perron pair (the rank-1 SVD of N). */
static void rank1_power(const float *N, int64_t r, int64_t c, int iters, bool warm, float *L,
                        float *R) {
    float *u = L, *v = R; /* work in place: L is r×1, R is c×1 */
    bool have = false;
    if (warm) {
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) s += v[j] > 0.0f ? v[j] : 0.0f;
        have = s > 0.0;
        for (int64_t j = 0; j < c; j++) v[j] = v[j] > 0.0f ? v[j] : 0.0f;
    }
    if (!have)
        for (int64_t j = 0; j < c; j++) v[j] = 1.0f;
    normalize(v, c);
    for (int it = 0; it < iters; it++) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)r, (blasint)c, 1.0f, N, (blasint)c, v,
                    1, 0.0f, u, 1);
        if (normalize(u, r) == 0.0f) break;
        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)r, (blasint)c, 1.0f, N, (blasint)c, u, 1,
                    0.0f, v, 1);
        if (normalize(v, c) == 0.0f) break;
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)r, (blasint)c, 1.0f, N, (blasint)c, v, 1,
                0.0f, u, 1);
    float sigma = normalize(u, r);
    float s = sqrtf(sigma);
    for (int64_t i = 0; i < r; i++) u[i] *= s;
    for (int64_t j = 0; j < c; j++) v[j] *= s;
}

/* l > 1: block power iteration with oversampling, then the SVD of the small R factor. */
static bl_status block_power(const float *N, int64_t r, int64_t c, int l, int iters, bool warm,
                             uint64_t seed, float *L, float *R, bl_err *err) {
    int64_t mn = r < c ? r : c;
    int64_t le = l < mn ? l : mn;
    int64_t k0 = le + 4 < mn ? le + 4 : mn;
    float *V = malloc(sizeof(float) * (size_t)(c * k0));
    float *Y = malloc(sizeof(float) * (size_t)(r * k0));
    float *Rf = malloc(sizeof(float) * (size_t)(k0 * k0));
    float *Us = malloc(sizeof(float) * (size_t)(k0 * k0));
    float *Vt = malloc(sizeof(float) * (size_t)(k0 * k0));
    float *S = malloc(sizeof(float) * (size_t)k0);
    bl_status st = BL_OK;
    if (!V || !Y || !Rf || !Us || !Vt || !S) {
        st = bl_fail(err, BL_ERR_NOMEM, "block power iteration buffers");
        goto done;
    }
    bl_qf_fill_normal(V, (size_t)(c * k0), seed);
    if (warm) {
        for (int64_t i = 0; i < c; i++)
            for (int64_t j = 0; j < le; j++) V[i * k0 + j] = R[i * l + j];
    } else {
        for (int64_t i = 0; i < c; i++) V[i * k0] = 1.0f; /* Perron direction first */
    }
    if ((st = bl_qf_orthonormalize(V, c, k0, NULL, err)) != BL_OK) goto done;
    for (int it = 0; it < iters; it++) {
        bl_qf_gemm(false, false, r, k0, c, 1.0f, N, c, V, k0, 0.0f, Y, k0);
        if ((st = bl_qf_orthonormalize(Y, r, k0, NULL, err)) != BL_OK) goto done;
        bl_qf_gemm(true, false, c, k0, r, 1.0f, N, c, Y, k0, 0.0f, V, k0);
        if ((st = bl_qf_orthonormalize(V, c, k0, NULL, err)) != BL_OK) goto done;
    }
    /* N·V = Q·Rf, Rf = Us·diag(S)·Vt  ⇒  N ≈ (Q·Us)·diag(S)·(V·Vtᵀ)ᵀ */
    bl_qf_gemm(false, false, r, k0, c, 1.0f, N, c, V, k0, 0.0f, Y, k0);
    if ((st = bl_qf_orthonormalize(Y, r, k0, Rf, err)) != BL_OK) goto done;
    lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'A', (lapack_int)k0, (lapack_int)k0, Rf,
                                     (lapack_int)k0, S, Us, (lapack_int)k0, Vt, (lapack_int)k0);
    if (info != 0) {
        st = bl_fail(err, BL_ERR_NUMERIC, "small SVD in block power iteration (info %d)", (int)info);
        goto done;
    }
    memset(L, 0, sizeof(float) * (size_t)(r * l));
    memset(R, 0, sizeof(float) * (size_t)(c * l));
    bl_qf_gemm(false, false, r, le, k0, 1.0f, Y, k0, Us, k0, 0.0f, L, l);
    bl_qf_gemm(false, true, c, le, k0, 1.0f, V, k0, Vt, k0, 0.0f, R, l);
    for (int64_t j = 0; j < le; j++) {
        float s = sqrtf(S[j] > 0.0f ? S[j] : 0.0f);
        /* orient each component so its L column sums to ≥ 0 (L·Rᵀ is unchanged by flipping both);
         * for the dominant component this makes the Perron envelope non-negative */
        float sl = col_sum(L, r, l, j) < 0.0 ? -s : s;
        for (int64_t i = 0; i < r; i++) L[i * l + j] *= sl;
        for (int64_t i = 0; i < c; i++) R[i * l + j] *= sl;
    }
done:
    free(V);
    free(Y);
    free(Rf);
    free(Us);
    free(Vt);
    free(S);
    return st;
}

bl_status bl_qf_abs_tsvd(const float *N, int64_t r, int64_t c, int l, int iters, bool warm,
                         uint64_t seed, float *L, float *R, bl_err *err) {
    if (l == 1) {
        rank1_power(N, r, c, iters, warm, L, R);
        return BL_OK;
    }
    return block_power(N, r, c, l, iters, warm, seed, L, R, err);
}

void bl_qf_env_expand(const bl_qf_env *e, float *Z) {
    int64_t r = e->rows, c = e->cols, rb = bl_sign_row_bytes(c);
    int l = e->l;
    if (l > 1) bl_qf_gemm(false, true, r, c, l, 1.0f, e->L, l, e->R, l, 0.0f, Z, c);
    for (int64_t i = 0; i < r; i++) {
        float *z = Z + i * c;
        const uint8_t *b = e->sign + i * rb;
        if (l == 1) {
            float li = e->L[i];
            for (int64_t j = 0; j < c; j++) z[j] = li * e->R[j];
        }
        for (int64_t j = 0; j < c; j++)
            z[j] *= 1.0f - 2.0f * (float)((b[j >> 3] >> (j & 7)) & 1);
    }
}

bl_status bl_qf_project(float *M, bl_qf_env *e, int iters, float *Z, bl_err *err) {
    int64_t r = e->rows, c = e->cols;
    bl_qf_pack_signs(M, r, c, e->sign);
    for (int64_t i = 0; i < r * c; i++) M[i] = fabsf(M[i]);
    bl_status st = bl_qf_abs_tsvd(M, r, c, e->l, iters, e->warm, e->seed, e->L, e->R, err);
    if (st != BL_OK) return st;
    e->warm = true;
    bl_qf_env_expand(e, Z);
    return BL_OK;
}
