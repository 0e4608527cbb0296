/* The scalar type and the few primitives that differ between the f32 and f64 instantiations of
 * the training engine. Included by nn_f32.c / nn_f64.c after they define NN_REAL and FN (and
 * NN_F64 for double). The f32 path uses the library's deterministic OpenMP-blocked sgemm and the
 * packed sign-matrix kernels; the f64 path (gradient checks only) uses plain dgemm and a scalar
 * loop over the packed bits. */
#ifndef BITLLM_NN_REAL_H
#define BITLLM_NN_REAL_H

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "nn/nn.h"

typedef NN_REAL real;

/* The training engine is OpenMP code: its products run on the caller's OpenMP threads (the count
 * set for it by distill's options), at the default ISA level. */
#define NN_EXEC (&(bl_exec){bl_pool_omp_current(), BL_ISA_AUTO, BL_TABLES_F32})

#ifdef NN_F64
#define rexp exp
#define rsqrt sqrt
#define rtanh tanh
#else
#define rexp expf
#define rsqrt sqrtf
#define rtanh tanhf
#endif

/* Row-major C = alpha·op(A)·op(B) + beta·C, results independent of the thread count. */
static inline void rgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K,
                         real alpha, const real *A, int64_t lda, const real *B, int64_t ldb,
                         real beta, real *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef NN_F64
    cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
#else
    bl_sgemm(ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc,
             bl_pool_omp_current());
#endif
}

/* The same on the calling thread only (inside parallel loops). */
static inline void rgemm1(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N,
                          int64_t K, real alpha, const real *A, int64_t lda, const real *B,
                          int64_t ldb, real beta, real *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef NN_F64
    cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
#endif
}

/* Y (T×rows) = X (T×cols) · Sᵀ */
static inline void sign_mm(const nn_signs *S, const real *X, int64_t T, real *Y) {
#ifdef NN_F64
    const int64_t rb = bl_sign_row_bytes(S->cols);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < S->rows; i++) {
            double s = 0;
            for (int64_t j = 0; j < S->cols; j++)
                s += bl_sign_get(S->bits, rb, i, j) * X[t * S->cols + j];
            Y[t * S->rows + i] = s;
        }
#else
    bl_sign_matmul(&S->mat, X, T, Y, NN_EXEC);
#endif
}

/* Z (T×cols) = V (T×rows) · S */
static inline void sign_mm_t(const nn_signs *S, const real *V, int64_t T, real *Z) {
#ifdef NN_F64
    const int64_t rb = bl_sign_row_bytes(S->cols);
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < S->cols; j++) {
            double s = 0;
            for (int64_t i = 0; i < S->rows; i++)
                s += bl_sign_get(S->bits, rb, i, j) * V[t * S->rows + i];
            Z[t * S->cols + j] = s;
        }
#else
    bl_sign_matmul_t(&S->mat, V, T, Z, NN_EXEC);
#endif
}

/* out[j] += Σ_t a[t][j] (·b[t][j] when b is given), serially in token order. */
static inline void colsum_acc(real *out, const real *a, const real *b, int64_t N, int64_t n) {
    for (int64_t t = 0; t < N; t++) {
        const real *ar = a + t * n;
        if (b) {
            const real *br = b + t * n;
            for (int64_t j = 0; j < n; j++) out[j] += ar[j] * br[j];
        } else {
            for (int64_t j = 0; j < n; j++) out[j] += ar[j];
        }
    }
}

/* out[t][j] = x[t][j]·s[j] (out may equal x). */
static inline void scale_cols(real *out, const real *x, const real *s, int64_t N, int64_t n) {
#pragma omp parallel for schedule(static) if (N * n >= 65536)
    for (int64_t t = 0; t < N; t++)
        for (int64_t j = 0; j < n; j++) out[t * n + j] = x[t * n + j] * s[j];
}

#endif
