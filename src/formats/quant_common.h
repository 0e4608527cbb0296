/* Helpers shared by the quantized formats (onebit, dbf, mdbf, rtn): tensor naming, F16 vector
 * and packed-bit save/load with exact dtype/shape validation, and the small elementwise steps of
 * the forward passes. Private to src/formats. */
#ifndef BITLLM_FORMATS_QUANT_COMMON_H
#define BITLLM_FORMATS_QUANT_COMMON_H

#include "bitllm/format.h"
#include "bitllm/kernels.h"

/* "<prefix>.<part>" into buf (BL_MAX_NAME bytes); fails when the name does not fit. */
bl_status bl_qc_name(char *buf, const char *prefix, const char *part, bl_err *err);

/* Saves a rows×cols float matrix (cols == 0: a vector of `rows`) as F16. The values must already
 * be FP16-representable (see bl_qc_round_f16), so the conversion is exact. */
bl_status bl_qc_save_f16(bl_st_writer *w, const char *prefix, const char *part, const float *v,
                         int64_t rows, int64_t cols, bl_err *err);
/* Saves rows×row_bytes packed bytes as U8 {rows, row_bytes}. */
bl_status bl_qc_save_u8(bl_st_writer *w, const char *prefix, const char *part,
                        const uint8_t *bits, int64_t rows, int64_t row_bytes, bl_err *err);

/* True when <prefix>.<part> exists (optional tensors). */
bool bl_qc_has(const bl_tensor_set *ts, const char *prefix, const char *part);
/* Packed rows: U8 {rows, ceil(used_bits/8)} returned as a view into ts. Rejects set padding bits
 * (bits past used_bits in each row's last byte), which the canonical layout requires to be 0. */
bl_status bl_qc_load_bits(const bl_tensor_set *ts, const char *prefix, const char *part,
                          int64_t rows, int64_t used_bits, const uint8_t **out, bl_err *err);
/* F16 {rows, cols} (cols == 0: F16 {rows}) converted into a new f32 buffer (caller frees).
 * Non-finite values are rejected. */
bl_status bl_qc_load_f16(const bl_tensor_set *ts, const char *prefix, const char *part,
                         int64_t rows, int64_t cols, float **out, bl_err *err);

/* Rounds n values to FP16 in place (what saving would store) so that a layer built from fitted
 * data and its saved/loaded copy compute identical outputs; fails on values that overflow FP16. */
bl_status bl_qc_round_f16(float *v, int64_t n, const char *what, bl_err *err);

/* Fails when any row of a packed matrix has bits set past used_bits (the canonical layout keeps
 * padding bits 0; popcount-style kernels would count them). */
bl_status bl_qc_check_padding(const uint8_t *bits, int64_t rows, int64_t used_bits,
                              const char *what, bl_err *err);

/* Checks that a buffer pointer is present. */
bl_status bl_qc_need(const void *p, const char *what, bl_err *err);

/* A sign matrix wrapped for the kernels and repacked for the SIMD kernels when the CPU has them
 * (whatever ISA a later bl_exec names, the packed copy serves it; the reference reads the bits).
 * pool (may be NULL) splits the repacking. */
bl_status bl_qc_signmat(bl_signmat *S, int64_t rows, int64_t cols, const uint8_t *bits,
                        bl_pool *pool, bl_err *err);
/* After a load: once a matrix is repacked, its canonical bits are read again only by to_dense,
 * save and the scalar reference, so the memory holding them is given back (the pages are read
 * from the file again if touched; see bl_tensor_set_release). Halves the resident size of a
 * loaded 1-bit model, mapped or read into private memory. */
void bl_qc_release_bits(const bl_tensor_set *ts, const bl_signmat *S);

/* out[t][j] = x[t][j] · s[j] for a T×n block (out may equal x): the diagonal scalings on the
 * input side (x ⊙ g) and on the output side (y ⊙ h) alike. */
void bl_qc_scale(const float *x, const float *s, int64_t T, int64_t n, float *out,
                 const bl_exec *ex);

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
