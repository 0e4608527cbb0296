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

void bl_sb_pack(int64_t m, int64_t n, const uint8_t *bits, uint32_t *packed) {
    const bl_sb_geom g = bl_sb_geometry(m, n);
    const int64_t row_bytes = bl_sign_row_bytes(n);
    for (int64_t c = 0; c < g.chunks; c++) {
        const int64_t cw = bl_sb_chunk_words(&g, c);
        for (int64_t b = 0; b < g.blocks; b++) {
            for (int64_t w = 0; w < cw; w++) {
                uint32_t *dst = packed + bl_sb_offset(&g, c, b, w);
                const int64_t gw = c * BL_SB_CHUNK_WORDS + w;
                for (int r = 0; r < BL_SB_ROWS; r++) {
                    int64_t i = b * BL_SB_ROWS + r;
                    dst[r] = i < m ? bl_sb_canon_word(bits + i * row_bytes, n, gw) : 0;
                }
            }
        }
    }
}
