/* Private helpers of the fitting code (src/quant). Everything here works on row-major f32
 * matrices, uses BLAS/LAPACK for anything O(m·n·k), and is deterministic for a given thread count.
 *
 * Naming: a matrix "r×c" is r rows of c floats. Functions that may fail return a bl_status and
 * fill err; the others cannot fail (their buffers come from the caller). */
#ifndef BITLLM_QUANT_QF_INTERNAL_H
#define BITLLM_QUANT_QF_INTERNAL_H

#include "bitllm/fit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Threading: the iterative solvers (admm.c, envelope.c, mdbf.c's Adam) get their parallelism from
 * multi-threaded BLAS only. Their elementwise loops alternate with BLAS calls many times per
 * second, and OpenMP workers spin-waiting after such a loop compete with the BLAS threads for the
 * same cores (measured: 3-4x slower fits on 2 cores); the loops are memory-bound and cheap next to
 * the O(m·n·k) products, so they run on the calling thread. One-shot passes (RTN, sign packing of
 * the input, importance scaling) use OpenMP. */

/* ---- linalg.c: thin layer over CBLAS / LAPACKE ---- */

/* C = alpha·op(A)·op(B) + beta·C, op(X) = Xᵀ when tX; M×N result, inner dimension K. */
void bl_qf_gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* G = A·Aᵀ (r×r, both triangles filled) for A r×c. */
void bl_qf_gram_rows(const float *A, int64_t r, int64_t c, float *G);
/* Cholesky factor of M + shift·I for symmetric M (k×k, upper triangle read): U (k×k, upper
 * triangle) with M + shift·I = Uᵀ·U. BL_ERR_NUMERIC when not positive definite. */
bl_status bl_qf_spd_factor(const float *M, int64_t k, float shift, float *U, bl_err *err);
/* B (k×c) ← (Uᵀ·U)⁻¹·B in place, by two triangular solves. */
void bl_qf_spd_solve(const float *U, int64_t k, float *B, int64_t c);
/* Symmetric eigendecomposition in place: on return A (n×n) holds the eigenvectors as columns
 * (A[i·n + j] = component i of vector j) and w the eigenvalues in ascending order. */
bl_status bl_qf_sym_eig(float *A, int64_t n, float *w, bl_err *err);
/* Orthonormalizes the k columns of the m×k matrix A (Householder QR, k ≤ m). If R is not NULL it
 * receives the k×k upper-triangular factor (A_in = Q·R). */
bl_status bl_qf_orthonormalize(float *A, int64_t m, int64_t k, float *R, bl_err *err);
/* Rank-r truncated SVD A ≈ L·RT with L = U·Σ^½ (m×r) and RT = Σ^½·Vᵀ (r×n), r ≤ min(m, n)
 * (BL_ERR_ARG otherwise), computed from the eigendecomposition of the Gram matrix of the smaller
 * side. L·RT is always the exact orthogonal
 * projection of A onto the computed r-dimensional subspace, so poor accuracy of tiny eigenvalues
 * can never produce a worse-than-projection approximation. */
bl_status bl_qf_tsvd(const float *A, int64_t m, int64_t n, int64_t r, float *L, float *RT,
                     bl_err *err);
/* out[i] = ‖row i of A‖₂ (double accumulation). */
void bl_qf_row_norms(const float *A, int64_t r, int64_t c, float *out);
/* Root mean square of x (double accumulation; 0 for n = 0). */
double bl_qf_rms(const float *x, int64_t n, int64_t stride);
/* Fills x with standard normal values from a generator seeded with seed. */
void bl_qf_fill_normal(float *x, size_t n, uint64_t seed);

/* ---- envelope.c: the (multi-)SVID projection ---- */

/* Rank-l factors of the magnitude envelope of one r×c factor matrix together with its signs:
 * the matrix they represent is S ⊙ (L·Rᵀ), S = sign bits (r rows of ceil(c/8) bytes, canonical
 * packed layout, bit set ⇔ −1). */
typedef struct {
    int64_t rows, cols;
    int l;
    float *L;       /* rows × l */
    float *R;       /* cols × l */
    uint8_t *sign;  /* rows × ceil(cols/8) */
    bool warm;      /* L/R hold a previous solution usable as a warm start */
    uint64_t seed;  /* for the random columns of block power iteration */
} bl_qf_env;

bl_status bl_qf_env_alloc(bl_qf_env *e, int64_t rows, int64_t cols, int l, uint64_t seed,
                          bl_err *err);
void bl_qf_env_free(bl_qf_env *e);

/* Rank-l truncated SVD of a non-negative r×c matrix N: N ≈ L·Rᵀ, L r×l, R c×l, singular values
 * split evenly. l = 1 uses power iteration from the all-ones vector (or the warm start), so the
 * Perron vectors come out non-negative; l > 1 uses block power (subspace) iteration with 4
 * oversampling columns and a final small SVD (the reference's _tsvd_block_power). Columns are
 * oriented so that each column of L sums to ≥ 0. */
bl_status bl_qf_abs_tsvd(const float *N, int64_t r, int64_t c, int l, int iters, bool warm,
                         uint64_t seed, float *L, float *R, bl_err *err);

/* Projection onto the set {S ⊙ TSVD_l(|M|)} (ALGORITHMS.md §4/§5): S = sign(M) (sign(0) = +1),
 * envelope = rank-l TSVD of |M|. M (r×c) is destroyed (it becomes |M|); the result is written to Z
 * and its factors to e (which also provides the warm start). */
bl_status bl_qf_project(float *M, bl_qf_env *e, int iters, float *Z, bl_err *err);
/* Z = S ⊙ (L·Rᵀ) from the factors in e. */
void bl_qf_env_expand(const bl_qf_env *e, float *Z);

/* Packed signs: bits for the r×c matrix M (row-major), canonical layout. */
void bl_qf_pack_signs(const float *M, int64_t r, int64_t c, uint8_t *bits);
/* Transposes a packed r×c sign matrix into a packed c×r one. */
void bl_qf_transpose_signs(const uint8_t *in, int64_t r, int64_t c, uint8_t *out);

/* ---- admm.c / admm_init.c: the alternating ADMM shared by DBF and MDBF ---- */

/* One side of a factorization: the variable is an r×c matrix (F is kept transposed, r×m, so that
 * both sides have the same shape convention and the same update code). */
typedef struct {
    int64_t r, c;
    float *Z;   /* current point in the constraint set */
    float *U;   /* scaled dual variable */
    float *XY;  /* Fixedᵀ·Target for the current outer iteration */
    float *tmp; /* scratch r×c */
    float *B;   /* unconstrained least-squares iterate; also scratch for the other side */
    bl_qf_env env;
} bl_qf_side;

/* ---- metric.c: the activation metric ---- */

/* Activation-aware metric: objective ‖(T − F·G)·H^½‖²_F with H the correlation part of the
 * inputs' covariance (normalized to unit mean diagonal). NULL metric = plain Frobenius. The caller
 * takes H's diagonal out first (T = W·diag(√diag H)), so the ADMM penalty and the projection act
 * in the importance-scaled space exactly as in the diagonal case; only the correlations are left to
 * the metric. Full (k = n): H = E·diag(lam)·Eᵀ. Low rank (k < n): H ≈ E·diag(lam)·Eᵀ +
 * c·(I − E·Eᵀ) with E the top-k eigenvectors. */
typedef struct {
    int64_t n, k;
    float *E;      /* n×k eigenvectors (columns; row i = component i) */
    float *lam;    /* k eigenvalues, clamped ≥ floor */
    float c;       /* k < n: the eigenvalue of the complement of span(E) */
    float *Hhalf;  /* k = n: n×n H^½ */
    float *H;      /* k = n: n×n H (regularized, normalized) */
} bl_qf_metric;

/* Metric from D^-½·H·D^-½ with D = diag(si²) (si NULL = identity), normalized; rank k < n gives
 * the diagonal-plus-low-rank form (seed: its subspace iteration's start), otherwise full. */
bl_status bl_qf_metric_init(bl_qf_metric *mt, const float *H, int64_t n, const float *si,
                            int64_t rank, uint64_t seed, bl_err *err);
void bl_qf_metric_free(bl_qf_metric *mt);
/* out = X·H^p for X r×n, p ∈ {1, ½, −½} (tmp: r×k scratch). */
void bl_qf_metric_pow(const bl_qf_metric *mt, const float *X, int64_t r, double p, float *tmp,
                      float *out);
/* The mean eigenvalue of H (≈ 1 after the normalization, plus the floor). */
double bl_qf_metric_mean(const bl_qf_metric *mt);

/* One path W ≈ F·G: F = Zᵀ of side f (m×r), G = Z of side g (r×n). The path's value is
 * Fn·G with Fn = F with unit columns (the normalization the ADMM's G-step uses); every function
 * below keeps the two factors scaled so that this value is also the plain product F·G of the
 * previous F-step's view (F·Gn with Gn = G with unit rows), i.e. ‖F_k‖ = ‖G_k‖ for every
 * component k after initialization. The middle dimension r may exceed min(m, n). */
typedef struct {
    int64_t m, n, r;
    int l;
    bl_qf_side f, g;
} bl_qf_path;

bl_status bl_qf_path_alloc(bl_qf_path *p, int64_t m, int64_t n, int64_t r, int l, uint64_t seed,
                           bl_err *err);
void bl_qf_path_free(bl_qf_path *p);

/* Closed-form initialization (ALGORITHMS.md §5): rank-r TSVD of T (of T·H^½ mapped back when mt is
 * given), each factor projected onto its constraint set. For r > min(m, n) the components beyond
 * min(m, n) come from the TSVD of what the projected earlier ones leave (block by block). The
 * result is scale-equivariant: T·s gives factors·√s exactly up to rounding. */
bl_status bl_qf_path_init_svd(bl_qf_path *p, const float *T, const bl_qf_metric *mt, bl_err *err);
/* The reference DBF start: both factors i.i.d. standard normal scaled to T's RMS. */
void bl_qf_path_init_random(bl_qf_path *p, uint64_t seed, double t_rms);

/* ADMM settings of the reference code (usamec/double_binary, OneCompression mdbf/admm.py). */
#define BL_QF_DEFAULT_INNER 2 /* inner ADMM steps per side and outer iteration (reference: 3) */
#define BL_QF_RIDGE 0.03f     /* ridge = 0.03 · mean diagonal of the normal matrix */
#define BL_QF_PROJ_ITERS 3    /* power iterations per projection (warm-started; reference: 5 cold) */

typedef struct {
    /* Outer iterations. iters > 0: exactly iters, with the reference's penalty schedule
     * ρ₀ = 0.03 + 0.97·min(1, it/(iters − 3))³. iters == 0: the same schedule over `ramp`
     * iterations, then ρ₀ = 1 until the objective improves by less than tol·e over `window`
     * iterations (e = relative objective), at most max_iters in all. */
    int iters, max_iters, ramp, window;
    double tol;
    int inner;
    float reg;               /* ridge, relative to the mean diagonal of the normal matrix */
    int proj_iters;          /* power iterations per projection */
    double obj_norm;         /* the objective is reported as sqrt(E / obj_norm) */
    bl_fit_trace *trace;     /* optional: iterations and objective appended */
    bl_progress_fn progress; /* called with base + span·(it+1)/limit */
    void *progress_ctx;
    double progress_base, progress_span;
} bl_qf_admm_opts;

/* Alternating ADMM on T (m×n) starting from the path's current Z/U. On return *obj (if not NULL)
 * holds the final relative objective. */
bl_status bl_qf_admm(bl_qf_path *p, const float *T, const bl_qf_metric *mt,
                     const bl_qf_admm_opts *ao, double *obj, bl_err *err);

/* Y = beta·Y + alpha·F·G (m×n) with F's columns normalized as the final representation uses them
 * (p->f.B is used as scratch). */
bl_status bl_qf_path_product(bl_qf_path *p, float alpha, float beta, float *Y, bl_err *err);

/* ---- onebit_h.c: OneBit under an activation metric ---- */

/* Refines a OneBit fit (sign: m×n packed, h: m, g: n, in W's scale, e.g. the SVID start) to
 * minimize tr(diag(o)·(W − Ŵ)·H·(W − Ŵ)ᵀ), Ŵ = diag(h)·S·diag(g), for H n×n symmetric PSD and
 * o the m output weights (NULL = ones), by exact h and g steps and a GPTQ sign sweep. The result
 * is never worse than the start. */
bl_status bl_qf_onebit_hessian(const float *W, int64_t m, int64_t n, const float *H,
                               const float *o, uint8_t *sign, float *h, float *g, bl_err *err);

/* ---- common.c ---- */

/* sqrt of importance values with a floor (1e-8 of their mean), or NULL → all ones. */
bl_status bl_qf_sqrt_importance(const float *imp, int64_t n, float **out, bl_err *err);
/* T = diag(so)·W·diag(si) (NULL = ones). */
void bl_qf_scale_rows_cols(const float *W, int64_t m, int64_t n, const float *so, const float *si,
                           float *T);

/* ---- random_factors.c: the draws of every format's random factors (bl_random_*) ---- */

#define BL_QF_RANDOM_STD 0.02                 /* std of Ŵ's entries */
#define BL_QF_JITTER_RMS 1.0408329997330663   /* √(13/12) = RMS of 0.5 + u, u ~ U[0, 1) */
/* Streams of one layer: every buffer of a path (or the layer) gets its own tag. */
enum { BL_QF_RT_SIGN_A, BL_QF_RT_SIGN_B, BL_QF_RT_OUTER, BL_QF_RT_IN, BL_QF_RT_TAGS };

/* rows × ceil(bits_per_row/8) bytes of uniform random bits, padding bits of each row 0, each row
 * from its own generator seeded by (seed, path, tag, row). Also codes: any bit pattern is a valid
 * code, and uniform bits give uniform codes. */
void bl_qf_random_bits(uint8_t *dst, int64_t rows, int64_t bits_per_row, uint64_t seed, int path,
                       int tag);
/* n FP16 values nominal·j, j = (0.5 + u)/BL_QF_JITTER_RMS (E[j²] = 1); one stream, as vectors
 * are small next to the bits. */
void bl_qf_random_scales(float *x, int64_t n, double nominal, uint64_t seed, int path, int tag);
/* n copies of the FP16 value nearest v. */
void bl_qf_random_const(float *x, int64_t n, double v);
/* The checks every bl_random_<name> starts with: out not NULL (then zeroed, size bytes) and an
 * m×n shape of at least 1×1; `fn` starts the message. */
bl_status bl_qf_random_start(const char *fn, void *out, size_t size, int64_t m, int64_t n,
                             bl_err *err);
/* BL_ERR_NOMEM for fn's m×n result. */
bl_status bl_qf_random_nomem(const char *fn, int64_t m, int64_t n, bl_err *err);

#endif
