/* The row loop shared by half_avx2.c and half_avx512.c, included by each after its own
 * row_group(kind, R, W, m, n, X, T, i0, Y) (so it is compiled once per ISA): threads take groups
 * of BL_HALF_ROW_GROUP rows, and each weight kind gets its own inlined copy of the tiles. */
#ifndef BITLLM_KERNELS_HALF_ROWS_H
#define BITLLM_KERNELS_HALF_ROWS_H

/* Rows i0 .. i0+R−1 (R = BL_HALF_ROW_GROUP or 1) of one weight kind. */
ALWAYS_INLINE void rows(int kind, int R, const void *W, int64_t m, int64_t n, const float *X,
                        int64_t T, int64_t i0, float *Y) {
    switch (kind) {
    case BL_WK_F16: row_group(BL_WK_F16, R, W, m, n, X, T, i0, Y); break;
    case BL_WK_BF16: row_group(BL_WK_BF16, R, W, m, n, X, T, i0, Y); break;
    default: row_group(BL_WK_F32, R, W, m, n, X, T, i0, Y); break;
    }
}

static void matmul(int kind, const void *W, int64_t m, int64_t n, const float *X, int64_t T,
                   float *Y) {
    const int64_t RG = BL_HALF_ROW_GROUP, groups = (m + RG - 1) / RG;
#pragma omp parallel for schedule(static) if (m * n * T >= BL_HALF_PAR_MIN_WORK && groups > 1)
    for (int64_t g = 0; g < groups; g++) {
        const int64_t i0 = g * RG;
        if (i0 + RG <= m) rows(kind, BL_HALF_ROW_GROUP, W, m, n, X, T, i0, Y);
        else
            for (int64_t i = i0; i < m; i++) rows(kind, 1, W, m, n, X, T, i, Y);
    }
}

#endif
