/* Private interface between the dispatcher and the per-ISA group-quantized (qsym) kernels: the
 * ISA file exports a micro-kernel over ranges of row units; the driver in dispatch.c splits the
 * units across threads. */
#ifndef BITLLM_KERNELS_QMAT_KERNELS_H
#define BITLLM_KERNELS_QMAT_KERNELS_H

#include "bitllm/kernels.h"
#include "kernels/cpu_features.h"

#define BL_QMAT_ROWS 4 /* rows of Ŵ per unit */

typedef struct {
    const bl_qmat *Q;
    const float *X;
    int64_t T;
    float *Y;
} bl_qmat_job;

/* Rows [BL_QMAT_ROWS·u0, BL_QMAT_ROWS·u1) ∩ [0, m) of Y, every token (bits 4 or 8, group a
 * multiple of 16: bl_qmat_simd_ok). Each level sums in its own fixed order (16 lanes for
 * AVX-512, 8 for AVX2), so the two may differ in the last bits. */
void bl_qmat_avx512(const bl_qmat_job *j, int64_t u0, int64_t u1);
void bl_qmat_avx2(const bl_qmat_job *j, int64_t u0, int64_t u1);

/* BL_TABLES_I8 (bl_qmat_matmul_i8). The inputs are prepared once per call, by
 * bl_qmat_i8_prepare, into work: for each block b of 64 columns (n rounded up to 64) and each
 * token t, a slot of 128 bytes at (b·T + t)·128 (a tile's tokens side by side, at fixed offsets):
 *   qu[64]     the int8 input q of each column plus 128 (unsigned), in the order of the block's
 *              codes in a 64-byte vector: 8 bits: column 64b + p at byte p; 4 bits: the block's
 *              32 code bytes unpacked as [low nibbles of bytes 0-15 | high | low of bytes 16-31 |
 *              high], so byte p holds column 64b + 32·(p/32) + 2·(p mod 16) + (p/16 mod 2);
 *   dx[16]     f32 per dword lane (4 bytes): the input scale of the group its 32-column half lies
 *              in, 0 for a half past n.
 * Columns past n have q = 0. A lane's integer is Σ (c − 2^(bits−1))·q over its 4 bytes: VPDPBUSD
 * of qu with the signed codes c − 2^(bits−1), minus 128·Σ (c − 2^(bits−1)) (a row's, shared by
 * every token). */
#define BL_QMAT_I8_BLOCK 64
#define BL_QMAT_I8_SLOT 128

static inline int64_t bl_qmat_i8_blocks(int64_t n) {
    return (n + BL_QMAT_I8_BLOCK - 1) / BL_QMAT_I8_BLOCK;
}
/* Column of byte p of a block's vector (above), relative to the block. */
static inline int bl_qmat_i8_col(int bits, int p) {
    return bits == 8 ? p : 32 * (p >> 5) + 2 * (p & 15) + ((p >> 4) & 1);
}
static inline uint8_t *bl_qmat_i8_slot(void *work, int64_t T, int64_t b, int64_t t) {
    return (uint8_t *)work + (b * T + t) * BL_QMAT_I8_SLOT;
}
#define BL_QMAT_I8_QU(slot) ((uint8_t *)(void *)(slot))
#define BL_QMAT_I8_DX(slot) ((float *)(void *)((slot) + 64))
/* The T tokens of X into work (the rounding of the specification; kernels/ref/qmat_ref.c). */
void bl_qmat_i8_prepare(const bl_qmat *Q, const float *X, int64_t T, void *work);
/* The specification's products on inputs already in work (bl_qmat_matmul_i8_ref is prepare, then
 * this): what every kernel must equal bit for bit on any prepared bytes, including inputs q =
 * −128 that the rounding never produces. */
void bl_qmat_i8_ref_prepared(const bl_qmat *Q, int64_t T, const void *work, float *Y);

typedef struct {
    const bl_qmat *Q;
    int64_t T;
    void *work; /* prepared inputs */
    float *Y;
} bl_qmat_i8_job;

/* Rows [BL_QMAT_ROWS·u0, BL_QMAT_ROWS·u1) ∩ [0, m) of Y, every token: AVX-512 VNNI, and AVX2
 * (the lane integers by VPMADDUBSW / VPMADDWD instead of VPDPBUSD). Both equal
 * bl_qmat_matmul_i8_ref bit for bit. */
void bl_qmat_i8_avx512(const bl_qmat_i8_job *j, int64_t u0, int64_t u1);
void bl_qmat_i8_avx2(const bl_qmat_i8_job *j, int64_t u0, int64_t u1);

#endif
