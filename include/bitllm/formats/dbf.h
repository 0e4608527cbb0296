/* The dbf format (double binary factorization, ALGORITHMS.md §4): Ŵ = diag(a)·A·diag(μ)·B·diag(b)
 * with sign matrices A (m×k) and B (k×n), k = params.mid. Its data struct, the wrapping of fitted
 * data into a layer (format.h), its fit and its random factors (fit.h). */
#ifndef BITLLM_FORMATS_DBF_H
#define BITLLM_FORMATS_DBF_H

#include "bitllm/fit.h"

BL_API_BEGIN

/* Vectors are FP16 values held as float; sign matrices use the canonical packed layout
 * (format.h). The struct owns its buffers unless `view` is set (loaded from a mapped file). */
typedef struct {
    int64_t m, n, k;
    uint8_t *A;     /* m × ceil(k/8) */
    uint8_t *B;     /* k × ceil(n/8) */
    float *a;       /* m */
    float *mu;      /* k */
    float *b;       /* n */
    bool view;
} bl_dbf;

/* Wraps fitted data into a layer (takes ownership of the struct's buffers). */
bl_status bl_linear_from_dbf(bl_linear *L, bl_dbf *q, bl_err *err);
void bl_dbf_free(bl_dbf *q);

/* DBF by importance-weighted alternating ADMM with the SVID projection (ALGORITHMS.md §4). */
bl_status bl_fit_dbf(const float *W, int64_t m, int64_t n, int64_t k, const bl_fit_opts *o,
                     bl_dbf *out, bl_err *err);
/* Random factors (fit.h) of middle dimension k. */
bl_status bl_random_dbf(int64_t m, int64_t n, int64_t k, uint64_t seed, bl_dbf *out, bl_err *err);

BL_API_END
#endif
