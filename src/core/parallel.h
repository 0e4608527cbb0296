/* Dense f32 products with one threading system. OpenBLAS always runs single-threaded; these
 * wrappers split the output across the threads of a bl_pool (rows of C, or columns when C has few
 * rows), so BLAS threads and bitllm's threads never compete for the cores, and every output
 * element is computed by one single-threaded call whatever the thread count. Small products run
 * on the calling thread, as does everything when pool is NULL. */
#ifndef BITLLM_PARALLEL_H
#define BITLLM_PARALLEL_H

#include <cblas.h>

#include "bitllm/pool.h"

/* Sets OpenBLAS to one thread (once per process, before the first BLAS call of bitllm; OpenBLAS's
 * own thread count is process-wide, so bitllm never changes it afterwards). */
void bl_blas_single_thread(void);

/* Row-major C (M×N) = alpha·op(A)·op(B) + beta·C with op(A) M×K, op(B) K×N. */
void bl_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
              bl_pool *pool);

/* bl_sgemm with blocks of `block` rows (or columns) instead of 128: each call packs its whole
 * other operand again, so large products go faster in wider blocks when the extent still gives
 * every thread some (the fits: 512). */
void bl_sgemm_block(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
                    int block, bl_pool *pool);
/* y (M) = alpha·A·x + beta·y for row-major A (M×N). */
void bl_sgemv(int M, int N, float alpha, const float *A, int lda, const float *x, float beta,
              float *y, bl_pool *pool);

/* The OpenMP-backed pool whose size is the calling thread's OpenMP thread count at each run
 * (omp_get_max_threads()): what the OpenMP code of training and quantization hands to the
 * kernels, so their products follow the thread count set for that code (bl_omp_threads_begin). */
bl_pool *bl_pool_omp_current(void);

/* Sets the calling thread's OpenMP thread count to n_threads (0 = bl_default_threads()) for the
 * OpenMP regions it starts until bl_omp_threads_end; returns the previous value to pass there.
 * The count is a per-thread OpenMP setting: other host threads are not affected. */
int bl_omp_threads_begin(int n_threads);
void bl_omp_threads_end(int previous);

#endif
