/* Explicit threading: the thread pool (every part runs once per job, the barrier, many tiny
 * jobs, nested calls, two pools and two host threads at once, sleeping workers waking up, the
 * workers' CPUs), and
 * inference with explicit thread counts — two models on two host threads at the same time, each
 * with its own thread count, give bit for bit the logits each gives alone; a model read into
 * private memory (--no-mmap) gives the logits of the same model mapped; and the load-time scan
 * for non-finite weights finds the first one at every thread count. */
#define _GNU_SOURCE /* pthread_{get,set}affinity_np, sched_getcpu, CPU_* */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bitllm/model.h"
#include "bitllm/pool.h"
#include "bitllm/quantize.h"
#include "test.h"

/* ---- the pool ---- */

typedef struct {
    atomic_int calls;
    atomic_uint seen; /* bit ith set by part ith */
    atomic_int bad_nth;
    int want_nth;
} count_job;

static void count_part(void *ctx, int ith, int nth) {
    count_job *j = ctx;
    atomic_fetch_add(&j->calls, 1);
    atomic_fetch_or(&j->seen, 1u << ith);
    if (nth != j->want_nth || ith < 0 || ith >= nth) atomic_fetch_add(&j->bad_nth, 1);
}

/* Every part of a job runs exactly once, and all of them have returned when run returns. */
static void test_pool_barrier(void) {
    for (int n = 1; n <= 4; n++) {
        bl_pool *p = NULL;
        REQUIRE(bl_pool_new(n, &p, NULL) == BL_OK);
        CHECK(bl_pool_size(p) == n);
        for (int rep = 0; rep < 200; rep++) {
            count_job j = {.want_nth = n};
            bl_pool_run(p, count_part, &j);
            CHECK(atomic_load(&j.calls) == n && atomic_load(&j.seen) == (1u << n) - 1u &&
                  atomic_load(&j.bad_nth) == 0);
        }
        for (int k = 1; k <= n; k++) { /* fewer threads on request */
            count_job j = {.want_nth = k};
            bl_pool_run_n(p, k, count_part, &j);
            CHECK(atomic_load(&j.calls) == k && atomic_load(&j.bad_nth) == 0);
        }
        bl_pool_free(p);
    }
    count_job j = {.want_nth = 1}; /* no pool: the caller alone */
    bl_pool_run(NULL, count_part, &j);
    CHECK(atomic_load(&j.calls) == 1 && bl_pool_size(NULL) == 1);
}

typedef struct {
    int64_t *hits; /* one counter per index, owned by exactly one part */
} range_job;

static void range_part(void *ctx, int64_t lo, int64_t hi) {
    range_job *j = ctx;
    for (int64_t i = lo; i < hi; i++) j->hits[i]++;
}

/* A pool with one thread per CPU the caller may use binds worker i to the i-th of those CPUs and
 * never changes the caller's own mask; a caller that sits on a worker's CPU when it runs a job
 * is moved off it (to the one CPU without a worker) before its part runs. A pool with fewer
 * threads than CPUs binds nothing. */
typedef struct {
    cpu_set_t mask[BL_POOL_MAX_THREADS];
    int caller_cpu;
    atomic_int bad;
} place_job;

static void place_part(void *ctx, int ith, int nth) {
    place_job *j = ctx;
    (void)nth;
    if (ith == 0) j->caller_cpu = sched_getcpu();
    if (pthread_getaffinity_np(pthread_self(), sizeof j->mask[ith], &j->mask[ith]) != 0)
        atomic_fetch_add(&j->bad, 1);
}

static void test_pool_placement(void) {
    cpu_set_t allowed, one;
    REQUIRE(pthread_getaffinity_np(pthread_self(), sizeof allowed, &allowed) == 0);
    const int n = CPU_COUNT(&allowed);
    if (n < 2) SKIP("this process may run on one CPU only: no worker to place");
    if (n > BL_POOL_MAX_THREADS) SKIP("more CPUs than a pool's threads");
    int cpu_of[BL_POOL_MAX_THREADS];
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < n; c++)
        if (CPU_ISSET(c, &allowed)) cpu_of[k++] = c;
    bl_pool *p = NULL;
    REQUIRE(bl_pool_new(n, &p, NULL) == BL_OK);
    int moved = 0;
    for (int attempt = 0; attempt < 20; attempt++) {
        /* the caller onto worker 1's CPU, with its whole mask back */
        CPU_ZERO(&one);
        CPU_SET(cpu_of[1], &one);
        REQUIRE(pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0);
        REQUIRE(pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed) == 0);
        place_job j = {.caller_cpu = -1};
        bl_pool_run(p, place_part, &j);
        CHECK(atomic_load(&j.bad) == 0);
        for (int i = 1; i < n; i++)
            CHECK_MSG(CPU_COUNT(&j.mask[i]) == 1 && CPU_ISSET(cpu_of[i], &j.mask[i]),
                      "worker %d not bound to CPU %d", i, cpu_of[i]);
        CHECK_MSG(CPU_EQUAL(&j.mask[0], &allowed), "the caller's CPU mask was changed");
        /* preemption between the move and the part may move it again: one success suffices */
        moved += j.caller_cpu == cpu_of[0];
    }
    CHECK_MSG(moved > 0, "the caller stayed on a worker's CPU in 20 jobs of 20");
    bl_pool_free(p);
    if (n >= 3) {
        REQUIRE(bl_pool_new(2, &p, NULL) == BL_OK);
        place_job j = {.caller_cpu = -1};
        bl_pool_run(p, place_part, &j);
        CHECK_MSG(CPU_EQUAL(&j.mask[1], &allowed), "a pool of 2 threads on %d CPUs bound a worker", n);
        bl_pool_free(p);
    }
}

/* bl_pool_for covers [0, n) exactly once for every n, also below the thread count; and many
 * tiny jobs in a row (the pattern of a decode step) neither lose nor repeat a part. */
static void test_pool_for_and_tiny_jobs(void) {
    bl_pool *p = NULL;
    REQUIRE(bl_pool_new(3, &p, NULL) == BL_OK);
    int64_t hits[40];
    for (int64_t n = 0; n < 40; n++) {
        memset(hits, 0, sizeof hits);
        range_job j = {hits};
        bl_pool_for(p, n, true, range_part, &j);
        int bad = 0;
        for (int64_t i = 0; i < 40; i++) bad += hits[i] != (i < n ? 1 : 0);
        CHECK_MSG(bad == 0, "n = %lld", (long long)n);
    }
    const int jobs = test_quick() ? 5000 : 50000;
    count_job total = {.want_nth = 3};
    for (int k = 0; k < jobs; k++) bl_pool_run(p, count_part, &total);
    CHECK(atomic_load(&total.calls) == 3 * jobs && atomic_load(&total.bad_nth) == 0);
    bl_pool_free(p);
}

typedef struct {
    bl_pool *same, *other;
    atomic_int inner_calls, inner_bad;
} nest_job;

static void inner_part(void *ctx, int ith, int nth) {
    nest_job *j = ctx;
    atomic_fetch_add(&j->inner_calls, 1);
    if (ith != 0 || nth != 1) atomic_fetch_add(&j->inner_bad, 1);
}

static void outer_part(void *ctx, int ith, int nth) {
    nest_job *j = ctx;
    bl_pool_run(j->same, inner_part, j);  /* the pool running this job: inline */
    bl_pool_run(j->other, inner_part, j); /* another pool: inline as well, no oversubscription */
}

/* A job that runs a job (on its own pool or another) runs it on its own thread: no deadlock. */
static void test_pool_nested(void) {
    bl_pool *a = NULL, *b = NULL;
    REQUIRE(bl_pool_new(2, &a, NULL) == BL_OK);
    REQUIRE(bl_pool_new(2, &b, NULL) == BL_OK);
    for (int rep = 0; rep < 100; rep++) {
        nest_job j = {.same = a, .other = b};
        bl_pool_run(a, outer_part, &j);
        CHECK(atomic_load(&j.inner_calls) == 4 && atomic_load(&j.inner_bad) == 0);
    }
    bl_pool_free(a);
    bl_pool_free(b);
}

typedef struct {
    bl_pool *pool; /* shared by both host threads, or one each */
    int64_t sum;   /* Σ of 0..99999 per run, computed by the pool */
    int runs;
    int ok;
} host_job;

typedef struct {
    const int32_t *v;
    int64_t part[8];
} sum_job;

static void sum_part(void *ctx, int ith, int nth) {
    sum_job *j = ctx;
    int64_t lo, hi, s = 0;
    bl_split_range(100000, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) s += j->v[i];
    j->part[ith] = s;
}

static int32_t values[100000];

static void *host_main(void *arg) {
    host_job *h = arg;
    h->ok = 1;
    for (int r = 0; r < h->runs; r++) {
        sum_job j = {values, {0}};
        bl_pool_run(h->pool, sum_part, &j);
        int64_t s = 0;
        for (int k = 0; k < 8; k++) s += j.part[k];
        if (s != h->sum) h->ok = 0;
    }
    return NULL;
}

/* Two host threads, each with its own pool, at the same time; then both on one pool (the second
 * one in runs its jobs inline): every sum right, nothing hangs. */
static void test_pool_two_hosts(void) {
    int64_t want = 0;
    for (int i = 0; i < 100000; i++) values[i] = i, want += i;
    const int runs = test_quick() ? 300 : 2000;
    bl_pool *p1 = NULL, *p2 = NULL;
    REQUIRE(bl_pool_new(2, &p1, NULL) == BL_OK);
    REQUIRE(bl_pool_new(3, &p2, NULL) == BL_OK);
    host_job a = {p1, want, runs, 0}, b = {p2, want, runs, 0};
    pthread_t ta, tb;
    REQUIRE(pthread_create(&ta, NULL, host_main, &a) == 0);
    REQUIRE(pthread_create(&tb, NULL, host_main, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok && b.ok);
    host_job c = {p1, want, runs, 0}, d = {p1, want, runs, 0};
    REQUIRE(pthread_create(&ta, NULL, host_main, &c) == 0);
    REQUIRE(pthread_create(&tb, NULL, host_main, &d) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(c.ok && d.ok);
    bl_pool_free(p1);
    bl_pool_free(p2);
}

/* Workers that went to sleep (idle for longer than the spin time) wake up for the next job; an
 * OpenMP-backed pool runs jobs with its own count. */
static void test_pool_sleep_and_omp(void) {
    bl_pool *p = NULL;
    REQUIRE(bl_pool_new(2, &p, NULL) == BL_OK);
    for (int k = 0; k < 5; k++) {
        const struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
        count_job j = {.want_nth = 2};
        bl_pool_run(p, count_part, &j);
        CHECK(atomic_load(&j.calls) == 2 && atomic_load(&j.bad_nth) == 0);
    }
    bl_pool_free(p);
    REQUIRE(bl_pool_new_omp(2, &p, NULL) == BL_OK);
    CHECK(bl_pool_size(p) == 2);
    count_job j = {.want_nth = 2};
    bl_pool_run(p, count_part, &j);
    CHECK(atomic_load(&j.calls) == 2 && atomic_load(&j.bad_nth) == 0);
    bl_pool_free(p);
    /* 0 means the default: OMP_NUM_THREADS when set */
    char *saved = getenv("OMP_NUM_THREADS") ? strdup(getenv("OMP_NUM_THREADS")) : NULL;
    setenv("OMP_NUM_THREADS", "3", 1);
    CHECK(bl_default_threads() == 3 && bl_resolve_threads(0) == 3 && bl_resolve_threads(5) == 5);
    REQUIRE(bl_pool_new(0, &p, NULL) == BL_OK);
    CHECK(bl_pool_size(p) == 3);
    bl_pool_free(p);
    if (saved) setenv("OMP_NUM_THREADS", saved, 1);
    else unsetenv("OMP_NUM_THREADS");
    free(saved);
}

/* ---- inference with explicit thread counts ---- */

static char root[] = "/tmp/bitllm-threads-XXXXXX";
static char f16_dir[4200], dbf_dir[4200];

/* A random-weight F16 model large enough for every parallel path (products over 2^18
 * multiply-adds even at one token) and its 1-bit dbf version with random factors. */
static int make_models(void) {
    if (!mkdtemp(root)) return 0;
    snprintf(f16_dir, sizeof f16_dir, "%s/f16", root);
    snprintf(dbf_dir, sizeof dbf_dir, "%s/dbf", root);
    const bl_config c = {.arch = BL_ARCH_LLAMA, .dim = 512, .hidden_dim = 1376, .n_layers = 2,
                         .n_heads = 8, .n_kv_heads = 4, .head_dim = 64, .vocab_size = 700,
                         .max_seq = 64, .rope_theta = 10000, .norm_eps = 1e-5f, .bos_id = 1,
                         .eos_id = 2};
    bl_err err = {0};
    if (bl_synth_model(&c, BL_DT_F16, 11, f16_dir, &err)) {
        fprintf(stderr, "  synth: %s\n", err.msg);
        return 0;
    }
    bl_model *m = NULL;
    if (bl_model_load(f16_dir, NULL, &m, &err)) return 0;
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("dbf");
    o.bpw = 1.0;
    o.random_factors = true;
    o.n_threads = 2;
    bl_quant_summary sum;
    bl_status s = bl_quantize_model(m, &o, dbf_dir, &sum, &err);
    if (s) fprintf(stderr, "  quantize: %s\n", err.msg);
    bl_model_free(m);
    return s == BL_OK;
}

#define NTOK 24

/* Logits of a prompt of 16 tokens in one batch, then 8 decode steps: (16 + 8) × vocab floats
 * (the prompt's rows, then each step's). */
static float *run_model(const bl_model *m, int n_threads) {
    const int V = m->cfg.vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V * NTOK);
    int32_t toks[NTOK];
    for (int i = 0; i < NTOK; i++) toks[i] = (int32_t)((i * 37 + 5) % V);
    bl_state *st = NULL;
    if (!lg || bl_state_new(m, 64, 16, n_threads, &st, NULL)) {
        free(lg);
        return NULL;
    }
    bool ok = bl_state_threads(st) == bl_resolve_threads(n_threads) &&
              bl_forward(st, toks, 16, lg, true, NULL) == BL_OK;
    for (int i = 16; i < NTOK && ok; i++)
        ok = bl_forward(st, toks + i, 1, lg + (size_t)i * V, false, NULL) == BL_OK;
    bl_state_free(st);
    if (!ok) {
        free(lg);
        return NULL;
    }
    return lg;
}

typedef struct {
    const bl_model *m;
    int n_threads, reps;
    const float *want;
    int mismatches, failures;
} infer_job;

static void *infer_main(void *arg) {
    infer_job *j = arg;
    const size_t bytes = sizeof(float) * (size_t)j->m->cfg.vocab_size * NTOK;
    for (int r = 0; r < j->reps; r++) {
        float *lg = run_model(j->m, j->n_threads);
        if (!lg) j->failures++;
        else j->mismatches += memcmp(lg, j->want, bytes) != 0;
        free(lg);
    }
    return NULL;
}

static bl_model *load_with(const char *dir, bl_load_mode mode, bl_isa isa) {
    bl_load_opts o = {.load = mode, .isa = isa, .n_threads = 2};
    bl_model *m = NULL;
    bl_err err = {0};
    if (bl_model_load(dir, &o, &m, &err)) fprintf(stderr, "  load %s: %s\n", dir, err.msg);
    return m;
}

static bool models_ok;

/* Two models (F16 and 1-bit dbf) on two host threads at once, with 2 and 1 threads and then 1
 * and 2: every run gives the logits of that model run alone, bit for bit. */
/* The load-time scan for Inf/NaN split across a pool reports the lowest bad element whichever
 * thread finds it, and the same at 1, 2 and 3 threads (pieces of 2^22 elements, so 10^7 floats are
 * three pieces; bad values in the last two pieces, then one in the first too). */
static void test_nonfinite_scan_threads(void) {
    const int64_t n = 10000000;
    float *v = calloc((size_t)n, sizeof *v);
    REQUIRE(v);
    bl_tensor t = {.name = "w", .dtype = BL_DT_F32, .ndim = 1, .shape = {n}, .data = v,
                   .nbytes = (size_t)n * sizeof *v};
    bl_pool *pools[3] = {NULL, NULL, NULL};
    for (int k = 1; k < 3; k++) REQUIRE(bl_pool_new(k + 1, &pools[k], NULL) == BL_OK);
    int64_t at = -1;
    for (int k = 0; k < 3; k++) CHECK(!bl_tensor_find_nonfinite(&t, pools[k], &at));
    v[9000001] = INFINITY;
    v[5000003] = NAN;
    for (int k = 0; k < 3; k++) {
        at = -1;
        CHECK(bl_tensor_find_nonfinite(&t, pools[k], &at) && at == 5000003);
    }
    v[17] = -INFINITY;
    for (int k = 0; k < 3; k++) {
        at = -1;
        CHECK(bl_tensor_find_nonfinite(&t, pools[k], &at) && at == 17);
    }
    for (int k = 1; k < 3; k++) bl_pool_free(pools[k]);
    free(v);
}

static void test_two_models_two_hosts(void) {
    if (!models_ok) SKIP("could not make the test models");
    bl_model *a = load_with(f16_dir, BL_LOAD_MMAP, BL_ISA_AUTO);
    bl_model *b = load_with(dbf_dir, BL_LOAD_READ, BL_ISA_AUTO);
    REQUIRE(a && b);
    CHECK(b->load_mode == BL_LOAD_READ && a->load_mode == BL_LOAD_MMAP);
    float *a1 = run_model(a, 1), *a2 = run_model(a, 2), *b1 = run_model(b, 1),
          *b2 = run_model(b, 2);
    REQUIRE(a1 && a2 && b1 && b2);
    const size_t bytes = sizeof(float) * (size_t)a->cfg.vocab_size * NTOK;
    CHECK_MSG(memcmp(a1, a2, bytes) == 0, "f16: 1 vs 2 threads differ");
    CHECK_MSG(memcmp(b1, b2, bytes) == 0, "dbf: 1 vs 2 threads differ");
    const int reps = test_quick() ? 2 : 6;
    for (int swap = 0; swap < 2; swap++) {
        infer_job ja = {a, swap ? 1 : 2, reps, a1, 0, 0}, jb = {b, swap ? 2 : 1, reps, b1, 0, 0};
        pthread_t ta, tb;
        REQUIRE(pthread_create(&ta, NULL, infer_main, &ja) == 0);
        REQUIRE(pthread_create(&tb, NULL, infer_main, &jb) == 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        CHECK_MSG(ja.failures == 0 && ja.mismatches == 0, "f16 on a host thread: %d failed, %d "
                  "differ", ja.failures, ja.mismatches);
        CHECK_MSG(jb.failures == 0 && jb.mismatches == 0, "dbf on a host thread: %d failed, %d "
                  "differ", jb.failures, jb.mismatches);
    }
    free(a1), free(a2), free(b1), free(b2);
    bl_model_free(a);
    bl_model_free(b);
}

/* The same checkpoint mapped and read into private memory (the repacked sign bits' canonical
 * copy given back in both cases) gives identical logits, and the canonical bits read back after
 * being given back are the file's (to_dense of a layer equals the mapped model's). */
static void test_mmap_vs_read(void) {
    if (!models_ok) SKIP("could not make the test models");
    const char *dirs[2] = {f16_dir, dbf_dir};
    for (int d = 0; d < 2; d++) {
        bl_model *mm = load_with(dirs[d], BL_LOAD_MMAP, BL_ISA_AUTO);
        bl_model *rd = load_with(dirs[d], BL_LOAD_READ, BL_ISA_AUTO);
        REQUIRE(mm && rd);
        float *a = run_model(mm, 2), *b = run_model(rd, 2);
        REQUIRE(a && b);
        CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)mm->cfg.vocab_size * NTOK) == 0,
                  "%s: mapped and read logits differ", dirs[d]);
        const bl_linear *L1 = &mm->layers[1].proj[BL_PROJ_DOWN], *L2 = &rd->layers[1].proj[BL_PROJ_DOWN];
        float *W1 = malloc(sizeof(float) * (size_t)(L1->m * L1->n));
        float *W2 = malloc(sizeof(float) * (size_t)(L2->m * L2->n));
        REQUIRE(W1 && W2);
        CHECK(L1->ops->to_dense(L1, W1, NULL) == BL_OK && L2->ops->to_dense(L2, W2, NULL) == BL_OK);
        CHECK(memcmp(W1, W2, sizeof(float) * (size_t)(L1->m * L1->n)) == 0);
        free(W1), free(W2), free(a), free(b);
        bl_model_free(mm);
        bl_model_free(rd);
    }
}

int main(void) {
    TEST_RUN(test_pool_barrier);
    TEST_RUN(test_pool_for_and_tiny_jobs);
    TEST_RUN(test_pool_nested);
    TEST_RUN(test_pool_two_hosts);
    TEST_RUN(test_pool_sleep_and_omp);
    TEST_RUN(test_pool_placement);
    models_ok = make_models();
    TEST_RUN(test_nonfinite_scan_threads);
    TEST_RUN(test_two_models_two_hosts);
    TEST_RUN(test_mmap_vs_read);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
    return test_summary();
}
