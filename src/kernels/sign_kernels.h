/* Private interface between the kernel dispatcher and the per-ISA sign-matrix kernels.
 *
 * Packed ("prepared") layout, shared by the AVX2 and AVX-512 kernels so a matrix prepared under
 * one level still runs under the other: the m rows are cut into blocks of BL_SB_ROWS = 16 rows
 * (the last block padded with zero rows) and the columns into 32-column words (the last word
 * padded with zero bits). For a word, a block stores the 16 rows' uint32 values side by side, so
 * one 512-bit load puts row r of the block in lane r: the kernels keep rows in vector lanes and
 * never need a horizontal sum. Words are grouped into chunks of BL_SB_CHUNK_WORDS; the buffer is
 * chunk-major (chunk, then block, then word in the chunk), so a kernel that sweeps all rows of
 * one column chunk — to reuse a lookup table built for that chunk — reads memory sequentially.
 * The value of a uint32 word is bit k = column 32·w + k (canonical bit order, little-endian). */
#ifndef BITLLM_KERNELS_SIGN_KERNELS_H
#define BITLLM_KERNELS_SIGN_KERNELS_H

#include "bitllm/kernels.h"
#include "kernels/cpu_features.h"

#define BL_SB_ROWS 16
#define BL_SB_CHUNK_WORDS 16 /* 512 columns per chunk (256 and 1024 measured the same) */
#define BL_SB_CHUNK_COLS (32 * BL_SB_CHUNK_WORDS)
/* How far ahead the AVX2 and AVX-512 kernels prefetch the packed stream into L1 (one prefetch per
 * 64 bytes). When the signs do not fit in the caches (32768×32768, 128 MiB) the hardware
 * prefetcher alone gave 4.3-5.7 GB/s; 6 KiB ahead gave 10-12 GB/s (4, 8 and 12 KiB: 7-9 GB/s) on
 * a shared, loaded machine (AVX2: 4.4-4.7 → 6.6-7.4 GB/s). No cost in cache. */
#define BL_SB_PREFETCH_BYTES 6144

/* Geometry of the packed layout for an m×n matrix. */
typedef struct {
    int64_t blocks; /* ceil(m/16) */
    int64_t words;  /* ceil(n/32) */
    int64_t chunks; /* ceil(words/BL_SB_CHUNK_WORDS) */
} bl_sb_geom;

static inline bl_sb_geom bl_sb_geometry(int64_t m, int64_t n) {
    bl_sb_geom g;
    g.blocks = (m + BL_SB_ROWS - 1) / BL_SB_ROWS;
    g.words = (n + 31) / 32;
    g.chunks = (g.words + BL_SB_CHUNK_WORDS - 1) / BL_SB_CHUNK_WORDS;
    return g;
}
/* Words in chunk c (the last chunk may be short). */
static inline int64_t bl_sb_chunk_words(const bl_sb_geom *g, int64_t c) {
    int64_t left = g->words - c * BL_SB_CHUNK_WORDS;
    return left < BL_SB_CHUNK_WORDS ? left : BL_SB_CHUNK_WORDS;
}
/* Index (in uint32 units) of lane 0 of word w of chunk c, block b. */
static inline int64_t bl_sb_offset(const bl_sb_geom *g, int64_t c, int64_t b, int64_t w) {
    return ((c * BL_SB_CHUNK_WORDS * g->blocks) + b * bl_sb_chunk_words(g, c) + w) * BL_SB_ROWS;
}
/* Bytes of the packed buffer (blocks·words·16 uint32). */
static inline size_t bl_sb_packed_bytes(const bl_sb_geom *g) {
    return (size_t)g->blocks * (size_t)g->words * BL_SB_ROWS * sizeof(uint32_t);
}

/* Fills `packed` (bl_sb_packed_bytes) from the canonical bits for 16-row blocks [b0, b1)
 * (portable C, sign_pack.c); the driver splits blocks across threads. */
void bl_sb_pack_blocks(int64_t m, int64_t n, const uint8_t *bits, uint32_t *packed, int64_t b0,
                       int64_t b1);
/* All blocks, on the calling thread. */
void bl_sb_pack(int64_t m, int64_t n, const uint8_t *bits, uint32_t *packed);
/* Word w (columns 32w..32w+31) of one canonical row of n columns; bits past column n are returned
 * as 0 whatever the padding holds. Never reads past the row's ceil(n/8) bytes. */
uint32_t bl_sb_canon_word(const uint8_t *row, int64_t n, int64_t w);

/* ---- micro-kernels: what the ISA files export ----
 * One product, Y (T×m) = X·Sᵀ or, transposed, Z (T×n) = V·S. The driver (dispatch.c) owns the
 * threading: it cuts the output into units — 16-row blocks of Y, 64-column blocks of Z — and hands
 * each thread a contiguous range [lo, hi) of units, so a unit is computed the same way whatever
 * the thread count. `tot` holds Σ of each token's inputs (the mask variants' y = Σx − 2·Σ_sel x),
 * computed once by the driver, and is NULL for the other variants. */
typedef struct {
    const bl_signmat *S;
    const uint32_t *packed; /* S's packed copy, or NULL: read the canonical bits */
    const float *in;        /* X (T×n) or V (T×m) */
    int64_t T;
    float *out;             /* Y (T×m) or Z (T×n) */
    const float *tot;       /* T sums of `in` rows (variants with needs_tot) */
    /* Diagonal scalings folded into the product (variants with fuses_scales; else NULL): Y[t][i] =
     * out_scale[i]·Σ_j S[i][j]·(X[t][j]·in_scale[j]), each product rounded to f32 as the separate
     * passes round it (the input's when the tables are built, the output's after the last
     * chunk), so the bits are those of scale, product, scale. */
    const float *in_scale;  /* n, or NULL */
    const float *out_scale; /* m, or NULL */
} bl_sign_job;

#define BL_SIGN_ZUNIT 64 /* columns of Z per unit of the transposed kernels */
typedef void (*bl_sign_range_fn)(const bl_sign_job *j, int64_t lo, int64_t hi);

/* AVX-512 (x86/sign_avx512.c, x86/sign_t_avx512.c) */
void bl_sign_avx512_lut(const bl_sign_job *j, int64_t lo, int64_t hi);  /* packed or gather */
void bl_sign_avx512_mask(const bl_sign_job *j, int64_t lo, int64_t hi); /* needs_tot */
void bl_sign_t_avx512_lut(const bl_sign_job *j, int64_t lo, int64_t hi); /* packed, GFNI */
void bl_sign_t_avx512_mask(const bl_sign_job *j, int64_t lo, int64_t hi); /* needs_tot */
/* AVX-512 with VBMI and VNNI (x86/sign_i8_avx512vbmi.c): BL_TABLES_I8, packed only */
void bl_sign_avx512_lut_i8(const bl_sign_job *j, int64_t lo, int64_t hi);
/* AVX2 (x86/sign_i8_avx2.c): BL_TABLES_I8, packed only; fuses in_scale / out_scale */
void bl_sign_avx2_lut_i8(const bl_sign_job *j, int64_t lo, int64_t hi);
/* AVX2 (x86/sign_avx2.c) */
void bl_sign_avx2_lut(const bl_sign_job *j, int64_t lo, int64_t hi);  /* packed or gather */
void bl_sign_avx2_mask(const bl_sign_job *j, int64_t lo, int64_t hi); /* needs_tot */
void bl_sign_t_avx2_mask(const bl_sign_job *j, int64_t lo, int64_t hi); /* needs_tot */

#endif
