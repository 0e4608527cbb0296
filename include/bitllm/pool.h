/* Explicit threading: a thread count is always a parameter of the object that uses it (an
 * inference state, quantize or distill options), never read from the process environment at the
 * moment of use.
 *
 * bl_pool is a persistent team of threads for the inference hot path. The caller of bl_pool_run
 * is thread 0 of the team; the other n−1 threads are created once and wait for jobs by spinning
 * briefly, then sleeping on a condition variable, so a decode step that issues hundreds of small
 * parallel products per token pays a few hundred nanoseconds per product and an idle model uses
 * no CPU. Its behaviour does not depend on OMP_WAIT_POLICY or any other OpenMP setting. A pool
 * with one thread per CPU the creating thread may use (the default count) binds its workers to
 * those CPUs, one each, leaving the calling thread's own CPU mask alone (src/core/pool.c).
 *
 * A pool may instead be backed by OpenMP (bl_pool_new_omp): jobs then run in an OpenMP parallel
 * region of exactly n threads. Training and quantization, whose other loops are OpenMP regions,
 * use that form so that two thread systems never compete for the cores.
 *
 * A job is fn(ctx, ith, nth) called once for every ith in [0, nth), concurrently; work is split
 * by ith only, so a job computes the same result whatever nth is when each output is owned by
 * one ith. bl_pool_run returns after every call has returned (a full barrier). Calls made from
 * inside a job (nested), with a NULL pool, or while another host thread is using the same pool
 * run fn(ctx, 0, 1) on the calling thread: never a deadlock, never a wrong answer. */
#ifndef BITLLM_POOL_H
#define BITLLM_POOL_H

#include "bitllm/core.h"

typedef struct bl_pool bl_pool;
typedef void (*bl_pool_fn)(void *ctx, int ith, int nth);

/* The default thread count for n_threads = 0: OMP_NUM_THREADS when it is set to a positive
 * number (its first entry), else the number of CPUs this process may run on. At least 1. */
int bl_default_threads(void);
/* n_threads <= 0 means bl_default_threads(). Clamped to 1..BL_POOL_MAX_THREADS. */
int bl_resolve_threads(int n_threads);
#define BL_POOL_MAX_THREADS 256

/* A pool of n_threads (0 = default) threads, the caller included: n_threads − 1 are started. */
bl_status bl_pool_new(int n_threads, bl_pool **out, bl_err *err);
/* A pool that runs jobs as OpenMP parallel regions of n_threads (0 = default) threads. */
bl_status bl_pool_new_omp(int n_threads, bl_pool **out, bl_err *err);
void bl_pool_free(bl_pool *p);
/* Threads of the pool (1 for NULL). */
int bl_pool_size(const bl_pool *p);

/* Runs fn(ctx, ith, nth) for ith = 0..nth−1 with nth = bl_pool_size(p) (or 1, see above). */
void bl_pool_run(bl_pool *p, bl_pool_fn fn, void *ctx);
/* As bl_pool_run, but with at most max_threads threads (>= 1): small jobs use fewer. */
void bl_pool_run_n(bl_pool *p, int max_threads, bl_pool_fn fn, void *ctx);

/* fn(ctx, lo, hi) over [0, n) cut into one contiguous part per thread (at most n threads), or
 * fn(ctx, 0, n) on the calling thread when !parallel. The usual loop of a driver that splits
 * output rows: a caller passes parallel = false for work too small to pay for a dispatch. */
typedef void (*bl_range_fn)(void *ctx, int64_t lo, int64_t hi);
void bl_pool_for(bl_pool *p, int64_t n, bool parallel, bl_range_fn fn, void *ctx);

/* [*lo, *hi): part ith of nth of the range [0, n), contiguous and in order. */
static inline void bl_split_range(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

#endif
