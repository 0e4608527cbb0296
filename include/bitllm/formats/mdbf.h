/* The mdbf format (multi-envelope double binary factorization, ALGORITHMS.md §5):
 *     Ŵ = Σ_p F_p·G_p,   F = S_A ⊙ (A_env·Q_Uᵀ) (m×r),   G = S_B ⊙ (Q_V·B_envᵀ) (r×n)
 * over P paths, middle dimension r = params.mid, envelope rank l = params.rank_l, P =
 * params.paths. Its data struct, the wrapping of fitted data into a layer (format.h), its fit and
 * its random factors (fit.h). */
#ifndef BITLLM_FORMATS_MDBF_H
#define BITLLM_FORMATS_MDBF_H

#include "bitllm/fit.h"

BL_API_BEGIN

/* One path. Vectors are FP16 values held as float; sign matrices use the canonical packed
 * layout (format.h). */
typedef struct {
    uint8_t *SA;    /* m × ceil(r/8) */
    uint8_t *SB;    /* r × ceil(n/8) */
    float *A_env;   /* m × l (row-major) */
    float *Q_U;     /* r × l */
    float *Q_V;     /* r × l */
    float *B_env;   /* n × l */
} bl_mdbf_path;

/* The struct owns its buffers unless `view` is set (loaded from a mapped file). */
typedef struct {
    int64_t m, n, r;
    int l, P;
    bl_mdbf_path *paths; /* P entries */
    bool view;
} bl_mdbf;

/* Wraps fitted data into a layer (takes ownership of the struct's buffers). */
bl_status bl_linear_from_mdbf(bl_linear *L, bl_mdbf *q, bl_err *err);
void bl_mdbf_free(bl_mdbf *q);

/* Closed-form SVD initialization, P paths on residuals, ADMM refinement with the rank-l
 * projection, optional Adam on the envelopes (fit.adam_steps; ALGORITHMS.md §5). For l = 1 each
 * path is stored as dbf stores its layer (Q_U = μ, Q_V = 1), so bl_fit_mdbf(l = 1, P = 1) equals
 * bl_fit_dbf's result. */
bl_status bl_fit_mdbf(const float *W, int64_t m, int64_t n, int64_t r, int l, int P,
                      const bl_fit_opts *o, bl_mdbf *out, bl_err *err);
/* Random factors (fit.h) of middle dimension r, envelope rank l, P paths. */
bl_status bl_random_mdbf(int64_t m, int64_t n, int64_t r, int l, int P, uint64_t seed,
                         bl_mdbf *out, bl_err *err);

BL_API_END
#endif
