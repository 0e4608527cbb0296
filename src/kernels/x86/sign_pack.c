/* Repacking of canonical sign bits into the row-interleaved layout of sign_kernels.h. Portable C
 * (built for baseline x86-64): it runs once per matrix at load time. */
#include "kernels/sign_kernels.h"

#include "bitllm/format.h"

uint32_t bl_sb_canon_word(const uint8_t *row, int64_t n, int64_t w) {
    int64_t row_bytes = bl_sign_row_bytes(n), first = 4 * w;
    int64_t nb = row_bytes - first < 4 ? row_bytes - first : 4;
    uint32_t v = 0;
    for (int64_t k = 0; k < nb; k++) v |= (uint32_t)row[first + k] << (8 * k);
    int64_t valid = n - 32 * w; /* columns of this word inside the matrix */
    if (valid < 32) v &= (UINT32_C(1) << valid) - 1u;
    return v;
}

/* Row by row within each 16-row block, so the canonical rows are read sequentially; blocks are
 * independent (the driver splits them across threads: a 7B model repacks ~0.8 GB at load). Whole
 * words inside the row are read as one little-endian load; the row's last word goes through the
 * masking bl_sb_canon_word. */
void bl_sb_pack_blocks(int64_t m, int64_t n, const uint8_t *bits, uint32_t *packed, int64_t b0,
                       int64_t b1) {
    const bl_sb_geom g = bl_sb_geometry(m, n);
    const int64_t row_bytes = bl_sign_row_bytes(n), full = n / 32; /* words with 32 columns */
    for (int64_t b = b0; b < b1; b++)
        for (int r = 0; r < BL_SB_ROWS; r++) {
            const int64_t i = b * BL_SB_ROWS + r;
            const uint8_t *row = i < m ? bits + i * row_bytes : NULL; /* NULL: padding row */
            for (int64_t c = 0; c < g.chunks; c++) {
                const int64_t cw = bl_sb_chunk_words(&g, c);
                uint32_t *dst = packed + bl_sb_offset(&g, c, b, 0) + r;
                for (int64_t w = 0; w < cw; w++) {
                    const int64_t gw = c * BL_SB_CHUNK_WORDS + w;
                    uint32_t v = 0;
                    if (row && gw < full) {
                        const uint8_t *p = row + 4 * gw;
                        v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                            (uint32_t)p[3] << 24;
                    } else if (row) {
                        v = bl_sb_canon_word(row, n, gw);
                    }
                    dst[w * BL_SB_ROWS] = v;
                }
            }
        }
}

void bl_sb_pack(int64_t m, int64_t n, const uint8_t *bits, uint32_t *packed) {
    bl_sb_pack_blocks(m, n, bits, packed, 0, bl_sb_geometry(m, n).blocks);
}
