/* Scalar reference for the packed sign-matrix products: the specification every SIMD kernel is
 * tested against.
 *
 * Numerics: each output is accumulated in double, in index order (j = 0..n-1 for Y = X·Sᵀ,
 * i = 0..m-1 for Z = V·S), then rounded once to float. Double keeps the reference's own rounding
 * error (~n·2⁻⁵³) far below the fast kernels' float error, so a test's tolerance measures the
 * kernel under test, not the reference. Single-threaded on purpose: it is the oracle. */
#include "bitllm/format.h"
#include "bitllm/kernels.h"

void bl_sign_matmul_ref(const bl_signmat *S, const float *X, int64_t T, float *Y) {
    const int64_t m = S->m, n = S->n, rb = bl_sign_row_bytes(n);
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * n;
        for (int64_t i = 0; i < m; i++) {
            double acc = 0.0;
            for (int64_t j = 0; j < n; j++) acc += bl_sign_get(S->bits, rb, i, j) * (double)x[j];
            Y[t * m + i] = (float)acc;
        }
    }
}

void bl_sign_matmul_t_ref(const bl_signmat *S, const float *V, int64_t T, float *Z) {
    const int64_t m = S->m, n = S->n, rb = bl_sign_row_bytes(n);
    for (int64_t t = 0; t < T; t++) {
        const float *v = V + t * m;
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t i = 0; i < m; i++) acc += bl_sign_get(S->bits, rb, i, j) * (double)v[i];
            Z[t * n + j] = (float)acc;
        }
    }
}
