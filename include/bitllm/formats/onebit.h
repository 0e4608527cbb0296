/* The onebit format (ALGORITHMS.md §2): Ŵ = diag(h)·S·diag(g), optionally followed by a
 * parameter-free LayerNorm over the m outputs. Its data struct, the wrapping of fitted data into
 * a layer (format.h), its fit and its random factors (fit.h). */
#ifndef BITLLM_FORMATS_ONEBIT_H
#define BITLLM_FORMATS_ONEBIT_H

#include "bitllm/fit.h"

BL_API_BEGIN

/* Vectors are FP16 values held as float; the sign matrix uses the canonical packed layout
 * (format.h). The struct owns its buffers unless `view` is set (loaded from a mapped file). */
typedef struct {
    int64_t m, n;
    uint8_t *sign;  /* m × ceil(n/8) */
    float *g;       /* n: input scale */
    float *h;       /* m: output scale */
    bool post_ln;
    bool view;
} bl_onebit;

/* Wraps fitted data into a layer (takes ownership of the struct's buffers). */
bl_status bl_linear_from_onebit(bl_linear *L, bl_onebit *q, bl_err *err);
void bl_onebit_free(bl_onebit *q);

/* OneBit initialization by SVID: S = sign(W), h ⊙ g from the rank-1 factorization of |W|. */
bl_status bl_fit_onebit(const float *W, int64_t m, int64_t n, const bl_fit_opts *o,
                        bl_onebit *out, bl_err *err);
/* Random factors (fit.h), post_ln off as bl_fit_onebit. */
bl_status bl_random_onebit(int64_t m, int64_t n, uint64_t seed, bl_onebit *out, bl_err *err);

BL_API_END
#endif
