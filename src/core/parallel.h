/* Dense products with one threading system. OpenBLAS runs single-threaded; these wrappers split
 * the output across OpenMP threads (rows of C, or columns when C has few rows), so BLAS threads
 * and OpenMP threads never compete for the cores, and every output element is computed by one
 * single-threaded call whatever the thread count. Small products run on the calling thread. */
#ifndef BITLLM_PARALLEL_H
#define BITLLM_PARALLEL_H

#include <cblas.h>

/* Sets OpenBLAS to one thread (once per process). Called by the wrappers themselves. */
void bl_blas_single_thread(void);
/* Quantizer fits call LAPACK (SVD, eigen-decompositions, Cholesky) directly and want it threaded:
 * between begin and end OpenBLAS uses every OpenMP thread. Never around code that calls the
 * wrappers above from OpenMP threads. */
void bl_blas_threads_begin(void);
void bl_blas_threads_end(void);

/* Row-major C (M×N) = alpha·op(A)·op(B) + beta·C with op(A) M×K, op(B) K×N. */
void bl_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* y (M) = alpha·A·x + beta·y for row-major A (M×N). */
void bl_sgemv(int M, int N, float alpha, const float *A, int lda, const float *x, float beta,
              float *y);

#endif
