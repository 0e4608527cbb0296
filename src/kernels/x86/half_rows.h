/* The row loop shared by half_avx2.c and half_avx512.c, included by each after its own
 * tile(kind, R, T, W, m, n, X, i0, t0, Y) and its tile sizes RT (rows) and TT (tokens), so it is
 * compiled once per ISA, with an inlined copy of the tiles per weight kind. */
#ifndef BITLLM_KERNELS_HALF_ROWS_H
#define BITLLM_KERNELS_HALF_ROWS_H

/* All tokens of rows i0 .. i0+R−1. */
ALWAYS_INLINE void rows(int kind, int R, const void *W, int64_t m, int64_t n, const float *X,
                        int64_t T, int64_t i0, float *Y) {
    int64_t t0 = 0;
    for (; t0 + TT <= T; t0 += TT) tile(kind, R, TT, W, m, n, X, i0, t0, Y);
    if (T - t0 == 2) tile(kind, R, 2, W, m, n, X, i0, t0, Y);
    if (T - t0 == 1) tile(kind, R, 1, W, m, n, X, i0, t0, Y);
}

ALWAYS_INLINE void run(int kind, const bl_half_job *j, int64_t i0, int64_t i1) {
    if (j->T == 1) { /* decode: one row at a time, one stream */
        for (int64_t i = i0; i < i1; i++) tile(kind, 1, 1, j->W, j->m, j->n, j->X, i, 0, j->Y);
        return;
    }
    int64_t i = i0;
    for (; i + RT <= i1; i += RT) rows(kind, RT, j->W, j->m, j->n, j->X, j->T, i, j->Y);
    for (; i < i1; i++) rows(kind, 1, j->W, j->m, j->n, j->X, j->T, i, j->Y);
}

/* Rows [BL_HALF_ROW_GROUP·u0, BL_HALF_ROW_GROUP·u1) ∩ [0, m) of the job. */
static void run_units(const bl_half_job *j, int64_t u0, int64_t u1) {
    const int64_t i0 = u0 * BL_HALF_ROW_GROUP;
    const int64_t i1 = u1 * BL_HALF_ROW_GROUP < j->m ? u1 * BL_HALF_ROW_GROUP : j->m;
    switch (j->kind) {
    case BL_WK_F16: run(BL_WK_F16, j, i0, i1); break;
    case BL_WK_BF16: run(BL_WK_BF16, j, i0, i1); break;
    default: run(BL_WK_F32, j, i0, i1); break;
    }
}

#endif
