/* Fitting algorithms: turn one dense weight matrix W (m×n, row-major f32) into a quantized format's
 * data (see format.h and include/bitllm/formats/). Every function is deterministic for a given seed
 * and thread count, multi-threaded with OpenMP, and never prints. */
#ifndef BITLLM_FIT_H
#define BITLLM_FIT_H

#include "bitllm/format.h"

BL_API_BEGIN

/* What an ADMM fit of a factored format did, filled when bl_fit_opts.trace is set: the outer ADMM
 * iterations and the objective after each of them. The objective is the relative weighted error the
 * ADMM minimizes, sqrt(‖T − T̂‖² / ‖T‖²) with T = diag(√o)·W·diag(√i) (under an activation metric H
 * the norms are ‖(·)·H^½‖), before the FP16 rounding of the stored vectors; P > 1 paths are refined
 * one after another and their iterations follow each other in obj (each path's objective is the
 * whole residual). */
enum { BL_FIT_TRACE_MAX = 4096 };
/* Where a fit's time goes: the phases of the ADMM (and its start) timed separately. */
typedef enum {
    BL_FIT_PHASE_INIT,    /* importance scaling, truncated SVD start, residuals of other paths */
    BL_FIT_PHASE_GRAM,    /* normal matrices (Grams of the fixed factor) */
    BL_FIT_PHASE_RHS,     /* right-hand sides Fixedᵀ·T (the two m·n·r products) */
    BL_FIT_PHASE_FACTOR,  /* Cholesky factorizations (eigendecompositions under a metric) */
    BL_FIT_PHASE_SOLVE,   /* triangular solves (Sylvester rotations under a metric) */
    BL_FIT_PHASE_PROJECT, /* projections onto the sign ⊙ envelope set, dual updates */
    BL_FIT_PHASES
} bl_fit_phase;
const char *bl_fit_phase_name(bl_fit_phase p);

typedef struct {
    int iters;          /* outer iterations run, all paths together */
    int paths_converged; /* paths stopped by the convergence test (the others reached the cap) */
    int n_obj;          /* entries of obj (the first BL_FIT_TRACE_MAX iterations) */
    double obj[BL_FIT_TRACE_MAX];
    double seconds[BL_FIT_PHASES]; /* wall seconds per phase */
    double flops;       /* floating-point operations of the dense products and factorizations */
} bl_fit_trace;

/* Default stopping of the factored formats' ADMM (iters = 0): the penalty ramps up over BL_FIT_RAMP
 * outer iterations; after that the fit stops once the relative objective e has improved by less
 * than BL_FIT_TOL·e over the last BL_FIT_WINDOW iterations, or after BL_FIT_MAX_ITERS (the
 * reference code's fixed count). */
#define BL_FIT_MAX_ITERS 260
#define BL_FIT_RAMP 190
#define BL_FIT_WINDOW 10
#define BL_FIT_TOL 1e-3

/* Where the factored formats' ADMM switches from the full activation metric to diagonal plus low
 * rank (H_rank = 0). */
#define BL_FIT_H_FULL_MAX 4096
#define BL_FIT_H_RANK 256

typedef struct bl_fit_opts {
    uint64_t seed;
    /* Outer iterations of the factored formats' ADMM: > 0 runs exactly that many with the
     * reference's penalty schedule over them; 0 stops on convergence (see BL_FIT_* above). */
    int iters;
    int max_iters;      /* iters = 0: cap (0 = BL_FIT_MAX_ITERS) */
    double tol;         /* iters = 0: relative improvement threshold (0 = BL_FIT_TOL) */
    int inner;          /* ADMM inner steps per outer iteration; 0 = default (3) */
    bl_fit_trace *trace; /* optional output: iterations and objective trajectory */
    bool nmf;           /* SVID rank-1 by NMF (true) or by SVD power iteration (false) */
    /* Importance weighting (the factored formats, ALGORITHMS.md §4): per-input-channel mean x² (n)
     * and per-output-channel mean squared gradient (m). NULL means all ones. */
    const float *in_importance;
    const float *out_importance;
    /* Hessian-aware fits (onebit and the factored formats): the calibration inputs' covariance H =
     * XᵀX/N (n×n row-major, symmetric PSD). The fit then minimizes the output error
     * tr(diag(o)·E·H·Eᵀ), E = W − Ŵ, o = out_importance (or ones); H's diagonal takes the place of
     * in_importance, which is ignored. NULL = the diagonal importances above. */
    const float *H;
    /* The factored formats' ADMM under H: the form of H's correlation part. 0 = full up to
     * BL_FIT_H_FULL_MAX inputs and diagonal plus rank BL_FIT_H_RANK beyond (each ADMM iteration
     * then costs O(r·n·k) instead of O(r·n²)); k > 0 = diagonal plus rank k (full when k ≥ n).
     * OneBit always uses the full H. */
    int H_rank;
    /* Adam refinement of a fit's envelopes with its signs frozen (0 = off); read by the formats
     * whose opts_used has BL_QP_ADAM_STEPS. */
    int adam_steps;
    float adam_lr;      /* 0 = default */
    bl_progress_fn progress;
    void *progress_ctx;
} bl_fit_opts;

void bl_fit_opts_default(bl_fit_opts *o);

/* Rank-1 non-negative factorization |W| ≈ u vᵀ (u ≥ 0 length m, v ≥ 0 length n), by power
 * iteration (SVD) or multiplicative-update NMF. */
bl_status bl_rank1_abs(const float *W, int64_t m, int64_t n, bool nmf, int iters, float *u,
                       float *v, bl_err *err);

/* Each quantized format declares its fit (bl_fit_<name>) and random factors (bl_random_<name>)
 * with its data struct in include/bitllm/formats/<name>.h. Random factors are for benchmarks
 * only: the exact shapes, middle dimensions and stored bits of the corresponding bl_fit_* result,
 * with uniformly random signs/codes (padding bits 0) and positive FP16 scales chosen so that Ŵ's
 * entries have std ≈ 0.02. No weights are read; the output depends on the seed only (not on the
 * thread count). */

/* ‖W − Ŵ‖_F / ‖W‖_F in double precision. */
double bl_rel_err(const float *W, const float *What, int64_t m, int64_t n);

BL_API_END
#endif
