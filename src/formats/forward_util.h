/* The small steps the forward passes of the quantized formats share (elementwise scalings, the
 * token split, packed codes, the dequantize-a-chunk forward of the code formats). Their tensors'
 * storage is the generic code of layer.c. Private to src/formats. */
#ifndef BITLLM_FORMATS_FORWARD_UTIL_H
#define BITLLM_FORMATS_FORWARD_UTIL_H

#include "bitllm/format.h"
#include "bitllm/kernels.h"

/* out[t][j] = x[t][j] · s[j] for a T×n block (out may equal x): the diagonal scalings on the
 * input side (x ⊙ g) and on the output side (y ⊙ h) alike. */
void bl_qc_scale(const float *x, const float *s, int64_t T, int64_t n, float *out,
                 const bl_exec *ex);
/* y (T×m) = h ⊙ (S · (g ⊙ x)) (g or h NULL: none): inside the sign product where the kernel
 * fuses the scalings (bl_sign_matmul_scaled), else three passes with u (T×n floats, unused when
 * g is NULL) holding g ⊙ x. The same bits either way. */
void bl_qc_sign_scaled(const bl_signmat *S, const float *x, const float *g, int64_t T,
                       const float *h, float *y, float *u, const bl_exec *ex);

/* fn(ctx, t0, t1) over the tokens [0, T), split across ex's threads when T > 1 and the work
 * (T·per_token elementwise steps) pays for a dispatch. Each token is computed whole by one call,
 * so results do not depend on the thread count. */
void bl_qc_for_tokens(const bl_exec *ex, int64_t T, int64_t per_token, bl_range_fn fn, void *ctx);

/* Code j of a row of packed `bits`-bit codes (1..8 bits, code j at bit offset j·bits, LSB first;
 * a code may straddle two bytes), and writing one into a zeroed row. */
static inline unsigned bl_qc_code(const uint8_t *row, int64_t j, int bits) {
    uint64_t bit = (uint64_t)j * (uint64_t)bits;
    unsigned sh = (unsigned)(bit & 7);
    const uint8_t *b = row + (bit >> 3);
    unsigned v = b[0] >> sh;
    if (sh + (unsigned)bits > 8) v |= (unsigned)b[1] << (8 - sh);
    return v & ((1u << bits) - 1);
}
static inline void bl_qc_put_code(uint8_t *row, int64_t j, int bits, unsigned c) {
    uint64_t bit = (uint64_t)j * (uint64_t)bits;
    unsigned sh = (unsigned)(bit & 7);
    uint8_t *b = row + (bit >> 3);
    b[0] |= (uint8_t)(c << sh);
    if (sh + (unsigned)bits > 8) b[1] |= (uint8_t)(c >> (8 - sh));
}

/* Dequantizes Ŵ[i][j0 .. j0+len) into w (the format's one dequantization formula). */
typedef void (*bl_qc_dequant_fn)(const void *data, int64_t i, int64_t j0, int64_t len, float *w);
/* y (T×m) = x (T×n) · Ŵᵀ for the code formats: threads split output rows; each row is
 * dequantized BL_QC_CHUNK columns at a time into a stack buffer, used for all T tokens with
 * bl_qc_dot. Small products stay serial (a parallel region costs more than they do). */
#define BL_QC_CHUNK 256
void bl_qc_dequant_forward(const void *data, bl_qc_dequant_fn dequant, int64_t m, int64_t n,
                           const float *x, int64_t T, float *y, const bl_exec *ex);

/* Dot product in a fixed summation order (8 interleaved partial sums, so the compiler can
 * vectorize it without -ffast-math): the same result for any thread count. */
float bl_qc_dot(const float *a, const float *b, int64_t n);

#endif
