/* Scalar reference for the group-quantized (qsym) product: the specification the AVX-512 kernel
 * is tested against. Each weight is dequantized with the one formula of bl_qmat (d·(c − 2^(b−1)),
 * exact in f32), each output accumulated in double in column order and rounded once. */
#include "bitllm/kernels.h"
#include "kernels/qmat_kernels.h"

#include <math.h>

void bl_qmat_matmul_ref(const bl_qmat *Q, const float *X, int64_t T, float *Y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < Q->m; i++) {
            double acc = 0.0;
            for (int64_t j = 0; j < Q->n; j++)
                acc += (double)bl_qmat_weight(Q, i, j) * (double)X[t * Q->n + j];
            Y[t * Q->m + i] = (float)acc;
        }
}

/* ---- BL_TABLES_I8: int8 inputs, exact integer dot products per group ---- */

/* Round to nearest, ties to even, as VCVTPS2DQ in the default mode: adding and subtracting 1.5·2^23
 * leaves the rounded value for |v| < 2^22 (here |v| ≤ 127 + ε); saturated to int8, NaN → 0. */
static int8_t round_i8(float v) {
    if (!(v == v)) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    const volatile float r = v + 12582912.0f; /* volatile: no re-association into v */
    return (int8_t)(int)(r - 12582912.0f);
}

void bl_qmat_i8_prepare(const bl_qmat *Q, const float *X, int64_t T, void *work) {
    const int64_t n = Q->n, nb = bl_qmat_i8_blocks(n), gs = Q->group;
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * n;
        for (int64_t j0 = 0; j0 < nb * BL_QMAT_I8_BLOCK; j0 += gs) { /* group by group */
            const int64_t j1 = j0 + gs < n ? j0 + gs : n;
            float mx = 0.0f; /* the largest |x| of the group (NaN dropped) */
            for (int64_t j = j0; j < j1; j++)
                if (fabsf(x[j]) > mx) mx = fabsf(x[j]);
            const float inv = mx > 0.0f ? 127.0f / mx : 0.0f, d = mx / 127.0f;
            for (int64_t b = j0 / BL_QMAT_I8_BLOCK; b < nb && b * BL_QMAT_I8_BLOCK < j0 + gs; b++) {
                uint8_t *slot = bl_qmat_i8_slot(work, T, b, t);
                for (int p = 0; p < BL_QMAT_I8_BLOCK; p++) {
                    const int64_t j = b * BL_QMAT_I8_BLOCK + bl_qmat_i8_col(Q->bits, p);
                    if (j >= j0 && j < j0 + gs)
                        BL_QMAT_I8_QU(slot)[p] = (uint8_t)((j < n ? round_i8(x[j] * inv) : 0) + 128);
                }
                for (int l = 0; l < 16; l++) { /* lanes of the 32-column halves in the group */
                    const int64_t h0 = b * BL_QMAT_I8_BLOCK + 32 * (l / 8);
                    if (h0 >= j0 && h0 < j0 + gs) BL_QMAT_I8_DX(slot)[l] = h0 < n ? d : 0.0f;
                }
            }
        }
    }
}

bool bl_qmat_i8_ok(const bl_qmat *Q) {
    return (Q->bits == 4 || Q->bits == 8) && Q->group > 0 && Q->group % 32 == 0;
}

size_t bl_qmat_i8_work_bytes(int64_t n, int64_t T) {
    return (size_t)(bl_qmat_i8_blocks(n) * BL_QMAT_I8_SLOT * (T > 0 ? T : 0));
}

/* The specification. Per row and token, 16 f32 lanes: for every block of 64 columns, lane l
 * (its 4 bytes p = 4l..4l+3 of the block's vector, half h = l/8) takes the exact integer
 * s = Σ_p (c_p − 2^(bits−1))·q_p (c: the code of the column; past n q = 0) and adds it as
 * acc[l] = fma((float)s, d_h·dx[l], acc[l]), d_h the row's scale of the half's group (0 past n);
 * blocks in order. Then acc[k] += acc[k+8], acc[k] += acc[k+4], acc[k] += acc[k+2] (k below the
 * step) and y = acc[0] + acc[1]. */
void bl_qmat_matmul_i8_ref(const bl_qmat *Q, const float *X, int64_t T, float *Y, void *work) {
    bl_qmat_i8_prepare(Q, X, T, work);
    bl_qmat_i8_ref_prepared(Q, T, work, Y);
}

void bl_qmat_i8_ref_prepared(const bl_qmat *Q, int64_t T, const void *work, float *Y) {
    const int64_t n = Q->n, m = Q->m, nb = bl_qmat_i8_blocks(n), gs = Q->group;
    const int64_t rb = bl_qmat_row_bytes(n, Q->bits), G = (n + gs - 1) / gs;
    const int off = 1 << (Q->bits - 1);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < m; i++) {
            const uint8_t *row = Q->qs + i * rb;
            float acc[16] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *slot = bl_qmat_i8_slot((void *)work, T, b, t);
                for (int l = 0; l < 16; l++) {
                    int32_t s = 0;
                    for (int p = 4 * l; p < 4 * l + 4; p++) {
                        const int64_t j = b * BL_QMAT_I8_BLOCK + bl_qmat_i8_col(Q->bits, p);
                        const int c = j >= n ? off
                                      : Q->bits == 8 ? row[j]
                                                     : (row[j >> 1] >> (4 * (j & 1))) & 15;
                        s += (c - off) * (BL_QMAT_I8_QU(slot)[p] - 128);
                    }
                    const int64_t j0 = b * BL_QMAT_I8_BLOCK + 32 * (l / 8);
                    const float dh = j0 < n ? Q->d[i * G + j0 / gs] : 0.0f;
                    acc[l] = fmaf((float)s, dh * BL_QMAT_I8_DX(slot)[l], acc[l]);
                }
            }
            for (int w = 8; w >= 2; w /= 2)
                for (int k = 0; k < w; k++) acc[k] += acc[k + w];
            Y[t * m + i] = acc[0] + acc[1];
        }
}
