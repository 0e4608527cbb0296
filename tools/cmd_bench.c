/* bitllm bench: speed of the packed sign-matrix kernels against dense f32 BLAS and against the
 * machine's memory bandwidth.
 *
 * For every shape (m outputs × n inputs), batch and thread count, each compiled kernel variant
 * this CPU can run is first checked against the scalar reference (sampled tokens of the batch,
 * tolerance 1e-5·Σ|x| + 1e-6 per output, as in tests/test_kernels.c) — a disagreement aborts the
 * run — and then timed: one warm-up call, then the best of several calls. The dense baseline is
 * OpenBLAS sgemv (batch 1) or sgemm on an f32 matrix of the same shape at the same thread count
 * (transposed kernels: the transposed dense product). The F16 baseline is bitllm's own 16-bit
 * kernel (bl_half_matmul, what an F16 checkpoint runs on), checked against its reference the same
 * way. Memory bandwidth is measured in the same run by streaming a buffer much larger than the
 * last-level cache. */
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bitllm/format.h"
#include "bitllm/kernels.h"
#include "bitllm/pool.h"
#include "cli.h"
#include "cli_util.h"

#define MAX_LIST 16
#define MAX_VARIANTS 32
#define DENSE_MAX_BYTES ((size_t)2 << 30) /* larger f32 baselines are skipped */

typedef struct {
    int64_t m, n;
} shape;

/* ---- argument lists ---- */

static int parse_shapes(const char *s, shape *out, int max) {
    int k = 0;
    while (*s) {
        char *end, *end2;
        long long m = strtoll(s, &end, 10);
        if (end == s || (*end != 'x' && *end != 'X') || m < 1) return -1;
        long long n = strtoll(end + 1, &end2, 10);
        if (end2 == end + 1 || n < 1 || m > (1LL << 20) || n > (1LL << 20) || k == max) return -1;
        out[k].m = m, out[k++].n = n;
        s = end2;
        if (*s == ',' && s[1]) s++;
        else if (*s) return -1;
    }
    return k;
}

/* ---- memory bandwidth: a streaming sum over a buffer much larger than the caches ---- */

__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

static float sum_sse(const float *p, size_t n) {
    __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        a0 = _mm_add_ps(a0, _mm_load_ps(p + i));
        a1 = _mm_add_ps(a1, _mm_load_ps(p + i + 4));
        a2 = _mm_add_ps(a2, _mm_load_ps(p + i + 8));
        a3 = _mm_add_ps(a3, _mm_load_ps(p + i + 12));
    }
    float v[4];
    _mm_storeu_ps(v, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
    return v[0] + v[1] + v[2] + v[3];
}

static volatile float bw_sink; /* keeps the sums alive */

/* Best GB/s over reps of `threads` threads each summing a contiguous 1/threads of buf. */
static double mem_bandwidth(const float *buf, size_t bytes, int threads, int reps) {
    const size_t nf = bytes / sizeof(float);
    const bool avx2 = bl_cpu_best_isa() >= BL_ISA_AVX2;
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        float tot = 0.0f;
        double t0 = bl_time_s();
#pragma omp parallel num_threads(threads) reduction(+ : tot)
        {
            size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
            size_t lo = nf * id / nt / 32 * 32, hi = nf * (id + 1) / nt / 32 * 32;
            tot += avx2 ? sum_avx2(buf + lo, hi - lo) : sum_sse(buf + lo, hi - lo);
        }
        double t = bl_time_s() - t0;
        bw_sink = tot;
        if (bytes / t / 1e9 > best) best = bytes / t / 1e9;
    }
    return best;
}

/* ---- timing ---- */

typedef struct {
    int variant;         /* a kernel (index into bl_sign_variants), or -1 for a dense baseline */
    const bl_exec *ex;   /* threads (and, for the F16 baseline, the ISA level) */
    const bl_signmat *S;
    const float *in, *W; /* W: dense m×n f32 */
    const uint16_t *Wh;  /* set: the F16 baseline on this m×n matrix instead of f32 */
    float *out;
    int64_t m, n, T;
    bool transposed;
} job;

static void run_job(const job *j) {
    if (j->variant >= 0) {
        bl_sign_variant_run(j->variant, j->S, j->in, j->T, j->out, j->ex);
        return;
    }
    if (j->Wh) {
        bl_half_matmul(BL_DT_F16, j->Wh, j->m, j->n, j->in, j->T, j->out, j->ex);
        return;
    }
    const int m = (int)j->m, n = (int)j->n, T = (int)j->T;
    if (!j->transposed && T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, j->W, n, j->in, 1, 0.0f, j->out, 1);
    else if (!j->transposed)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, m, n, 1.0f, j->in, n, j->W, n, 0.0f,
                    j->out, m);
    else if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, m, n, 1.0f, j->W, n, j->in, 1, 0.0f, j->out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, n, m, 1.0f, j->in, m, j->W, n,
                    0.0f, j->out, n);
}

/* Best time in seconds after the warm-up call (done by the caller's check): at least reps calls
 * and 0.1·budget_s of calls, so short kernels get many tries at an undisturbed run on a shared
 * machine, but never more than budget_s once 2 calls are done. */
static double time_job(const job *j, int reps, double budget_s) {
    double best = 1e30, spent = 0.0;
    for (int r = 0; r < 100000; r++) {
        if (r >= 2 && spent >= budget_s) break;
        if (r >= reps && spent >= 0.1 * budget_s) break;
        double t0 = bl_time_s();
        run_job(j);
        double t = bl_time_s() - t0;
        spent += t;
        if (t < best) best = t;
    }
    return best;
}

/* ---- the benchmark ---- */

typedef struct {
    bool quick, json;
    int reps;
    double budget_s;
    int threads[MAX_LIST], nthreads;
    int batches[MAX_LIST], nbatches;
    shape shapes[MAX_LIST];
    int nshapes;
    double bw[MAX_LIST]; /* GB/s at threads[k] */
    size_t l2, l3;
    cJSON *rows;
} bench;

static const char *residency(const bench *b, size_t bytes) {
    if (b->l2 && bytes <= b->l2) return "L2";
    if (b->l3 && bytes <= b->l3) return "L3";
    return "DRAM";
}

/* Reference output rows for the sampled tokens (first, middle, last). */
typedef struct {
    int64_t tok[3];
    int ntok;
    float *y, *z;       /* ntok × m, ntok × n */
    float *y8;          /* ntok × m: the BL_TABLES_I8 specification's outputs */
    float *yh;          /* ntok × m: the F16 matrix's reference outputs (when it exists) */
    double *xabs, *vabs; /* Σ|x|, Σ|v| per sampled token */
} refs;

static int agree(const float *got, const float *ref, double abssum, int64_t len, double *worst) {
    for (int64_t k = 0; k < len; k++) {
        double d = fabs((double)got[k] - (double)ref[k]), tol = 1e-5 * abssum + 1e-6;
        if (!(d <= tol)) return 0;
        if (d / tol > *worst) *worst = d / tol;
    }
    return 1;
}

/* The first variant of each (isa, direction) in the table is the one dispatch uses. */
static bool is_default(const bl_sign_variant *v, int k) {
    for (int q = 0; q < k; q++)
        if (v[q].isa == v[k].isa && v[q].transposed == v[k].transposed) return false;
    return true;
}

typedef struct {
    int k; /* variant index */
    double ns, worst;
} result;

/* One result: a table line (unless --json) and a JSON row. f32, f16 < 0: no such baseline. */
static void emit_row(bench *b, const bl_sign_variant *v, bool dflt, int64_t m, int64_t n,
                     int64_t T, int th, int ti, size_t sign_bytes, double ns, double f32,
                     double f16, double worst) {
    const double gbps = (double)sign_bytes / ns;
    const double frac = b->bw[ti] > 0 ? gbps / b->bw[ti] : 0.0;
    const double speedup = f32 > 0 ? f32 / ns : 0.0;
    if (!b->json) {
        printf("  %-7s %-12s %s%s batch %-3lld thr %d  %12.0f ns  %7.2f GB/s  %5.1f%% bw"
               "  f32 %12.0f ns  x%-5.1f",
               bl_isa_name(v->isa), v->name, v->transposed ? "Z=V.S " : "Y=X.St", dflt ? "*" : " ",
               (long long)T, th, ns, gbps, 100 * frac, f32 > 0 ? f32 : 0.0, speedup);
        if (f16 > 0) printf("  f16 x%.1f", f16 / ns);
        printf("\n");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kernel", v->name);
    cJSON_AddStringToObject(o, "isa", bl_isa_name(v->isa));
    cJSON_AddNumberToObject(o, "m", (double)m);
    cJSON_AddNumberToObject(o, "n", (double)n);
    cJSON_AddNumberToObject(o, "batch", (double)T);
    cJSON_AddNumberToObject(o, "threads", th);
    cJSON_AddNumberToObject(o, "ns", ns);
    cJSON_AddNumberToObject(o, "gbps", gbps);
    if (f32 > 0) {
        cJSON_AddNumberToObject(o, "speedup_vs_f32", speedup);
        cJSON_AddNumberToObject(o, "f32_ns", f32);
    } else {
        cJSON_AddNullToObject(o, "speedup_vs_f32");
    }
    if (f16 > 0) {
        cJSON_AddNumberToObject(o, "speedup_vs_f16", f16 / ns);
        cJSON_AddNumberToObject(o, "f16_ns", f16);
    }
    cJSON_AddNumberToObject(o, "bw_fraction", frac);
    cJSON_AddBoolToObject(o, "transposed", v->transposed);
    cJSON_AddBoolToObject(o, "packed", v->packed);
    cJSON_AddBoolToObject(o, "default", dflt);
    cJSON_AddStringToObject(o, "resident", residency(b, sign_bytes));
    cJSON_AddNumberToObject(o, "max_err_over_tol", worst);
    cJSON_AddItemToArray(b->rows, o);
}

/* The F16 baseline at one ISA level (sign kernels are compared with the F16 kernel of their own
 * level): checked on the sampled tokens against R->yh (tolerance relative to Σ|x|·max|w|, as W
 * is not ±1), then timed; ns, or −1 with *rc set. */
static double bench_f16(const bench *b, bl_isa isa, bl_pool *pool, const uint16_t *Wh,
                        float wmax, const float *X, float *out, int64_t m, int64_t n, int64_t T,
                        const refs *R, const double *xabs, int th, int *rc) {
    const bl_exec ex = {pool, isa, BL_TABLES_F32};
    job j = {-1, &ex, NULL, X, NULL, Wh, out, m, n, T, false};
    run_job(&j);
    double worst = 0;
    for (int q = 0; q < R->ntok && !*rc; q++)
        if (!agree(out + R->tok[q] * m, R->yh + q * m, xabs[q] * wmax, m, &worst))
            *rc = cli_errorf("bench", "%s f16 kernel disagrees with the reference on %lldx%lld, "
                             "batch %lld, %d threads", bl_isa_name(isa), (long long)m,
                             (long long)n, (long long)T, th);
    return *rc ? -1 : time_job(&j, b->reps, b->budget_s) * 1e9;
}

/* Checks and times every variant (and the dense baselines) on one shape; 0 on success. */
static int bench_shape(bench *b, shape sh, bl_rng *rng) {
    const int64_t m = sh.m, n = sh.n, rb = bl_sign_row_bytes(n);
    const size_t sign_bytes = (size_t)(m * rb);
    const bool huge = (double)m * (double)n > (double)(1 << 28);
    int maxT = 1, rc = 0;
    for (int k = 0; k < b->nbatches; k++)
        if (b->batches[k] > maxT) maxT = b->batches[k];
    uint8_t *bits = bl_aligned_alloc(sign_bytes);
    float *X = bl_malloc_array((size_t)(maxT * n), sizeof(float));
    float *V = bl_malloc_array((size_t)(maxT * m), sizeof(float));
    size_t outlen = (size_t)(maxT * (m > n ? m : n));
    float *out = bl_malloc_array(outlen, sizeof(float));
    bool dense_ok = (size_t)(m * n) * sizeof(float) <= DENSE_MAX_BYTES;
    float *W = dense_ok ? bl_aligned_alloc((size_t)(m * n) * sizeof(float)) : NULL;
    uint16_t *Wh = dense_ok ? bl_aligned_alloc((size_t)(m * n) * sizeof(uint16_t)) : NULL;
    refs R = {{0}, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    R.y = bl_malloc_array((size_t)(3 * m), sizeof(float));
    R.y8 = bl_malloc_array((size_t)(3 * m), sizeof(float));
    R.z = bl_malloc_array((size_t)(3 * n), sizeof(float));
    R.yh = dense_ok ? bl_malloc_array((size_t)(3 * m), sizeof(float)) : NULL;
    if (!bits || !X || !V || !out || (dense_ok && (!W || !Wh || !R.yh)) || !R.y || !R.y8 || !R.z) {
        rc = cli_errorf("bench", "%lldx%lld: out of memory", (long long)m, (long long)n);
        goto done;
    }
    for (size_t k = 0; k < sign_bytes; k++) bits[k] = (uint8_t)bl_rng_u64(rng);
    if (n % 8) /* canonical padding bits are 0 */
        for (int64_t i = 0; i < m; i++) bits[i * rb + rb - 1] &= (uint8_t)((1u << (n % 8)) - 1u);
    for (int64_t k = 0; k < maxT * n; k++) X[k] = bl_rng_normal(rng);
    for (int64_t k = 0; k < maxT * m; k++) V[k] = bl_rng_normal(rng);
    float wmax = 0; /* max |w| of the dense matrices, for the F16 check's tolerance */
    if (W)
        for (int64_t k = 0; k < m * n; k++) {
            Wh[k] = bl_f32_to_f16(bl_rng_normal(rng));
            W[k] = bl_f16_to_f32(Wh[k]);
            wmax = fmaxf(wmax, fabsf(W[k]));
        }

    bl_signmat S;
    bl_signmat_init(&S, m, n, bits);
    bl_err err = {0};
    /* the packed layout serves AVX2 and AVX-512 alike */
    if (bl_signmat_prepare(&S, bl_cpu_best_isa(), NULL, &err) != BL_OK) {
        rc = cli_error("bench", &err);
        goto done;
    }
    if (!b->json)
        printf("\n%lld x %lld: packed signs %.2f MiB (%s-resident by the reported cache sizes), "
               "f32 %.1f MiB\n",
               (long long)m, (long long)n, sign_bytes / 1048576.0, residency(b, sign_bytes),
               (double)m * n * 4 / 1048576.0);

    int nv;
    const bl_sign_variant *vars = bl_sign_variants(&nv);
    for (int bi = 0; bi < b->nbatches && rc == 0; bi++) {
        const int64_t T = b->batches[bi];
        /* references for the sampled tokens, computed once per batch size (huge matrices: the
         * first token only, the scalar reference takes tens of seconds per token there) */
        int64_t cand[3] = {0, T / 2, T - 1};
        R.ntok = 0;
        for (int k = 0; k < (huge ? 1 : 3); k++)
            if (R.ntok == 0 || cand[k] != R.tok[R.ntok - 1]) R.tok[R.ntok++] = cand[k];
        double xabs[3] = {0}, vabs[3] = {0};
        for (int k = 0; k < R.ntok; k++) {
            bl_sign_matmul_ref(&S, X + R.tok[k] * n, 1, R.y + k * m);
            bl_sign_matmul_i8_ref(&S, X + R.tok[k] * n, 1, R.y8 + k * m);
            bl_sign_matmul_t_ref(&S, V + R.tok[k] * m, 1, R.z + k * n);
            if (Wh) bl_half_matmul_ref(BL_DT_F16, Wh, m, n, X + R.tok[k] * n, 1, R.yh + k * m);
            for (int64_t j = 0; j < n; j++) xabs[k] += fabs(X[R.tok[k] * n + j]);
            for (int64_t i = 0; i < m; i++) vabs[k] += fabs(V[R.tok[k] * m + i]);
        }
        for (int ti = 0; ti < b->nthreads && rc == 0; ti++) {
            const int th = b->threads[ti];
            bl_pool *pool = NULL;
            if (bl_pool_new(th, &pool, &err) != BL_OK) {
                rc = cli_error("bench", &err);
                break;
            }
            openblas_set_num_threads(th); /* the f32 baselines only */
            result res[MAX_VARIANTS];
            int nres = 0;
            for (int k = 0; k < nv && k < MAX_VARIANTS && rc == 0; k++) {
                const bl_sign_variant *v = &vars[k];
                if (v->isa > bl_cpu_best_isa()) continue;
                /* the reference is single-threaded and far too slow to time batched or huge */
                if (v->isa == BL_ISA_REF && (T > 1 || th != 1 || huge)) continue;
                if (b->quick && !is_default(vars, k)) continue;
                const bl_exec ex = {pool, v->isa, BL_TABLES_F32};
                job j = {k, &ex, &S, v->transposed ? V : X, NULL, NULL, out, m, n, T,
                         v->transposed};
                run_job(&j); /* warm-up, and the output we check */
                const int64_t len = v->transposed ? n : m;
                double worst = 0.0;
                const bool i8 = v->tables == BL_TABLES_I8; /* its specification, exactly */
                for (int q = 0; q < R.ntok && rc == 0; q++)
                    if (i8 ? memcmp(out + R.tok[q] * len, R.y8 + q * len,
                                    (size_t)len * sizeof *out) != 0
                           : !agree(out + R.tok[q] * len, (v->transposed ? R.z : R.y) + q * len,
                                    v->transposed ? vabs[q] : xabs[q], len, &worst))
                        rc = cli_errorf("bench",
                                        "%s/%s disagrees with the reference on %lldx%lld, batch "
                                        "%lld, %d threads (token %lld)",
                                        bl_isa_name(v->isa), v->name, (long long)m, (long long)n,
                                        (long long)T, th, (long long)R.tok[q]);
                if (rc) break;
                res[nres].k = k;
                res[nres].worst = worst;
                res[nres++].ns = time_job(&j, b->reps, b->budget_s) * 1e9;
            }
            if (rc) break;
            /* Dense baselines after the kernels: OpenBLAS's worker threads keep spinning for a
             * while after a call and would steal the cores from the next kernel's threads, so
             * the machine is also left idle briefly before the next group. */
            double f32_ns[2] = {-1, -1}; /* [transposed] */
            for (int tr = 0; tr < 2 && W; tr++) {
                job j = {-1, NULL, &S, tr ? V : X, W, NULL, out, m, n, T, tr == 1};
                run_job(&j);
                f32_ns[tr] = time_job(&j, b->reps, b->budget_s) * 1e9;
            }
            const struct timespec pause = {0, 300000000};
            nanosleep(&pause, NULL);
            double f16_ns[BL_ISA_AVX512 + 1] = {-1, -1, -1, -1}; /* by level; none for ref */
            for (int isa = BL_ISA_AVX2; isa <= (int)bl_cpu_best_isa() && Wh && rc == 0; isa++)
                f16_ns[isa] = bench_f16(b, (bl_isa)isa, pool, Wh, wmax, X, out, m, n, T, &R, xabs,
                                        th, &rc);
            for (int q = 0; q < nres && rc == 0; q++) {
                const bl_sign_variant *v = &vars[res[q].k];
                emit_row(b, v, is_default(vars, res[q].k), m, n, T, th, ti, sign_bytes,
                         res[q].ns, f32_ns[v->transposed], v->transposed ? -1 : f16_ns[v->isa],
                         res[q].worst);
            }
            bl_pool_free(pool);
        }
    }
    bl_signmat_release(&S);
done:
    bl_aligned_free(bits);
    free(X), free(V), free(out), free(R.y), free(R.y8), free(R.z), free(R.yh);
    bl_aligned_free(W);
    bl_aligned_free(Wh);
    return rc;
}

static void print_selection(void) {
    int nv;
    const bl_sign_variant *v = bl_sign_variants(&nv);
    printf("kernels (* = what bl_sign_matmul / bl_sign_matmul_t use at that level):\n");
    for (int k = 0; k < nv; k++) {
        printf("  %-7s %-12s %s %s%s\n", bl_isa_name(v[k].isa), v[k].name,
               is_default(v, k) ? "*" : " ",
               v[k].what, v[k].isa > bl_cpu_best_isa() ? " [not supported by this CPU]" : "");
    }
    printf("unprepared matrices: the lookup-table kernels fall back to their _gather form\n");
}

int cmd_bench(int argc, char **argv) {
    bool quick = false, json = false;
    const char *threads_s = "1,2", *shapes_s = NULL, *batch_s = "1,64";
    int reps = 0, mem_mib = 1024;
    const cli_opt opts[] = {
        {"quick", 0, OPT_FLAG, &quick, NULL, "two shapes, default kernels only, fewer repetitions",
         CLI_ANY},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout instead of the table",
         CLI_ANY},
        {"threads", 0, OPT_STR, &threads_s, "LIST", "thread counts, e.g. 1,2 (default 1,2)",
         CLI_ANY},
        {"shapes", 0, OPT_STR, &shapes_s, "LIST",
         "MxN shapes (outputs x inputs), default 4096x4096,4096x11008,11008x4096,2048x2048,"
         "576x1536", CLI_ANY},
        {"batch", 0, OPT_STR, &batch_s, "LIST", "batch sizes (tokens), default 1,64", CLI_ANY},
        {"reps", 0, OPT_INT, &reps, "N", "minimum timed repetitions, best kept (default 20, quick 5)",
         CLI_MIN(1)},
        {"mem-mib", 0, OPT_INT, &mem_mib, "MIB", "buffer for the bandwidth test (default 1024)",
         CLI_RANGE(16, 65536)},
    };
    const cli_spec spec = {"bench", "",
                           "Checks every sign-matrix kernel against the scalar reference, then "
                           "times it against dense f32 BLAS (sgemv / sgemm) and the measured "
                           "memory bandwidth. gbps = packed sign bytes (m*ceil(n/8)) / time.",
                           opts, (int)(sizeof opts / sizeof opts[0]), 0, 0, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);

    bench b;
    memset(&b, 0, sizeof b);
    b.quick = quick, b.json = json;
    b.reps = reps > 0 ? reps : quick ? 5 : 20;
    b.budget_s = quick ? 0.2 : 0.5;
    if ((b.nthreads = cli_parse_int_list(threads_s, 1, 4096, b.threads, MAX_LIST)) <= 0) {
        fprintf(stderr, "bitllm bench: bad --threads '%s' (want e.g. 1,2)\n", threads_s);
        return 2;
    }
    if ((b.nbatches = cli_parse_int_list(batch_s, 1, 4096, b.batches, MAX_LIST)) <= 0) {
        fprintf(stderr, "bitllm bench: bad --batch '%s' (want e.g. 1,64)\n", batch_s);
        return 2;
    }
    if (!shapes_s)
        shapes_s = quick ? "4096x4096,576x1536"
                         : "4096x4096,4096x11008,11008x4096,2048x2048,576x1536";
    if ((b.nshapes = parse_shapes(shapes_s, b.shapes, MAX_LIST)) <= 0) {
        fprintf(stderr, "bitllm bench: bad --shapes '%s' (want e.g. 4096x4096,576x1536)\n",
                shapes_s);
        return 2;
    }
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE), l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    b.l2 = l2 > 0 ? (size_t)l2 : 0;
    b.l3 = l3 > 0 ? (size_t)l3 : 0;

    /* memory bandwidth at each thread count, on a buffer touched once beforehand */
    size_t bw_bytes = (size_t)mem_mib << 20;
    float *buf = bl_aligned_alloc(bw_bytes);
    if (!buf) return cli_errorf("bench", "cannot allocate %d MiB for the bandwidth test", mem_mib);
    memset(buf, 0, bw_bytes);
    double bw_max = 0.0;
    for (int k = 0; k < b.nthreads; k++) {
        b.bw[k] = mem_bandwidth(buf, bw_bytes, b.threads[k], quick ? 3 : 8);
        if (b.bw[k] > bw_max) bw_max = b.bw[k];
    }
    bl_aligned_free(buf);

    /* Other work on the machine makes every timing here pessimistic, threaded ones most. */
    double load[1] = {0.0};
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const bool busy = getloadavg(load, 1) == 1 && ncpu > 0 && load[0] > 0.5 * (double)ncpu;
    if (!json) {
        printf("bitllm bench: CPU best ISA %s, in use %s; caches L2 %zu KiB, L3 %zu KiB "
               "(as reported); %ld CPUs, load average %.2f\n",
               bl_isa_name(bl_cpu_best_isa()), bl_isa_name(bl_default_isa()), b.l2 >> 10,
               b.l3 >> 10, ncpu, load[0]);
        if (busy)
            printf("warning: the machine is busy; timings (threaded ones most) are pessimistic\n");
        print_selection();
        for (int k = 0; k < b.nthreads; k++)
            printf("memory bandwidth (streaming read of %d MiB, %d thread%s): %.2f GB/s\n",
                   mem_mib, b.threads[k], b.threads[k] > 1 ? "s" : "", b.bw[k]);
        printf("columns: ns = best time per call; GB/s = packed sign bytes / time; %% bw = of the "
               "measured bandwidth at that thread count; xN = f32 BLAS time / kernel time;\n"
               "f16 xN = bitllm's F16 kernel time (same ISA level) / kernel time\n");
    }
    b.rows = cJSON_CreateArray();
    bl_rng rng;
    bl_rng_seed(&rng, 20240601);
    int rc = 0;
    for (int s = 0; s < b.nshapes && rc == 0; s++) {
        rc = bench_shape(&b, b.shapes[s], &rng);
        fflush(stdout);
    }
    if (rc == 0 && json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "mem_bw_gbps", bw_max);
        cJSON *per = cJSON_AddObjectToObject(o, "mem_bw_gbps_by_threads");
        for (int k = 0; k < b.nthreads; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", b.threads[k]);
            cJSON_AddNumberToObject(per, key, b.bw[k]);
        }
        cJSON_AddStringToObject(o, "isa", bl_isa_name(bl_cpu_best_isa()));
        cJSON_AddNumberToObject(o, "load_avg_at_start", load[0]);
        cJSON_AddItemToObject(o, "rows", b.rows);
        cli_print_json(o);
    } else {
        cJSON_Delete(b.rows);
    }
    return rc ? 1 : 0;
}
