#define _GNU_SOURCE /* setenv, unsetenv */
#include "core/parallel.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <omp.h>
#include <pthread.h>

#include "bitllm/core.h"
#include "bitllm/kernels.h"

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void) { openblas_set_num_threads(1); }

void bl_blas_single_thread(void) { pthread_once(&blas_once, blas_init); }

#define FALLBACK_VAR "BITLLM_BLAS_FALLBACK" /* set for the re-executed process */

/* OpenBLAS's kernel sets with AVX2 or AVX-512 products (its names, as openblas_get_corename()
 * reports them); any other choice on a CPU with AVX2 and FMA is a fallback. */
static const char *const vector_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                           "SapphireRapids"};

const char *bl_blas_core_for_cpu(void) {
    if (getenv("OPENBLAS_CORETYPE")) return NULL; /* the user's choice, or already set */
    const char *config = openblas_get_config();
    if (!config || !strstr(config, "DYNAMIC_ARCH")) return NULL; /* one kernel set: no choice */
    const char *core = openblas_get_corename();
    if (!core) return NULL;
    for (size_t i = 0; i < sizeof vector_cores / sizeof vector_cores[0]; i++)
        if (strcasecmp(core, vector_cores[i]) == 0) return NULL;
    switch (bl_cpu_best_isa()) { /* the level the kernels' dispatcher runs (OS support too) */
    case BL_ISA_AVX512: return "SkylakeX";
    case BL_ISA_AVX2: return "Haswell";
    default: return NULL;
    }
}

const char *bl_blas_fallback_core(void) { return getenv(FALLBACK_VAR); }

void bl_blas_use_cpu_kernels(char **argv) {
    const char *core = bl_blas_core_for_cpu();
    if (!core || !argv || !argv[0]) return;
    const char *fallback = openblas_get_corename();
    if (setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
    (void)setenv(FALLBACK_VAR, fallback, 1); /* what OpenBLAS picked on its own */
    execv("/proc/self/exe", argv); /* returns only on failure */
    (void)unsetenv("OPENBLAS_CORETYPE");
    (void)unsetenv(FALLBACK_VAR);
    fprintf(stderr,
            "%s: note: OpenBLAS runs its generic %s kernels on this CPU (set OPENBLAS_CORETYPE=%s "
            "for its %s ones, several times faster fits)\n",
            argv[0], fallback, core, core);
}

/* Below this many multiply-adds a product runs as one call on the calling thread. */
#define PAR_MIN_WORK (1 << 18)
/* Larger products are cut into blocks of this many output rows (or columns) whatever the thread
 * count, so each output element comes from the same BLAS call shape at 1 or N threads and the
 * results are bitwise identical. */
#define BLOCK 128

static bool blocked(double work, int extent) {
    return work >= PAR_MIN_WORK && extent > BLOCK;
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K;
    float alpha, beta;
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    bool by_rows;
    int extent, block;
} gemm_call;

static void gemm_blocks(void *ctx, int64_t b0, int64_t b1) {
    const gemm_call *g = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const int lo = (int)b * g->block, len = g->extent - lo < g->block ? g->extent - lo : g->block;
        if (g->by_rows) {
            const float *Ai = g->ta == CblasNoTrans ? g->A + (size_t)lo * g->lda : g->A + lo;
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, len, g->N, g->K, g->alpha, Ai, g->lda, g->B,
                        g->ldb, g->beta, g->C + (size_t)lo * g->ldc, g->ldc);
        } else {
            const float *Bi = g->tb == CblasNoTrans ? g->B + lo : g->B + (size_t)lo * g->ldb;
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, len, g->K, g->alpha, g->A, g->lda, Bi,
                        g->ldb, g->beta, g->C + lo, g->ldc);
        }
    }
}

void bl_sgemm_block(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
                    int block, bl_pool *pool) {
    bl_blas_single_thread();
    if (M <= 0 || N <= 0) return;
    const bool by_rows = M >= N || M >= 64;
    const int extent = by_rows ? M : N;
    if ((double)M * N * K < PAR_MIN_WORK || extent <= block) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_call g = {ta, tb, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, by_rows, extent, block};
    bl_pool_for(pool, (extent + block - 1) / block, true, gemm_blocks, &g);
}

void bl_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
              bl_pool *pool) {
    bl_sgemm_block(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, BLOCK, pool);
}

typedef struct {
    int M, N, lda;
    float alpha, beta;
    const float *A, *x;
    float *y;
} gemv_call;

static void gemv_blocks(void *ctx, int64_t b0, int64_t b1) {
    const gemv_call *g = ctx;
    for (int64_t b = b0; b < b1; b++) {
        const int lo = (int)b * BLOCK, len = g->M - lo < BLOCK ? g->M - lo : BLOCK;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, len, g->N, g->alpha, g->A + (size_t)lo * g->lda,
                    g->lda, g->x, 1, g->beta, g->y + lo, 1);
    }
}

void bl_sgemv(int M, int N, float alpha, const float *A, int lda, const float *x, float beta,
              float *y, bl_pool *pool) {
    bl_blas_single_thread();
    if (M <= 0) return;
    if (!blocked((double)M * N, M)) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, M, N, alpha, A, lda, x, 1, beta, y, 1);
        return;
    }
    gemv_call g = {M, N, lda, alpha, beta, A, x, y};
    bl_pool_for(pool, (M + BLOCK - 1) / BLOCK, true, gemv_blocks, &g);
}

int bl_omp_threads_begin(int n_threads) {
    const int prev = omp_get_max_threads();
    omp_set_num_threads(bl_resolve_threads(n_threads));
    return prev;
}

void bl_omp_threads_end(int previous) { omp_set_num_threads(previous); }
