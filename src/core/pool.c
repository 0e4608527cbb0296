/* The thread pool of bitllm/pool.h.
 *
 * Dispatch: the caller publishes (fn, ctx, nth), sets `pending` to the number of workers and
 * bumps the generation counter `gen` (release). Workers wait for `gen` to change (acquire), run
 * their part (or nothing, when ith >= nth), and decrement `pending`; the caller runs part 0 and
 * then waits for `pending` to reach 0, which is the barrier: no job's parameters are rewritten
 * before every worker has read them.
 *
 * Waiting: a worker spins on `gen` (PAUSE, and a sched_yield every few microseconds so a loaded
 * machine can run other work) for SPIN_SECONDS, then sleeps on a condition variable. The caller
 * increments `gen` before it reads `sleepers` (both sequentially consistent), and a worker
 * increments `sleepers` under the mutex before it reads `gen` a last time, so either the worker
 * sees the new generation or the caller sees the sleeper and broadcasts under the mutex: no
 * wake-up is lost. The caller never sleeps while waiting for the barrier (the parts are balanced
 * and short); it yields the CPU while spinning so an oversubscribed machine still progresses. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT, pthread_attr_setaffinity_np */
#include "bitllm/pool.h"

#include "core/parallel.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Placement: when the pool has as many threads as there are CPUs the creating thread may run on
 * (the default thread count), worker i is bound to the i-th of those CPUs (i = 1..n−1) and the
 * caller, thread 0, is left free (binding it would bind every thread it creates later); a caller
 * found on a worker's CPU at a dispatch moves itself off it (leave_worker_cpu). Left to the
 * scheduler, the caller and a worker sometimes shared one CPU while the other idled — each job
 * then ran its parts one after the other, and a spinning thread waited for the other to be
 * descheduled: on the 2-core machine a 1024×2048 int8-table product at 8 tokens took 44.7 µs on
 * two threads against 14.9 on one, a state that lasted until the load balancer moved one of
 * them (~20 ms, every time the worker woke on the caller's CPU). With the worker bound, a wake-up
 * cannot put it on the caller's CPU and the caller steps off the worker's: the same product takes
 * 16.3 µs. A pool with fewer threads than CPUs is not bound: the scheduler has room, and
 * several such processes would otherwise stack their workers on the same CPUs. */

/* How long an idle worker spins before it sleeps: long enough to cover the serial steps between
 * two products of a decode step (norms, RoPE, attention bookkeeping: microseconds) and the
 * sampling between two tokens, short enough that an idle model stops using CPU at once. */
#define SPIN_SECONDS 2e-3
/* PAUSE iterations between two clock reads / sched_yield calls (a few microseconds). */
#define SPIN_CHECK 256

struct bl_pool {
    int n;    /* 0 (OpenMP-backed only): the calling thread's omp_get_max_threads() per run */
    bool omp; /* OpenMP-backed: no threads of its own */
    pthread_t *threads;
    int n_started;
    /* the current job, written by the caller before `gen` is bumped */
    bl_pool_fn fn;
    void *ctx;
    int nth;
    atomic_uint gen;
    atomic_int pending;
    atomic_int stop;
    atomic_int sleepers;
    atomic_flag busy; /* set while a host thread is running a job on the pool */
    bool pinned;      /* workers bound to CPUs (see Placement) */
    int free_cpu;     /* the one CPU of the allowed set without a worker */
    cpu_set_t worker_cpus;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Holds no state besides its kind: jobs take the caller's OpenMP thread count at each run. */
static bl_pool omp_current = {.n = 0, .omp = true};

typedef struct {
    bl_pool *p;
    int id;
} worker_arg;

/* Depth of pool jobs on this thread: a job that calls bl_pool_run runs it inline. */
static _Thread_local int tls_in_job;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

int bl_default_threads(void) {
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (end != e && v > 0) return v > BL_POOL_MAX_THREADS ? BL_POOL_MAX_THREADS : (int)v;
    }
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set) > BL_POOL_MAX_THREADS ? BL_POOL_MAX_THREADS : CPU_COUNT(&set);
#endif
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c > BL_POOL_MAX_THREADS ? BL_POOL_MAX_THREADS : (int)c;
}

int bl_resolve_threads(int n_threads) {
    if (n_threads <= 0) return bl_default_threads();
    return n_threads > BL_POOL_MAX_THREADS ? BL_POOL_MAX_THREADS : n_threads;
}

static unsigned wait_job(bl_pool *p, unsigned seen) {
    unsigned g;
    double t0 = -1.0;
    for (unsigned spins = 1;; spins++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        if (spins % SPIN_CHECK == 0) {
            const double now = bl_time_s();
            if (t0 < 0) t0 = now;
            else if (now - t0 > SPIN_SECONDS) break;
            sched_yield();
        } else {
            cpu_relax();
        }
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    bl_pool *p = a.p;
    unsigned seen = 0; /* the generation at creation: a job published before this thread ran
                          is still seen */
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        if (a.id < p->nth) {
            tls_in_job++;
            p->fn(p->ctx, a.id, p->nth);
            tls_in_job--;
        }
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
    return NULL;
}

static void stop_workers(bl_pool *p) {
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    p->n_started = 0;
}

static bl_pool *pool_alloc(int n_threads, bool omp) {
    bl_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = bl_resolve_threads(n_threads);
    p->omp = omp;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleepers, 0);
    atomic_flag_clear(&p->busy);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

bl_status bl_pool_new(int n_threads, bl_pool **out, bl_err *err) {
    *out = NULL;
    bl_pool *p = pool_alloc(n_threads, false);
    if (!p) return bl_fail(err, BL_ERR_NOMEM, "thread pool: out of memory");
    if (p->n > 1) {
        p->threads = calloc((size_t)(p->n - 1), sizeof *p->threads);
        if (!p->threads) {
            bl_pool_free(p);
            return bl_fail(err, BL_ERR_NOMEM, "thread pool: out of memory");
        }
    }
    /* Workers on their own CPUs when the pool takes every CPU this thread may run on (below). */
    cpu_set_t allowed;
    int cpu_of[BL_POOL_MAX_THREADS];
    const bool pin = p->n > 1 && sched_getaffinity(0, sizeof allowed, &allowed) == 0 &&
                     CPU_COUNT(&allowed) == p->n;
    CPU_ZERO(&p->worker_cpus);
    if (pin) {
        for (int c = 0, k = 0; c < CPU_SETSIZE && k < p->n; c++)
            if (CPU_ISSET(c, &allowed)) cpu_of[k++] = c;
        p->free_cpu = cpu_of[0];
        for (int i = 1; i < p->n; i++) CPU_SET(cpu_of[i], &p->worker_cpus);
    }
    for (int i = 1; i < p->n; i++) {
        worker_arg *a = malloc(sizeof *a);
        int rc = a ? 0 : ENOMEM;
        if (a) {
            a->p = p;
            a->id = i;
            pthread_attr_t attr;
            rc = pthread_attr_init(&attr);
            if (!rc && pin) {
                cpu_set_t one;
                CPU_ZERO(&one);
                CPU_SET(cpu_of[i], &one);
                pthread_attr_setaffinity_np(&attr, sizeof one, &one);
            }
            if (!rc) {
                rc = pthread_create(&p->threads[i - 1], &attr, worker_main, a);
                pthread_attr_destroy(&attr);
                if (rc == EINVAL && pin) /* the CPU went away meanwhile: unbound, as without */
                    rc = pthread_create(&p->threads[i - 1], NULL, worker_main, a);
            }
            if (rc) free(a);
        }
        if (rc) {
            int want = p->n;
            bl_pool_free(p);
            return bl_fail(err, BL_ERR_NOMEM, "thread pool: cannot start thread %d of %d: %s", i,
                           want, strerror(rc));
        }
        p->n_started++;
    }
    p->pinned = pin;
    *out = p;
    return BL_OK;
}

bl_status bl_pool_new_omp(int n_threads, bl_pool **out, bl_err *err) {
    *out = pool_alloc(n_threads, true);
    return *out ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "thread pool: out of memory");
}

void bl_pool_free(bl_pool *p) {
    if (!p || p == &omp_current) return;
    stop_workers(p);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int bl_pool_size(const bl_pool *p) {
    if (!p) return 1;
    return p->n > 0 ? p->n : bl_resolve_threads(omp_get_max_threads());
}

bl_pool *bl_pool_omp_current(void) { return &omp_current; }

/* The caller on a worker's CPU (woken there, or placed there at start) would run its part and
 * the worker's one after the other until the load balancer moved it: it moves itself to the free
 * CPU at once (binding it there, which migrates it) and takes its own CPU mask back (so it is
 * not left bound, nor is any thread it creates later). Two system calls, only when it happens. */
static void leave_worker_cpu(bl_pool *p) {
    const int cpu = sched_getcpu();
    if (cpu < 0 || !CPU_ISSET(cpu, &p->worker_cpus)) return;
    cpu_set_t mine, one;
    if (pthread_getaffinity_np(pthread_self(), sizeof mine, &mine) != 0 ||
        !CPU_ISSET(p->free_cpu, &mine))
        return;
    CPU_ZERO(&one);
    CPU_SET(p->free_cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0)
        pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
}

static void run_inline(bl_pool_fn fn, void *ctx) {
    tls_in_job++;
    fn(ctx, 0, 1);
    tls_in_job--;
}

void bl_pool_run_n(bl_pool *p, int max_threads, bl_pool_fn fn, void *ctx) {
    int nth = bl_pool_size(p);
    if (max_threads < nth) nth = max_threads < 1 ? 1 : max_threads;
    if (nth <= 1 || tls_in_job || omp_in_parallel()) {
        run_inline(fn, ctx);
        return;
    }
    if (p->omp) {
#pragma omp parallel num_threads(nth)
        {
            tls_in_job++;
            fn(ctx, omp_get_thread_num(), omp_get_num_threads());
            tls_in_job--;
        }
        return;
    }
    if (atomic_flag_test_and_set_explicit(&p->busy, memory_order_acquire)) {
        run_inline(fn, ctx); /* another host thread holds the pool */
        return;
    }
    if (p->pinned) leave_worker_cpu(p);
    p->fn = fn;
    p->ctx = ctx;
    p->nth = nth;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the read of sleepers */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    tls_in_job++;
    fn(ctx, 0, nth);
    tls_in_job--;
    for (unsigned spins = 1; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; spins++) {
        if (spins % SPIN_CHECK == 0) sched_yield();
        else cpu_relax();
    }
    atomic_flag_clear_explicit(&p->busy, memory_order_release);
}

void bl_pool_run(bl_pool *p, bl_pool_fn fn, void *ctx) {
    bl_pool_run_n(p, BL_POOL_MAX_THREADS, fn, ctx);
}

/* bl_pool_for hands out CHUNKS_PER_THREAD contiguous chunks per thread from a shared counter,
 * in order: on an idle machine each thread ends up with about 1/nth of the range, and when a
 * thread is descheduled (a machine shared with other work) the others take its chunks instead of
 * waiting for all of its share. Which thread computes a chunk never changes how it is computed. */
#define CHUNKS_PER_THREAD 4

typedef struct {
    bl_range_fn fn;
    void *ctx;
    int64_t n, chunks;
    atomic_llong next;
} range_task;

static void range_run(void *ctx, int ith, int nth) {
    range_task *t = ctx;
    (void)ith, (void)nth;
    for (;;) {
        const int64_t k = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (k >= t->chunks) break;
        int64_t lo, hi;
        bl_split_range(t->n, (int)k, (int)t->chunks, &lo, &hi);
        if (lo < hi) t->fn(t->ctx, lo, hi);
    }
}

void bl_pool_for(bl_pool *p, int64_t n, bool parallel, bl_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!parallel || n < 2 || bl_pool_size(p) < 2) {
        fn(ctx, 0, n);
        return;
    }
    const int nth = n < bl_pool_size(p) ? (int)n : bl_pool_size(p);
    const int64_t chunks = n < (int64_t)nth * CHUNKS_PER_THREAD ? n : (int64_t)nth * CHUNKS_PER_THREAD;
    range_task t = {fn, ctx, n, chunks, 0};
    bl_pool_run_n(p, nth, range_run, &t);
}
