/* Quality and cost of the fitting methods on deterministic LLM-like matrices.
 *
 *   build/bench_quant [--quick] [--json] [--iters N] [--only PREFIX]
 *
 * Matrices: Student-t (ν = 4) entries scaled to std ≈ 0.02, 1% of the input channels ×10 (the
 * outlier channels of real projections), row scales uniform in [0.5, 1.5). Shapes 4096×4096 and
 * 4096×11008 (--quick: 1024×1024 and 1024×2752). For every method: target bpw, actual bpw (exact
 * stored bits / (m·n), FP16 vectors counted), relative Frobenius error and wall seconds of the fit.
 * With --quick a "dbf-randinit" row runs the same ADMM from the reference code's random normal
 * start (internal API, same iteration count, FP16 rounding skipped) to compare with the SVD start.
 * Every row is validated (finite error below 1, actual bpw within the target) before it is
 * reported; a failed validation makes the program exit with status 1. */
#include "bitllm/quant.h"
#include "quant/qf_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
    char method[48];
    int64_t m, n;
    double target, actual, rel, secs, cpu;
    char params[48];
} row;

/* CPU seconds of this process (all threads): on a shared machine the wall time of a fit depends
 * on the other load, its CPU time much less. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}



static float *gen_llm(int64_t m, int64_t n, uint64_t seed) {
    float *W = malloc(sizeof(float) * (size_t)m * (size_t)n);
    float *cs = malloc(sizeof(float) * (size_t)n);
    if (!W || !cs) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    bl_rng r;
    bl_rng_seed(&r, seed);
    for (int64_t j = 0; j < n; j++) cs[j] = bl_rng_uniform(&r) < 0.01f ? 10.0f : 1.0f;
    /* std of t₄ is √2: scale so ordinary entries have std 0.02 */
    const float base = 0.02f / sqrtf(2.0f);
    for (int64_t i = 0; i < m; i++) {
        float rs = 0.5f + bl_rng_uniform(&r);
        for (int64_t j = 0; j < n; j++) {
            double c = 0.0;
            for (int k = 0; k < 4; k++) {
                float y = bl_rng_normal(&r);
                c += (double)y * y;
            }
            W[i * n + j] = base * rs * cs[j] * bl_rng_normal(&r) / (float)sqrt(c / 4.0);
        }
    }
    free(cs);
    return W;
}

static float *unpack(const uint8_t *bits, int64_t rows, int64_t cols) {
    float *S = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    int64_t rb = bl_sign_row_bytes(cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) S[i * cols + j] = (float)bl_sign_get(bits, rb, i, j);
    return S;
}

static float *dense_dbf(const bl_dbf *q) {
    int64_t m = q->m, n = q->n, k = q->k;
    float *A = unpack(q->A, m, k), *B = unpack(q->B, k, n);
    float *Y = malloc(sizeof(float) * (size_t)m * (size_t)n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t t = 0; t < k; t++) A[i * k + t] *= q->a[i] * q->mu[t];
    for (int64_t t = 0; t < k; t++)
        for (int64_t j = 0; j < n; j++) B[t * n + j] *= q->b[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, A, (int)k,
                B, (int)n, 0.0f, Y, (int)n);
    free(A);
    free(B);
    return Y;
}

static float *dense_mdbf(const bl_mdbf *q) {
    int64_t m = q->m, n = q->n, r = q->r;
    int l = q->l;
    float *Y = malloc(sizeof(float) * (size_t)m * (size_t)n);
    for (int p = 0; p < q->P; p++) {
        const bl_mdbf_path *pa = &q->paths[p];
        float *F = unpack(pa->SA, m, r), *G = unpack(pa->SB, r, n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t t = 0; t < r; t++) {
                float e = 0.0f;
                for (int j = 0; j < l; j++) e += pa->A_env[i * l + j] * pa->Q_U[t * l + j];
                F[i * r + t] *= e;
            }
        for (int64_t t = 0; t < r; t++)
            for (int64_t c = 0; c < n; c++) {
                float e = 0.0f;
                for (int j = 0; j < l; j++) e += pa->Q_V[t * l + j] * pa->B_env[c * l + j];
                G[t * n + c] *= e;
            }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0f, F,
                    (int)r, G, (int)n, p == 0 ? 0.0f : 1.0f, Y, (int)n);
        free(F);
        free(G);
    }
    return Y;
}

static float *dense_onebit(const bl_onebit *q) {
    float *Y = malloc(sizeof(float) * (size_t)q->m * (size_t)q->n);
    int64_t rb = bl_sign_row_bytes(q->n);
    for (int64_t i = 0; i < q->m; i++)
        for (int64_t j = 0; j < q->n; j++)
            Y[i * q->n + j] = q->h[i] * (float)bl_sign_get(q->sign, rb, i, j) * q->g[j];
    return Y;
}

static float *dense_rtn(const bl_rtn *q) {
    int64_t m = q->m, n = q->n;
    float *Y = malloc(sizeof(float) * (size_t)m * (size_t)n);
    if (q->bits == 1) {
        int64_t rb = bl_sign_row_bytes(n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                Y[i * n + j] = (float)bl_sign_get(q->q, rb, i, j) * q->scale[i];
        return Y;
    }
    int64_t ng = (n + q->group - 1) / q->group, rb = (n * q->bits + 7) / 8;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            unsigned code = 0;
            for (int b = 0; b < q->bits; b++) {
                int64_t pos = j * q->bits + b;
                code |= (unsigned)((q->q[i * rb + (pos >> 3)] >> (pos & 7)) & 1) << b;
            }
            int64_t g = j / q->group;
            Y[i * n + j] = ((float)code - q->zero[i * ng + g]) * q->scale[i * ng + g];
        }
    return Y;
}

static void free_mdbf(bl_mdbf *q) {
    for (int p = 0; p < q->P; p++) {
        free(q->paths[p].SA);
        free(q->paths[p].SB);
        free(q->paths[p].A_env);
        free(q->paths[p].Q_U);
        free(q->paths[p].Q_V);
        free(q->paths[p].B_env);
    }
    free(q->paths);
}

/* exact stored bits (ALGORITHMS.md §1, §4, §5, §6) */
static double bits_dbf(double m, double n, double k) { return k * (m + n) + 16.0 * (m + n + k); }
static double bits_mdbf(double m, double n, double r, int l, int P) {
    return P * (r * (m + n) + 16.0 * l * (m + n + 2.0 * r));
}

static row *rows;
static int nrows, failures;

static void add_row(const char *method, const char *params, int64_t m, int64_t n, double target,
                    double bits, double rel, double secs, double cpu, bool json) {
    rows = realloc(rows, sizeof(row) * (size_t)(nrows + 1));
    row *r = &rows[nrows++];
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->params, sizeof r->params, "%s", params);
    r->m = m;
    r->n = n;
    r->target = target;
    r->actual = bits / ((double)m * (double)n);
    r->rel = rel;
    r->secs = secs;
    r->cpu = cpu;
    bool ok = isfinite(rel) && rel < 1.0 && r->actual <= target + 1e-9;
    if (!ok) failures++;
    if (!json) {
        printf("%-12s %5lldx%-5lld %-20s %6.3f %8.4f %8.4f %9.2f %9.2f%s\n", method, (long long)m,
               (long long)n, params, target, r->actual, rel, secs, cpu,
               ok ? "" : "  VALIDATION FAILED");
        fflush(stdout);
    }
}

static void progress_none(void *ctx, double f) {
    (void)ctx;
    (void)f;
}

/* --only PREFIX: "dbf" selects dbf and dbf-randinit, "mdbf-l4" both l = 4 rows, "rtn" both RTNs */
static bool selected(const char *only, const char *name) {
    return !only || strncmp(name, only, strlen(only)) == 0;
}

typedef struct {
    double wall, cpu;
} stamp;

static stamp stamp_now(void) { return (stamp){bl_time_s(), cpu_s()}; }
static stamp stamp_since(stamp s) { return (stamp){bl_time_s() - s.wall, cpu_s() - s.cpu}; }

/* DBF from the reference's random normal start: same path code, same iteration count. */
static void bench_random_start(const float *W, int64_t m, int64_t n, int64_t k, int iters,
                               bool json) {
    bl_qf_path p;
    bl_err err;
    float *Y = malloc(sizeof(float) * (size_t)m * (size_t)n);
    if (!Y || bl_qf_path_alloc(&p, m, n, k, 1, 1, &err) != BL_OK) {
        fprintf(stderr, "dbf-randinit: allocation failed\n");
        failures++;
        free(Y);
        return;
    }
    bl_qf_admm_opts ao = {
        .iters = iters ? iters : 40,
        .inner = BL_QF_DEFAULT_INNER,
        .reg = BL_QF_RIDGE,
        .proj_iters = BL_QF_PROJ_ITERS,
    };
    stamp t = stamp_now();
    bl_qf_path_init_random(&p, 1, 0.02);
    bl_status st = bl_qf_admm(&p, W, NULL, &ao, NULL, &err);
    t = stamp_since(t);
    if (st == BL_OK) st = bl_qf_path_product(&p, 1.0f, 0.0f, Y, &err);
    if (st != BL_OK) {
        fprintf(stderr, "dbf-randinit: %s\n", err.msg);
        failures++;
    } else {
        char params[48];
        snprintf(params, sizeof params, "k=%lld it=%d", (long long)k, ao.iters);
        /* stored like DBF: k(m+n) sign bits + a, μ, b */
        add_row("dbf-randinit", params, m, n, 1.0, bits_dbf((double)m, (double)n, (double)k),
                bl_rel_err(W, Y, m, n), t.wall, t.cpu, json);
    }
    bl_qf_path_free(&p);
    free(Y);
}

static void bench_baselines(const float *W, int64_t m, int64_t n, const char *only, bool json) {
    bl_err err;
    for (int bits = 1; bits <= 2; bits++) {
        const char *name = bits == 1 ? "rtn1" : "rtn2";
        if (!selected(only, name)) continue;
        bl_rtn q;
        stamp t = stamp_now();
        if (bl_fit_rtn(W, m, n, bits, 128, &q, &err) != BL_OK) {
            fprintf(stderr, "%s: %s\n", name, err.msg);
            failures++;
            continue;
        }
        t = stamp_since(t);
        float *Y = dense_rtn(&q);
        double b = bits == 1 ? (double)m * n + 16.0 * m
                             : (double)m * n * bits + 32.0 * m * (double)((n + 127) / 128);
        add_row(name, bits == 1 ? "" : "g128", m, n, b / ((double)m * n), b,
                bl_rel_err(W, Y, m, n), t.wall, t.cpu, json);
        free(Y);
        free(q.q);
        free(q.scale);
        free(q.zero);
    }
    for (int nmf = 0; nmf < 2; nmf++) {
        const char *name = nmf ? "onebit-nmf" : "onebit-svd";
        if (!selected(only, name)) continue;
        bl_fit_opts o;
        bl_fit_opts_default(&o);
        o.nmf = nmf;
        bl_onebit q;
        stamp t = stamp_now();
        if (bl_fit_onebit(W, m, n, &o, &q, &err) != BL_OK) {
            fprintf(stderr, "%s: %s\n", name, err.msg);
            failures++;
            continue;
        }
        t = stamp_since(t);
        float *Y = dense_onebit(&q);
        double b = (double)m * n + 16.0 * (m + n);
        add_row(name, "", m, n, b / ((double)m * n), b, bl_rel_err(W, Y, m, n), t.wall, t.cpu,
                json);
        free(Y);
        free(q.sign);
        free(q.g);
        free(q.h);
    }
}

/* One DBF (l = 0) or MDBF fit; returns the relative error (−1 on failure). */
static double fit_one(const float *W, int64_t m, int64_t n, int64_t r, int l, int P,
                      const bl_fit_opts *o, stamp *t) {
    bl_err err;
    float *Y = NULL;
    *t = stamp_now();
    if (l == 0) {
        bl_dbf q;
        if (bl_fit_dbf(W, m, n, r, o, &q, &err) != BL_OK) goto fail;
        *t = stamp_since(*t);
        Y = dense_dbf(&q);
        free(q.A);
        free(q.B);
        free(q.a);
        free(q.mu);
        free(q.b);
    } else {
        bl_mdbf q;
        if (bl_fit_mdbf(W, m, n, r, l, P, o, &q, &err) != BL_OK) goto fail;
        *t = stamp_since(*t);
        Y = dense_mdbf(&q);
        free_mdbf(&q);
    }
    double rel = bl_rel_err(W, Y, m, n);
    free(Y);
    return rel;
fail:
    fprintf(stderr, "fit (r=%lld, l=%d, P=%d): %s\n", (long long)r, l, P, err.msg);
    failures++;
    return -1.0;
}

/* The DBF/MDBF configurations. `full` marks the bpw targets (1.0, 1.5, 2.0) run without --quick:
 * P = 2 costs two fits, so the full run keeps it to the targets where it says most. */
static const struct {
    const char *name;
    int l, P; /* l = 0: DBF */
    bool full[3];
} configs[] = {
    {"dbf", 0, 1, {true, true, true}},
    {"mdbf-l4-P1", 4, 1, {true, true, true}},
    {"mdbf-l1-P2", 1, 2, {true, false, true}},
    {"mdbf-l4-P2", 4, 2, {true, false, false}},
};

static void bench_shape(int64_t m, int64_t n, int iters, const char *only, bool quick, bool json) {
    float *W = gen_llm(m, n, 0x5eed0000ull + (uint64_t)(m * 31 + n));
    bench_baselines(W, m, n, only, json);
    bl_fit_opts o;
    bl_fit_opts_default(&o);
    o.seed = 1;
    o.iters = iters;
    o.progress = progress_none;
    const double bpws[] = {1.0, 1.5, 2.0};
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        if (!selected(only, configs[c].name)) continue;
        int l = configs[c].l, P = configs[c].P;
        int64_t prev_r = -1;
        double prev_rel = 0.0;
        stamp prev_t = {0.0, 0.0};
        for (int bi = 0; bi < 3; bi++) {
            if (!quick && !configs[c].full[bi]) continue;
            double bpw = bpws[bi];
            int64_t r = l == 0 ? bl_dbf_mid_for_bpw(m, n, bpw) : bl_mdbf_rank_for_bpw(m, n, bpw, l, P);
            char params[48];
            snprintf(params, sizeof params, "%s=%lld%s", l == 0 ? "k" : "r", (long long)r,
                     r == prev_r ? " (same fit)" : "");
            stamp t = prev_t;
            /* the rank saturates at min(m, n): a higher target then repeats the same fit */
            double rel = r == prev_r ? prev_rel : fit_one(W, m, n, r, l, P, &o, &t);
            if (rel < 0.0) continue;
            double bits = l == 0 ? bits_dbf((double)m, (double)n, (double)r)
                                 : bits_mdbf((double)m, (double)n, (double)r, l, P);
            add_row(configs[c].name, params, m, n, bpw, bits, rel, t.wall, t.cpu, json);
            if (l == 0 && bi == 0 && quick && selected(only, "dbf-randinit"))
                bench_random_start(W, m, n, r, iters, json);
            prev_r = r;
            prev_rel = rel;
            prev_t = t;
        }
    }
    free(W);
}

int main(int argc, char **argv) {
    bool quick = false, json = false;
    int iters = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--json] [--iters N] [--only PREFIX]\n", argv[0]);
            return 2;
        }
    }
    int64_t shapes[2][2] = {{4096, 4096}, {4096, 11008}};
    if (quick) {
        shapes[0][0] = 1024, shapes[0][1] = 1024;
        shapes[1][0] = 1024, shapes[1][1] = 2752;
    }
    if (!json) {
        char it[32];
        snprintf(it, sizeof it, iters ? "%d" : "default", iters);
        printf("bench_quant: OpenMP threads %d, OpenBLAS threads %d, ADMM outer iterations %s\n",
               omp_get_max_threads(), openblas_get_num_threads(), it);
        printf("%-12s %-11s %-20s %6s %8s %8s %9s %9s\n", "method", "shape", "params", "target",
               "bpw", "rel_err", "seconds", "cpu_s");
    }
    double t0 = bl_time_s();
    for (int s = 0; s < 2; s++) bench_shape(shapes[s][0], shapes[s][1], iters, only, quick, json);
    if (json) {
        printf("[\n");
        for (int i = 0; i < nrows; i++)
            printf("  {\"method\": \"%s\", \"m\": %lld, \"n\": %lld, \"params\": \"%s\", "
                   "\"bpw_target\": %.4f, \"bpw\": %.6f, \"rel_err\": %.6f, \"seconds\": %.3f, "
                   "\"cpu_seconds\": %.3f}%s\n",
                   rows[i].method, (long long)rows[i].m, (long long)rows[i].n, rows[i].params,
                   rows[i].target, rows[i].actual, rows[i].rel, rows[i].secs, rows[i].cpu,
                   i + 1 < nrows ? "," : "");
        printf("]\n");
    } else {
        printf("total %.1f s, %d validation failure(s)\n", bl_time_s() - t0, failures);
    }
    free(rows);
    return failures ? 1 : 0;
}
