/* Dense linear algebra for the fitting code: wrappers over CBLAS and LAPACKE plus the truncated SVD
 * used by the binary-factor fitters' initialization. Row-major throughout. */
#include "quant/qf_internal.h"

#include "core/parallel.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The fit's large products, Gram matrices and triangular solves are cut into fixed blocks (rows or
 * columns of the result, columns of the right-hand sides), each one single-threaded BLAS call,
 * spread over the calling thread's OpenMP threads: the same blocks, hence the same results, at
 * every thread count (OpenBLAS itself stays single-threaded, bl_blas_single_thread). Every call
 * packs its whole other operand again, so the blocks are as wide as the thread split allows:
 * on a 2028×4096×4096 product, 128-row blocks (bl_sgemm's) lose 12% of the single-call rate with
 * OpenBLAS's Haswell kernels and 25% with its AVX-512 ones, 512-row blocks 0–5%. */
/* Below this many multiply-adds a Gram matrix or solve is one call on the calling thread (~10 ms
 * of work): smaller ones gain little from two threads and, on an oversubscribed machine, lose to
 * the barrier and the workers' spinning (docs/fits.md); at 1024² and 1 bpw (k = 492) they stay
 * serial; at 1200×1600 (k = 665) those with c = 1600 are split. */
#define LA_MIN_WORK (1 << 29)

/* Block width for an extent: 512 while that leaves at least three blocks, else 256 (gemm: below
 * that, bl_sgemm's 128). Depends on the shape only. */
static int64_t la_block(int64_t extent) { return extent >= 3 * 512 ? 512 : 256; }

void bl_qf_gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* BLAS would leave C untouched for alpha·0; apply beta ourselves */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    /* blocks of 512 rows (or columns) of C when that leaves at least three, else bl_sgemm's 128 */
    const int64_t extent = M >= N || M >= 64 ? M : N;
    bl_sgemm_block(tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                   (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc,
                   extent >= 3 * 512 ? 512 : 128, bl_pool_omp_current());
}

static void symmetrize_upper(float *G, int64_t k) {
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = i + 1; j < k; j++) G[j * k + i] = G[i * k + j];
}

typedef struct {
    const float *A;
    int64_t r, c, nb, block;
    float *G;
} gram_call;

/* Block row b of the upper triangle: the diagonal block G[b, b] = A_b·A_bᵀ by ssyrk (half its
 * flops), the rest of the row G[b, b+1:] = A_b·A[b+1:]ᵀ by sgemm. Range element q covers the block
 * rows q and nb − 1 − q, so contiguous ranges carry equal work. */
static void gram_block(const gram_call *g, int64_t b) {
    const int64_t lo = b * g->block, len = g->r - lo < g->block ? g->r - lo : g->block;
    const float *Ab = g->A + lo * g->c;
    float *Gb = g->G + lo * g->r + lo;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (blasint)len, (blasint)g->c, 1.0f, Ab,
                (blasint)g->c, 0.0f, Gb, (blasint)g->r);
    if (g->r - lo - len > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)len, (blasint)(g->r - lo - len),
                    (blasint)g->c, 1.0f, Ab, (blasint)g->c, Ab + len * g->c, (blasint)g->c, 0.0f,
                    Gb + len, (blasint)g->r);
}

static void gram_blocks(void *ctx, int64_t q0, int64_t q1) {
    const gram_call *g = ctx;
    for (int64_t q = q0; q < q1; q++) {
        gram_block(g, q);
        if (g->nb - 1 - q != q) gram_block(g, g->nb - 1 - q);
    }
}

void bl_qf_gram_rows(const float *A, int64_t r, int64_t c, float *G) {
    if (c <= 0) {
        memset(G, 0, sizeof(float) * (size_t)(r * r));
        return;
    }
    bl_blas_single_thread();
    const int64_t block = la_block(r);
    if ((double)r * (double)r * (double)c < LA_MIN_WORK || r <= block) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (blasint)r, (blasint)c, 1.0f, A,
                    (blasint)c, 0.0f, G, (blasint)r);
    } else {
        gram_call g = {A, r, c, (r + block - 1) / block, block, G};
        bl_pool_for(bl_pool_omp_current(), (g.nb + 1) / 2, true, gram_blocks, &g);
    }
    symmetrize_upper(G, r);
}

bl_status bl_qf_spd_factor(const float *M, int64_t k, float shift, float *U, bl_err *err) {
    memcpy(U, M, sizeof(float) * (size_t)(k * k));
    for (int64_t i = 0; i < k; i++) U[i * k + i] += shift;
    /* The row-major upper triangle is the column-major lower one: LAPACK's column-major lower
     * factor L (M = L·Lᵀ) is, read row-major, the upper factor U = Lᵀ. No transposed copies.
     * OpenBLAS's threaded spotrf synchronizes after every small panel: on one thread it is
     * several times faster at these sizes (k = 1000: 4.8 ms against 40 ms on two threads of the
     * loaded 2-core machine; k = 2028: 0.12 s against 0.17 s), so it runs on one: bitllm keeps
     * OpenBLAS single-threaded for the whole process (bl_blas_single_thread, set once and never
     * toggled, so fits running side by side on several threads never see each other's setting)
     * and gets its parallelism from its own threads. */
    bl_blas_single_thread();
    lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)k, U, (lapack_int)k);
    if (info != 0)
        return bl_fail(err, BL_ERR_NUMERIC,
                       "normal equations (k=%lld) not positive definite (LAPACK info %d)",
                       (long long)k, (int)info);
    return BL_OK;
}

typedef struct {
    const float *U;
    int64_t k, c, block;
    float *B;
} solve_call;

static void solve_blocks(void *ctx, int64_t b0, int64_t b1) {
    const solve_call *s = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t lo = b * s->block, len = s->c - lo < s->block ? s->c - lo : s->block;
        /* M·X = B with M = Uᵀ·U: Uᵀ·Y = B, then U·X = Y (U's strict lower triangle is not read) */
        cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, (blasint)s->k,
                    (blasint)len, 1.0f, s->U, (blasint)s->k, s->B + lo, (blasint)s->c);
        cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit,
                    (blasint)s->k, (blasint)len, 1.0f, s->U, (blasint)s->k, s->B + lo,
                    (blasint)s->c);
    }
}

void bl_qf_spd_solve(const float *U, int64_t k, float *B, int64_t c) {
    if (k <= 0 || c <= 0) return;
    bl_blas_single_thread();
    solve_call s = {U, k, c, la_block(c), B};
    const int64_t nb = (c + s.block - 1) / s.block;
    bl_pool_for(bl_pool_omp_current(), nb, (double)k * (double)k * (double)c >= LA_MIN_WORK && nb > 1,
                solve_blocks, &s);
}

bl_status bl_qf_sym_eig(float *A, int64_t n, float *w, bl_err *err) {
    /* Workspace sizes from the LAPACK documentation of ssyevd. We do not use the workspace query:
     * LAPACK < 3.12 returns LWORK as a float, which rounds 1 + 6n + 2n² down for n ≳ 3000. */
    size_t lwork = 1 + 6 * (size_t)n + 2 * (size_t)n * (size_t)n;
    size_t liwork = 3 + 5 * (size_t)n;
    float *work = malloc(sizeof(float) * lwork);
    lapack_int *iwork = malloc(sizeof(lapack_int) * liwork);
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return bl_fail(err, BL_ERR_NOMEM, "eigendecomposition workspace (n=%lld)", (long long)n);
    }
    lapack_int info = LAPACKE_ssyevd_work(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, A,
                                          (lapack_int)n, w, work, (lapack_int)lwork, iwork,
                                          (lapack_int)liwork);
    free(work);
    free(iwork);
    if (info != 0)
        return bl_fail(err, BL_ERR_NUMERIC, "symmetric eigendecomposition (n=%lld) failed (info %d)",
                       (long long)n, (int)info);
    return BL_OK;
}

bl_status bl_qf_orthonormalize(float *A, int64_t m, int64_t k, float *R, bl_err *err) {
    float *tau = malloc(sizeof(float) * (size_t)(k > 0 ? k : 1));
    if (!tau) return bl_fail(err, BL_ERR_NOMEM, "QR workspace");
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k, A,
                                     (lapack_int)k, tau);
    if (info == 0 && R) {
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) R[i * k + j] = j >= i ? A[i * k + j] : 0.0f;
    }
    if (info == 0)
        info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k, (lapack_int)k, A,
                              (lapack_int)k, tau);
    free(tau);
    if (info != 0) return bl_fail(err, BL_ERR_NUMERIC, "QR factorization failed (info %d)", (int)info);
    return BL_OK;
}

void bl_qf_row_norms(const float *A, int64_t r, int64_t c, float *out) {
    for (int64_t i = 0; i < r; i++) {
        const float *a = A + i * c;
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) s += (double)a[j] * a[j];
        out[i] = (float)sqrt(s);
    }
}

double bl_qf_rms(const float *x, int64_t n, int64_t stride) {
    if (n <= 0) return 0.0;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i * stride] * x[i * stride];
    return sqrt(s / (double)n);
}

void bl_qf_fill_normal(float *x, size_t n, uint64_t seed) {
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = bl_rng_normal(&rng);
}

/* Truncated SVD through the Gram matrix of the smaller side. With s = min(m, n) and the Gram
 * C = A·Aᵀ (m ≤ n) whose top-r eigenvectors are Ur: Y = Urᵀ·A (r×n) and A ≈ Ur·Y exactly as a
 * projection. Column j then gets the even split L_j = Ur_j·√‖Y_j‖, RT_j = Y_j / √‖Y_j‖ (‖Y_j‖ is
 * σ_j measured directly rather than through the less accurate eigenvalue). */
bl_status bl_qf_tsvd(const float *A, int64_t m, int64_t n, int64_t r, float *L, float *RT,
                     bl_err *err) {
    bool left = m <= n;                /* Gram of rows (m×m) or of columns (n×n) */
    int64_t s = left ? m : n, o = left ? n : m;
    if (r < 1 || r > s)
        return bl_fail(err, BL_ERR_ARG, "truncated SVD: rank %lld outside [1, %lld]", (long long)r,
                       (long long)s);
    float *C = malloc(sizeof(float) * (size_t)s * (size_t)s);
    float *w = malloc(sizeof(float) * (size_t)s);
    float *Ur = malloc(sizeof(float) * (size_t)s * (size_t)r);
    float *Y = malloc(sizeof(float) * (size_t)r * (size_t)o);
    float *nrm = malloc(sizeof(float) * (size_t)r);
    bl_status st = BL_OK;
    if (!C || !w || !Ur || !Y || !nrm) {
        st = bl_fail(err, BL_ERR_NOMEM, "truncated SVD buffers (%lldx%lld, rank %lld)",
                     (long long)m, (long long)n, (long long)r);
        goto done;
    }
    if (left) {
        bl_qf_gram_rows(A, m, n, C);
    } else { /* C = Aᵀ·A */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)n, (blasint)m, 1.0f, A,
                    (blasint)n, 0.0f, C, (blasint)n);
        symmetrize_upper(C, n);
    }
    if ((st = bl_qf_sym_eig(C, s, w, err)) != BL_OK) goto done;
    /* top r eigenvectors, largest first */
    for (int64_t i = 0; i < s; i++)
        for (int64_t j = 0; j < r; j++) Ur[i * r + j] = C[i * s + (s - 1 - j)];
    /* Y = Urᵀ·A (r×n) when left, else Y = Urᵀ·Aᵀ (r×m) */
    if (left)
        bl_qf_gemm(true, false, r, n, m, 1.0f, Ur, r, A, n, 0.0f, Y, n);
    else
        bl_qf_gemm(true, true, r, m, n, 1.0f, Ur, r, A, n, 0.0f, Y, m);
    bl_qf_row_norms(Y, r, o, nrm);
    for (int64_t j = 0; j < r; j++) {
        double sg = nrm[j] > 0.0f ? sqrt((double)nrm[j]) : 0.0;
        float up = (float)sg, down = sg > 0.0 ? (float)(1.0 / sg) : 0.0f;
        /* the s-side vector goes with √σ, the other side is Y_j/√σ */
        float *side_s = left ? L : RT, *side_o = left ? RT : L;
        for (int64_t i = 0; i < s; i++) {
            float v = Ur[i * r + j] * up;
            if (left) side_s[i * r + j] = v; else side_s[j * s + i] = v;
        }
        for (int64_t i = 0; i < o; i++) {
            float v = Y[j * o + i] * down;
            if (left) side_o[j * o + i] = v; else side_o[i * r + j] = v;
        }
    }
done:
    free(C);
    free(w);
    free(Ur);
    free(Y);
    free(nrm);
    return st;
}
