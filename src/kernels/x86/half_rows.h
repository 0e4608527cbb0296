/* The row loop shared by half_avx2.c and half_avx512.c, included by each after its own
 * tile(kind, R, T, W, m, n, X, i0, t0, Y, c0, c1) and its tile sizes RT (rows) and TT (tokens),
 * so it is compiled once per ISA, with an inlined copy of the tiles per weight kind and size.
 *
 * Columns are taken in blocks of BL_HALF_KBLOCK; each output is the sum, in block order, of its
 * blocks' partial sums. Batches sweep, per block of TB tokens and per column block, every row of
 * the thread's range: that column block of the TB tokens of X (TB·BL_HALF_KBLOCK floats, 252-336
 * KiB) stays in L2 across the rows, and the RT rows' slice of W in L1 across the token tiles.
 * Each tile sweeping whole rows instead (the earlier kernel), both streams came from L2 or beyond
 * at every FMA: 100-120 GFLOP/s on 4096×4096 F16 at T = 64-512 on one Zen 5 thread against
 * 175-195 for the same tiles on operands that fit in L1. */
#ifndef BITLLM_KERNELS_HALF_ROWS_H
#define BITLLM_KERNELS_HALF_ROWS_H

#define TB (21 * TT) /* tokens per block */
/* Batches whose X is at most this many bytes go row block by row block (X stays in L2 whole):
 * at T = 2-8 the column-block-major sweep was 1.3-1.8× slower (4096×4096 F16, one thread); from
 * T = 16 to 64 both sweeps ran alike. */
#define HALF_X_L2 (1 << 20)

/* tile() for nt ≤ TT tokens, nt known only at run time. */
ALWAYS_INLINE void tile_n(int kind, int R, int64_t nt, const bl_half_job *j, int64_t i0,
                          int64_t t0, int64_t c0, int64_t c1) {
#define TILE_T(k) tile(kind, R, TT >= (k) ? (k) : 1, j->W, j->m, j->n, j->X, i0, t0, j->Y, c0, c1)
    switch (nt) {
    case 1: TILE_T(1); break;
    case 2: TILE_T(2); break;
    case 3: TILE_T(3); break;
    case 4: TILE_T(4); break;
    case 5: TILE_T(5); break;
    default: TILE_T(TT); break;
    }
#undef TILE_T
}

/* Columns [c0, c1) of tokens [ta, tb) of rows i0 .. i0+R−1. Each token tile also prefetches
 * its share of the next rows' slice, rows [p0, p1) over the same columns, all of it within the
 * first tiles: the slices are RT streams of a few KiB, too short for the hardware prefetcher to
 * ramp up (4096×4096 F16, T = 512, one thread: 113 GFLOP/s without, 136 with; spread over all
 * the tiles, 128). */
ALWAYS_INLINE void rows(int kind, int R, const bl_half_job *j, int64_t i0, int64_t ta,
                        int64_t tb, int64_t c0, int64_t c1, int64_t p0, int64_t p1) {
    const int64_t es = kind == BL_WK_F32 ? 4 : 2, row_lines = ((c1 - c0) * es + 63) / 64;
    const int64_t lines = (p1 - p0) * row_lines, tiles = (tb - ta + TT - 1) / TT;
    const int64_t per_tile = (lines + tiles - 1) / tiles;
    int64_t line = 0;
    for (int64_t t0 = ta; t0 < tb; t0 += TT) {
        for (const int64_t end = line + per_tile < lines ? line + per_tile : lines; line < end;
             line++)
            _mm_prefetch((const char *)j->W + ((p0 + line / row_lines) * j->n + c0) * es +
                             (line % row_lines) * 64,
                         _MM_HINT_T0);
        tile_n(kind, R, tb - t0 < TT ? tb - t0 : TT, j, i0, t0, c0, c1);
    }
}

/* End of the column block that starts at c0. */
ALWAYS_INLINE int64_t block_end(int64_t c0, int64_t n) {
    return n - c0 < BL_HALF_KBLOCK ? n : c0 + BL_HALF_KBLOCK;
}

ALWAYS_INLINE void run(int kind, const bl_half_job *j, int64_t i0, int64_t i1) {
    const int64_t n = j->n;
    if (j->T == 1) { /* decode: one row at a time, one stream */
        for (int64_t i = i0; i < i1; i++) {
            int64_t c0 = 0;
            do tile(kind, 1, 1, j->W, j->m, n, j->X, i, 0, j->Y, c0, block_end(c0, n));
            while ((c0 += BL_HALF_KBLOCK) < n);
        }
        return;
    }
    if (j->T * n * (int64_t)sizeof(float) <= HALF_X_L2) {
        /* X fits in L2: RT rows at a time through all their column blocks, long streams */
        int64_t i = i0;
        for (; i + RT <= i1; i += RT) {
            int64_t c0 = 0;
            do rows(kind, RT, j, i, 0, j->T, c0, block_end(c0, n), 0, 0);
            while ((c0 += BL_HALF_KBLOCK) < n);
        }
        for (; i < i1; i++) {
            int64_t c0 = 0;
            do rows(kind, 1, j, i, 0, j->T, c0, block_end(c0, n), 0, 0);
            while ((c0 += BL_HALF_KBLOCK) < n);
        }
        return;
    }
    for (int64_t ta = 0; ta < j->T; ta += TB) {
        const int64_t tb = j->T - ta < TB ? j->T : ta + TB;
        int64_t c0 = 0;
        do { /* an empty row (n = 0) still passes once, to store the zeros */
            const int64_t c1 = block_end(c0, n);
            int64_t i = i0; /* ranges are whole BL_HALF_ROW_GROUPs, multiples of RT, but at m */
            for (; i + RT <= i1; i += RT)
                rows(kind, RT, j, i, ta, tb, c0, c1, i + RT, i + 2 * RT <= i1 ? i + 2 * RT : i1);
            for (; i < i1; i++) rows(kind, 1, j, i, ta, tb, c0, c1, i + 1, i + 1 < i1 ? i + 2 : i1);
        } while ((c0 += BL_HALF_KBLOCK) < n);
    }
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
