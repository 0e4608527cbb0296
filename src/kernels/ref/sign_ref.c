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

/* BL_TABLES_I8, the specification (kernels.h). Per token, per block of BL_SIGN_I8_BLOCK = 512
 * columns (16 words of 32; columns past n read as 0), per 32-column word w of the block, per
 * 4-column group q of the word (inputs v0..v3):
 *   entry(e) = ((s0·v0 + s1·v1) + s2·v2) + s3·v3 in f32, s_b = −1 where bit b of e is set;
 *   a_q      = ((|v0| + |v1|) + |v2|) + |v3| (the largest |entry|), max_w = max_q a_q,
 *   M        = max_w max_w (the block's; NaN-dropping maxima throughout), taken as 0 below
 *              2^-100 (where 127·255/M would overflow; such a block adds nothing);
 *   k        = 255 / M (0 when M = 0), unit = M / 32385 (= M / (127·255));
 *   mult_w   = ceil(max_w · k) clamped to [1, 255] (an integer: the word's step is mult_w·unit,
 *              the smallest multiple of the unit that keeps its codes within ±127);
 *   inv_w    = (127·k) / mult_w;
 *   code     = round-half-even(entry · inv_w), in [−127, 127] (−128 for a NaN entry, as the
 *              SIMD conversion gives).
 * A row's block sum is the exact int32 Σ_w mult_w · Σ_q code(nibble q of the row's word) (at
 * most 16·8·127·255 < 2^24 in magnitude, so converting it to f32 is exact), and the output is
 * y = fma(block sum, unit, y) over the blocks in column order, from +0. */
void bl_sign_matmul_i8_ref(const bl_signmat *S, const float *X, int64_t T, float *Y) {
    enum { BW = BL_SIGN_I8_BLOCK / 32 }; /* words per block */
    const int64_t m = S->m, n = S->n, rb = bl_sign_row_bytes(n), words = (n + 31) / 32;
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * n;
        float *y = Y + t * m; /* each row's running sum, block by block */
        for (int64_t i = 0; i < m; i++) y[i] = 0.0f;
        for (int64_t w0 = 0; w0 < words; w0 += BW) {
            const int64_t bw = words - w0 < BW ? words - w0 : BW;
            float v[BW][8][4], maxw[BW], M = 0.0f;
            for (int64_t w = 0; w < bw; w++) {
                maxw[w] = 0.0f;
                for (int q = 0; q < 8; q++) {
                    for (int b = 0; b < 4; b++) {
                        const int64_t j = 32 * (w0 + w) + 4 * q + b;
                        v[w][q][b] = j < n ? x[j] : 0.0f;
                    }
                    const float a = ((fabsf(v[w][q][0]) + fabsf(v[w][q][1])) + fabsf(v[w][q][2])) +
                                    fabsf(v[w][q][3]);
                    maxw[w] = a > maxw[w] ? a : maxw[w];
                }
                M = maxw[w] > M ? maxw[w] : M;
            }
            if (M < 0x1p-100f) M = 0.0f; /* 127·255 / M would overflow: the block counts as 0 */
            const float k = M > 0.0f ? 255.0f / M : 0.0f, k127 = 127.0f * k, unit = M / 32385.0f;
            int32_t mult[BW];
            int8_t code[BW][8][16];
            for (int64_t w = 0; w < bw; w++) {
                const float r = ceilf(maxw[w] * k);
                mult[w] = r >= 255.0f ? 255 : r >= 1.0f ? (int32_t)r : 1;
                const float inv = k127 / (float)mult[w];
                for (int q = 0; q < 8; q++)
                    for (int e = 0; e < 16; e++) {
                        float s = (e & 1) ? -v[w][q][0] : v[w][q][0];
                        s = s + ((e & 2) ? -v[w][q][1] : v[w][q][1]);
                        s = s + ((e & 4) ? -v[w][q][2] : v[w][q][2]);
                        s = s + ((e & 8) ? -v[w][q][3] : v[w][q][3]);
                        const float r2 = nearbyintf(s * inv);
                        code[w][q][e] = (int8_t)(r2 != r2       ? -128
                                                 : r2 > 127.0f  ? 127
                                                 : r2 < -127.0f ? -127
                                                                : r2);
                    }
            }
            for (int64_t i = 0; i < m; i++) {
                int32_t sum = 0;
                for (int64_t w = 0; w < bw; w++) {
                    int32_t ws = 0;
                    for (int q = 0; q < 8; q++) {
                        int e = 0;
                        for (int b = 0; b < 4; b++) {
                            const int64_t j = 32 * (w0 + w) + 4 * q + b;
                            if (j < n && bl_sign_get(S->bits, rb, i, j) < 0) e |= 1 << b;
                        }
                        ws += code[w][q][e];
                    }
                    sum += mult[w] * ws;
                }
                y[i] = fmaf((float)sum, unit, y[i]);
            }
        }
    }
}
