/* Quality, stored size and cost of the fitting methods: method × shape × bpw.
 *
 *   build/bench_fit [--quick] [--json] [--iters N] [--only PREFIX] [--shapes LIST] [--bpw LIST]
 *                   [--phases]
 *
 * Shapes (--shapes, comma-separated): 1024 (1024×1024), 4096 (4096×4096), 4096x11008 (the 7B MLP
 * shape), synthetic with LLM-like statistics (Student-t ν = 4 entries of std ≈ 0.02, 1% of the
 * input channels ×10, row scales uniform in [0.5, 1.5); the same deterministic matrices as
 * earlier releases' bench_quant), and stories260K (all 35 projections of the real model, fitted
 * one after another; one row per method and target with the mean rel_err and the summed times;
 * needs $BITLLM_DATA). Default: 1024,4096,stories; --quick: 1024,stories.
 *
 * Methods (--only PREFIX selects by name prefix): rtn1, rtn2 (g128), onebit (SVID, NMF), dbf,
 * mdbf-l1-P2, mdbf-l4-P1 at the targets 1.0, 1.5, 2.0 bpw (--bpw; stories260K: OneBit's cost of
 * each layer). Every fit goes through bl_fit_layer, like quantize and `bitllm fit`.
 *
 * Each row: stored bpw (FP16 vectors counted), middle dimension, outer iterations, relative
 * Frobenius error, wall and CPU seconds of the fit, the floating-point work of its dense products
 * and factorizations, and that work per wall second against the machine's sgemm rate (measured
 * first: a 2048² sgemm with all threads, best of three). --phases adds where the time went.
 * The load average is printed before and after (the machine may be shared). Every row is
 * validated (finite error below 1, stored bpw within the target) and a failed one makes the
 * program exit with status 1. */
#include "bitllm/core.h"
#include "bitllm/quantize.h"
#include "core/parallel.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char method[24], shape[48], params[32];
    double target, bpw, rel, secs, cpu, gflop;
    int iters;
    double phase[BL_FIT_PHASES];
    bool ok;
} row;

static row *rows;
static int nrows, failures;
static double sgemm_gflops;

static float *gen_llm(int64_t m, int64_t n, uint64_t seed) {
    float *W = malloc(sizeof(float) * (size_t)m * (size_t)n);
    bl_err err = {0};
    if (!W || bl_synth_llm_matrix(m, n, seed, W, &err) != BL_OK) {
        fprintf(stderr, "out of memory for a %lldx%lld matrix\n", (long long)m, (long long)n);
        exit(2);
    }
    return W;
}

/* The 1, 5 and 15 minute load averages. */
static void loadavg(char *buf, size_t cap) {
    double a = 0, b = 0, c = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3) snprintf(buf, cap, "unknown");
    else snprintf(buf, cap, "%.2f %.2f %.2f", a, b, c);
    if (f) fclose(f);
}

static void cpu_model(char *buf, size_t cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(buf, cap, "unknown CPU");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) snprintf(buf, cap, "%s", c + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
}

/* GFLOP/s of a 2048² sgemm as the fits run it (single-threaded OpenBLAS on blocks split across
 * the OpenMP threads, bl_sgemm), best of three. */
static double measure_sgemm(void) {
    const int n = 2048;
    float *A = gen_llm(n, n, 1), *B = gen_llm(n, n, 2), *C = malloc(sizeof(float) * n * n);
    double best = 0.0;
    for (int rep = 0; rep < 4; rep++) {
        double t = bl_time_s();
        bl_sgemm(CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n,
                 bl_pool_omp_current());
        t = bl_time_s() - t;
        if (rep > 0 && 2.0 * n * (double)n * n / t / 1e9 > best) best = 2.0 * n * (double)n * n / t / 1e9;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

static void add_row(const char *method, const char *shape, const char *params, double target,
                    double bpw, double rel, int iters, double secs, double cpu, double gflop,
                    const double *phase, bool json) {
    rows = realloc(rows, sizeof(row) * (size_t)(nrows + 1));
    row *r = &rows[nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->shape, sizeof r->shape, "%s", shape);
    snprintf(r->params, sizeof r->params, "%s", params);
    r->target = target;
    r->bpw = bpw;
    r->rel = rel;
    r->iters = iters;
    r->secs = secs;
    r->cpu = cpu;
    r->gflop = gflop;
    if (phase) memcpy(r->phase, phase, sizeof r->phase);
    r->ok = isfinite(rel) && rel < 1.0 && (target <= 0 || bpw <= target + 1e-9);
    if (!r->ok) failures++;
    if (!json) {
        double rate = secs > 0 ? gflop / secs : 0;
        printf("%-11s %-10s %-10s %6.3f %7.4f %5d %8.4f %9.2f %9.2f %8.1f %7.1f %5.0f%%%s\n", method,
               shape, params, target, bpw, iters, rel, secs, cpu, gflop, rate,
               sgemm_gflops > 0 ? 100.0 * rate / sgemm_gflops : 0.0,
               r->ok ? "" : "  VALIDATION FAILED");
        fflush(stdout);
    }
}

typedef struct {
    const char *name;
    const char *method;
    int l, P;
    bool targets; /* dbf/mdbf: one row per bpw target */
} config;

static const config CONFIGS[] = {
    {"rtn1", "rtn1", 1, 1, false},       {"rtn2", "rtn2", 1, 1, false},
    {"onebit", "onebit", 1, 1, false},   {"dbf", "dbf", 1, 1, true},
    {"mdbf-l1-P2", "mdbf", 1, 2, true},  {"mdbf-l4-P1", "mdbf", 4, 1, true},
};
enum { N_CONFIGS = sizeof CONFIGS / sizeof CONFIGS[0] };

static bool selected(const char *only, const char *name) {
    return !only || strncmp(name, only, strlen(only)) == 0;
}

static bl_layer_fit_opts opts_of(const config *c, double bpw, int iters) {
    bl_layer_fit_opts o;
    bl_layer_fit_opts_default(&o);
    bl_method_parse(c->method, &o.method, NULL);
    o.bpw = bpw;
    o.method.params.rank_l = c->l;
    o.method.params.paths = c->P;
    o.fit.seed = 1;
    o.fit.iters = iters;
    return o;
}

static void bench_matrix(const float *W, int64_t m, int64_t n, const char *shape, const config *c,
                         double bpw, int iters, bool json) {
    bl_layer_fit_opts o = opts_of(c, bpw, iters);
    bl_layer_fit_result *res = malloc(sizeof *res);
    bl_linear L;
    bl_err err = {0};
    if (bl_layer_fit_check(&o, m, n, shape, &err) != BL_OK) { /* e.g. l = 4 too costly here */
        free(res);
        return;
    }
    if (bl_fit_layer(W, m, n, &o, &L, res, &err) != BL_OK) {
        fprintf(stderr, "%s %s: %s\n", c->name, shape, err.msg);
        failures++;
        free(res);
        return;
    }
    bl_linear_free(&L);
    /* the middle dimension under the name its format's schema gives it (dbf k, mdbf r), or
     * the group of a grouped format */
    char params[32] = "";
    const bl_format_ops *f = o.method.format;
    if (res->mid) {
        const char *key = "mid";
        for (int k = 0; k < f->n_params; k++)
            if (f->params[k].offset == offsetof(bl_format_params, mid) && f->params[k].alias)
                key = f->params[k].alias;
        snprintf(params, sizeof params, "%s=%lld", key, (long long)res->mid);
    } else if (bl_method_uses(&o.method, false, BL_QP_GROUP)) {
        snprintf(params, sizeof params, "g%d", o.method.params.group);
    }
    add_row(c->name, shape, params, c->targets ? bpw : 0.0, res->bpw, res->rel_err, res->iters,
            res->seconds, res->cpu_seconds, res->trace.flops / 1e9, res->trace.seconds, json);
    free(res);
}

static void bench_synthetic(int64_t m, int64_t n, const double *bpws, int nb, int iters,
                            const char *only, bool json) {
    char shape[48];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)m, (long long)n);
    float *W = gen_llm(m, n, 0x5eed0000ull + (uint64_t)(m * 31 + n));
    for (int c = 0; c < N_CONFIGS; c++) {
        if (!selected(only, CONFIGS[c].name)) continue;
        for (int b = 0; b < (CONFIGS[c].targets ? nb : 1); b++)
            bench_matrix(W, m, n, shape, &CONFIGS[c], CONFIGS[c].targets ? bpws[b] : 0.0, iters,
                         json);
    }
    free(W);
}

/* All 35 projections of stories260K at OneBit's cost per layer: mean rel_err, summed times. */
static void bench_stories(int iters, const char *only, bool json) {
    const char *root = getenv("BITLLM_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf",
             root && *root ? root : "../shared");
    bl_model *mdl = NULL;
    bl_err err = {0};
    if (bl_model_load(path, NULL, &mdl, &err) != BL_OK) {
        fprintf(stderr, "stories260K rows skipped: %s\n", err.msg);
        return;
    }
    bl_layer_fit_result *res = malloc(sizeof *res);
    for (int c = 0; c < N_CONFIGS; c++) {
        if (!selected(only, CONFIGS[c].name)) continue;
        bl_layer_fit_opts o = opts_of(&CONFIGS[c], 0.0, iters);
        double rel = 0, bits = 0, weights = 0, secs = 0, cpu = 0, gflop = 0, phase[BL_FIT_PHASES] = {0};
        int its = 0, cnt = 0;
        bool ok = true;
        for (int l = 0; l < mdl->cfg.n_layers && ok; l++)
            for (int p = 0; p < BL_PROJ_COUNT && ok; p++) {
                char name[96];
                bl_proj_name(l, p, name, sizeof name);
                strcat(name, ".weight");
                float *W;
                int64_t m, n;
                bl_linear L;
                ok = bl_model_matrix(mdl, name, &W, &m, &n, &err) == BL_OK &&
                     bl_layer_fit_check(&o, m, n, name, &err) == BL_OK &&
                     bl_fit_layer(W, m, n, &o, &L, res, &err) == BL_OK;
                if (ok) {
                    bl_linear_free(&L);
                    rel += res->rel_err;
                    bits += res->bpw * (double)(m * n);
                    weights += (double)(m * n);
                    secs += res->seconds;
                    cpu += res->cpu_seconds;
                    gflop += res->trace.flops / 1e9;
                    its += res->iters;
                    for (int k = 0; k < BL_FIT_PHASES; k++) phase[k] += res->trace.seconds[k];
                    cnt++;
                    free(W);
                }
            }
        if (!ok) { /* e.g. l = 4 does not fit OneBit's cost on 32-wide layers */
            if (!json) printf("%-11s stories260K  not fitted: %s\n", CONFIGS[c].name, err.msg);
            continue;
        }
        add_row(CONFIGS[c].name, "stories260K", "35 layers", 0.0, bits / weights, rel / cnt,
                its / cnt, secs, cpu, gflop, phase, json);
    }
    free(res);
    bl_model_free(mdl);
}

static int parse_list(const char *s, double *out, int cap) {
    int n = 0;
    while (s && *s && n < cap) {
        char *end;
        out[n++] = strtod(s, &end);
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int main(int argc, char **argv) {
    bl_blas_use_cpu_kernels(argv); /* re-executes when OpenBLAS fell back to generic kernels */
    bool quick = false, json = false, phases = false;
    int iters = 0;
    const char *only = NULL, *shapes = NULL, *bpw_s = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--phases")) phases = true;
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) shapes = argv[++i];
        else if (!strcmp(argv[i], "--bpw") && i + 1 < argc) bpw_s = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--json] [--iters N] [--only PREFIX] "
                            "[--shapes 1024,4096,4096x11008,stories] [--bpw 1.0,1.5,2.0] "
                            "[--phases]\n", argv[0]);
            return 2;
        }
    }
    double bpws[8] = {1.0, 1.5, 2.0};
    int nb = 3;
    if (bpw_s && (nb = parse_list(bpw_s, bpws, 8)) < 1) {
        fprintf(stderr, "bad --bpw list\n");
        return 2;
    }
    if (!shapes) shapes = quick ? "1024,stories" : "1024,4096,stories";
    char cpu[256], la0[64], la1[64];
    /* OpenBLAS picks its kernels for the CPU unless OPENBLAS_CORETYPE names others (e.g. Haswell's
     * AVX2 kernels on an AVX-512 machine, about half the sgemm rate): printed with every table */
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    cpu_model(cpu, sizeof cpu);
    loadavg(la0, sizeof la0);
    sgemm_gflops = measure_sgemm();
    if (!json) {
        const char *fallback = bl_blas_fallback_core();
        printf("bench_fit: %s, %d OpenMP threads, %s, BLAS core %s%s%s%s%s%s\n", cpu,
               omp_get_max_threads(), openblas_get_config(), openblas_get_corename(),
               coretype ? " (set by OPENBLAS_CORETYPE=" : "", coretype ? coretype : "",
               fallback ? "; OpenBLAS's own choice was " : "", fallback ? fallback : "",
               coretype ? ")" : "");
        printf("sgemm 2048² (all threads): %.1f GFLOP/s; load average %s; ADMM iterations %s\n",
               sgemm_gflops, la0, iters ? "fixed" : "default (convergence stop)");
        printf("%-11s %-10s %-10s %6s %7s %5s %8s %9s %9s %8s %7s %6s\n", "method", "shape",
               "params", "target", "bpw", "iters", "rel_err", "wall_s", "cpu_s", "GFLOP",
               "GFLOP/s", "sgemm");
    }
    const double t0 = bl_time_s();
    char buf[256];
    snprintf(buf, sizeof buf, "%s", shapes);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "stories")) {
            bench_stories(iters, only, json);
            continue;
        }
        long long m = 0, n = 0;
        if (sscanf(tok, "%lldx%lld", &m, &n) == 1) n = m;
        if (m < 1 || n < 1) {
            fprintf(stderr, "bad shape '%s'\n", tok);
            return 2;
        }
        bench_synthetic(m, n, bpws, nb, iters, only, json);
    }
    loadavg(la1, sizeof la1);
    if (json) {
        printf("{\"cpu\": \"%s\", \"threads\": %d, \"blas\": \"%s\", \"blas_core\": \"%s\", "
               "\"sgemm_gflops\": %.2f, \"load_before\": \"%s\", \"load_after\": \"%s\", "
               "\"rows\": [",
               cpu, omp_get_max_threads(), openblas_get_config(), openblas_get_corename(),
               sgemm_gflops, la0, la1);
        for (int i = 0; i < nrows; i++) {
            const row *r = &rows[i];
            printf("%s{\"method\": \"%s\", \"shape\": \"%s\", \"params\": \"%s\", "
                   "\"bpw_target\": %.4f, \"bpw\": %.6f, \"iters\": %d, \"rel_err\": %.6f, "
                   "\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"gflop\": %.2f, \"phase_seconds\": {",
                   i ? ", " : "", r->method, r->shape, r->params, r->target, r->bpw, r->iters,
                   r->rel, r->secs, r->cpu, r->gflop);
            for (int p = 0; p < BL_FIT_PHASES; p++)
                printf("%s\"%s\": %.3f", p ? ", " : "", bl_fit_phase_name((bl_fit_phase)p),
                       r->phase[p]);
            printf("}}");
        }
        printf("]}\n");
    } else {
        if (phases) {
            printf("\nwhere the time went (wall seconds per phase):\n%-11s %-11s %-10s", "method",
                   "shape", "params");
            for (int p = 0; p < BL_FIT_PHASES; p++) printf(" %8s", bl_fit_phase_name((bl_fit_phase)p));
            printf("\n");
            for (int i = 0; i < nrows; i++) {
                if (rows[i].iters == 0) continue;
                printf("%-11s %-11s %-10s", rows[i].method, rows[i].shape, rows[i].params);
                for (int p = 0; p < BL_FIT_PHASES; p++) printf(" %8.2f", rows[i].phase[p]);
                printf("\n");
            }
        }
        printf("total %.1f s, load average %s -> %s, %d validation failure(s)\n",
               bl_time_s() - t0, la0, la1, failures);
    }
    free(rows);
    return failures ? 1 : 0;
}
