/* Scalar reference for the packed sign-matrix products: the specification every SIMD kernel is
 * tested against.
 *
 * Numerics: each output is accumulated in double, in index order (j = 0..n-1 for Y = X·Sᵀ,
 * i = 0..m-1 for Z = V·S), then rounded once to float. Double keeps the reference's own rounding
 * error (~n·2⁻⁵³) far below the fast kernels' float error, so a test's tolerance measures the
 * kernel under test, not the reference. Single-threaded on purpose: it is the oracle. */
#include <math.h>

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

/* BL_TABLES_I8, the specification (kernels.h). Per token, per 32-column word w (columns past n
 * read as 0), per 4-column group q of the word (inputs v0..v3):
 *   entry(e) = ((s0·v0 + s1·v1) + s2·v2) + s3·v3 in f32, s_b = −1 where bit b of e is set;
 *   a_q      = ((|v0| + |v1|) + |v2|) + |v3| (the largest |entry|), max_w = max_q a_q;
 *   inv_w    = 127 / max_w (0 when max_w = 0), scale_w = max_w / 127;
 *   code     = round-half-even(entry · inv_w), in [−127, 127].
 * A row's word sum is the exact int32 Σ_q code(nibble q of the row's word), and the output is
 * y = fma(word sum, scale_w, y) over the words in column order, from +0. */
void bl_sign_matmul_i8_ref(const bl_signmat *S, const float *X, int64_t T, float *Y) {
    const int64_t m = S->m, n = S->n, rb = bl_sign_row_bytes(n), words = (n + 31) / 32;
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * n;
        float *y = Y + t * m; /* each row's running sum, word by word */
        for (int64_t i = 0; i < m; i++) y[i] = 0.0f;
        for (int64_t w = 0; w < words; w++) {
            float v[8][4], maxw = 0.0f;
            int8_t code[8][16];
            for (int q = 0; q < 8; q++) {
                for (int b = 0; b < 4; b++) {
                    const int64_t j = 32 * w + 4 * q + b;
                    v[q][b] = j < n ? x[j] : 0.0f;
                }
                const float a =
                    ((fabsf(v[q][0]) + fabsf(v[q][1])) + fabsf(v[q][2])) + fabsf(v[q][3]);
                maxw = a > maxw ? a : maxw;
            }
            const float inv = maxw > 0.0f ? 127.0f / maxw : 0.0f, scale = maxw / 127.0f;
            for (int q = 0; q < 8; q++)
                for (int e = 0; e < 16; e++) {
                    float s = (e & 1) ? -v[q][0] : v[q][0];
                    s = s + ((e & 2) ? -v[q][1] : v[q][1]);
                    s = s + ((e & 4) ? -v[q][2] : v[q][2]);
                    s = s + ((e & 8) ? -v[q][3] : v[q][3]);
                    float r = nearbyintf(s * inv);
                    code[q][e] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
                }
            for (int64_t i = 0; i < m; i++) {
                int32_t sum = 0;
                for (int q = 0; q < 8; q++) {
                    int e = 0;
                    for (int b = 0; b < 4; b++) {
                        const int64_t j = 32 * w + 4 * q + b;
                        if (j < n && bl_sign_get(S->bits, rb, i, j) < 0) e |= 1 << b;
                    }
                    sum += code[q][e];
                }
                y[i] = fmaf((float)sum, scale, y[i]);
            }
        }
    }
}
