#include "core/parallel.h"

#include <stdbool.h>

#include <omp.h>
#include <pthread.h>

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void) { openblas_set_num_threads(1); }

void bl_blas_single_thread(void) { pthread_once(&blas_once, blas_init); }

void bl_blas_threads_begin(void) {
    bl_blas_single_thread();
    openblas_set_num_threads(omp_get_max_threads());
}

void bl_blas_threads_end(void) { openblas_set_num_threads(1); }

/* Below this many multiply-adds a product runs as one call on the calling thread. */
#define PAR_MIN_WORK (1 << 18)
/* Larger products are cut into blocks of this many output rows (or columns) whatever the thread
 * count, so each output element comes from the same BLAS call shape at 1 or N threads and the
 * results are bitwise identical. */
#define BLOCK 128

static bool blocked(double work, int extent) {
    return work >= PAR_MIN_WORK && extent > BLOCK;
}

void bl_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    bl_blas_single_thread();
    if (M <= 0 || N <= 0) return;
    const bool by_rows = M >= N || M >= 64;
    const int extent = by_rows ? M : N;
    if (!blocked((double)M * N * K, extent)) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int nb = (extent + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int b = 0; b < nb; b++) {
        const int lo = b * BLOCK, len = extent - lo < BLOCK ? extent - lo : BLOCK;
        if (by_rows) {
            const float *Ai = ta == CblasNoTrans ? A + (size_t)lo * lda : A + lo;
            cblas_sgemm(CblasRowMajor, ta, tb, len, N, K, alpha, Ai, lda, B, ldb, beta,
                        C + (size_t)lo * ldc, ldc);
        } else {
            const float *Bi = tb == CblasNoTrans ? B + lo : B + (size_t)lo * ldb;
            cblas_sgemm(CblasRowMajor, ta, tb, M, len, K, alpha, A, lda, Bi, ldb, beta, C + lo,
                        ldc);
        }
    }
}

void bl_sgemv(int M, int N, float alpha, const float *A, int lda, const float *x, float beta,
              float *y) {
    bl_blas_single_thread();
    if (M <= 0) return;
    if (!blocked((double)M * N, M)) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, M, N, alpha, A, lda, x, 1, beta, y, 1);
        return;
    }
    const int nb = (M + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int b = 0; b < nb; b++) {
        const int lo = b * BLOCK, len = M - lo < BLOCK ? M - lo : BLOCK;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, len, N, alpha, A + (size_t)lo * lda, lda, x, 1,
                    beta, y + lo, 1);
    }
}
