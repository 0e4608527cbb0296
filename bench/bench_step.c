/* The weight products of one decode step, as a model runs them: the sign products of every
 * projection of every layer of an architecture (one token; distinct random matrices, so the
 * signs stream from memory as they do in a model, never from the cache of a product repeated on
 * one matrix, which is what `bitllm bench` times) and the output head in F16, q8_0 and q4_0
 * (with --sign-tables i8 the quantized heads take int8 inputs, as a model then runs them). At
 * each thread count, best of R steps, with the share of the step's bytes per second. Checks each
 * kind of product against its scalar reference first. What it leaves out of a real step
 * (attention, norms, SwiGLU, sampling) is what `bitllm speed` adds.
 *
 *   bench_step [--arch NAME] [--threads LIST] [--batch B] [--sign-tables f32|i8] [--reps R] [--json]
 *   (default: tinyllama-1.1b, threads 1,2, batch 1, f32 tables, 20 reps). --batch B: every
 *   product takes B tokens at once (a server's batched decode step); times are per step and
 *   per token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/core.h"
#include "bitllm/format.h"
#include "bitllm/kernels.h"
#include "bitllm/model.h"
#include "bitllm/pool.h"

#define MAX_THREADS_LIST 8
enum { HEAD_F16, HEAD_Q8, HEAD_Q4, HEAD_KINDS };
static const char *head_names[HEAD_KINDS] = {"F16", "q8_0", "q4_0"};

typedef struct {
    bl_qmat q[2]; /* q8_0, q4_0 */
    uint16_t *f16;
    int64_t m, n;
} head_set;

static void die(const char *what) {
    fprintf(stderr, "bench_step: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t bytes) {
    void *p = bl_aligned_alloc(bytes);
    if (!p) die("out of memory");
    return p;
}

/* Max |got − ref| / (1e-5·Σ|x| + 1e-6) over m outputs: ≤ 1 passes (the sign kernels' tolerance
 * in `bitllm bench`; the dense and group-quantized kernels are far inside it). */
static double worst(const float *got, const float *ref, int64_t m, double abssum) {
    double w = 0.0;
    for (int64_t i = 0; i < m; i++) {
        const double d = fabs((double)got[i] - (double)ref[i]) / (1e-5 * abssum + 1e-6);
        if (!(d <= w)) w = d; /* NaN becomes the worst */
    }
    return w;
}

static void make_qmat(bl_qmat *Q, int64_t m, int64_t n, int bits, bl_rng *rng) {
    const int64_t rb = bl_qmat_row_bytes(n, bits), G = (n + 31) / 32;
    uint8_t *qs = xmalloc((size_t)(m * rb));
    float *d = xmalloc((size_t)(m * G) * sizeof(float));
    for (int64_t k = 0; k < m * rb; k++) qs[k] = (uint8_t)bl_rng_u64(rng);
    for (int64_t k = 0; k < m * G; k++) d[k] = bl_round_f16(0.001f * (1.0f + bl_rng_uniform(rng)));
    *Q = (bl_qmat){m, n, bits, 32, qs, d};
}

int main(int argc, char **argv) {
    const char *arch = "tinyllama-1.1b";
    int threads[MAX_THREADS_LIST] = {1, 2}, nthreads = 2, reps = 20, B = 1;
    bl_sign_tables tables = BL_TABLES_F32;
    bool json = false;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--arch") && a + 1 < argc) arch = argv[++a];
        else if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--json")) json = true;
        else if (!strcmp(argv[a], "--batch") && a + 1 < argc) {
            B = atoi(argv[++a]);
            if (B < 1 || B > 256) die("--batch: 1 to 256 tokens");
        } else if (!strcmp(argv[a], "--sign-tables") && a + 1 < argc) {
            if (!bl_sign_tables_from_name(argv[++a], &tables)) die("--sign-tables: f32 or i8");
        }
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) {
            nthreads = 0;
            for (char *s = argv[++a]; *s && nthreads < MAX_THREADS_LIST;) {
                char *end;
                long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > BL_POOL_MAX_THREADS) die("--threads: a list such as 1,2");
                threads[nthreads++] = (int)v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') die("--threads: a list such as 1,2");
            }
        } else {
            fprintf(stderr, "usage: bench_step [--arch NAME] [--threads LIST] [--batch B] "
                            "[--sign-tables f32|i8] [--reps R] [--json]\n");
            return 2;
        }
    }
    if (reps < 1) die("--reps must be at least 1");
    bl_config c;
    if (!bl_synth_preset(arch, &c)) die("unknown --arch (the presets of `bitllm synth`)");

    /* the model's sign matrices, layer-major, in the order a forward pass uses them */
    const int np = c.n_layers * BL_PROJ_COUNT;
    bl_signmat *S = calloc((size_t)np, sizeof *S);
    if (!S) die("out of memory");
    bl_rng rng;
    bl_rng_seed(&rng, 7);
    int64_t maxdim = c.vocab_size;
    double sign_bytes = 0.0;
    for (int k = 0; k < np; k++) {
        int64_t m, n;
        bl_proj_shape(&c, k % BL_PROJ_COUNT, &m, &n);
        const int64_t rb = bl_sign_row_bytes(n);
        uint8_t *bits = xmalloc((size_t)(m * rb));
        for (int64_t q = 0; q < m * rb; q++) bits[q] = (uint8_t)bl_rng_u64(&rng);
        if (n % 8)
            for (int64_t i = 0; i < m; i++) bits[i * rb + rb - 1] &= (uint8_t)((1u << (n % 8)) - 1u);
        bl_signmat_init(&S[k], m, n, bits);
        bl_err err = {0};
        if (bl_signmat_prepare(&S[k], bl_cpu_best_isa(), NULL, &err) != BL_OK) die(err.msg);
        sign_bytes += (double)S[k].packed_bytes;
        if (m > maxdim) maxdim = m;
        if (n > maxdim) maxdim = n;
    }
    head_set H = {.m = c.vocab_size, .n = c.dim};
    H.f16 = xmalloc((size_t)(H.m * H.n) * 2);
    for (int64_t k = 0; k < H.m * H.n; k++) H.f16[k] = bl_f32_to_f16(0.02f * bl_rng_normal(&rng));
    make_qmat(&H.q[0], H.m, H.n, 8, &rng);
    make_qmat(&H.q[1], H.m, H.n, 4, &rng);
    const double head_bytes[HEAD_KINDS] = {
        (double)(H.m * H.n) * 2,
        (double)(H.m * bl_qmat_row_bytes(H.n, 8)) + (double)(H.m * (H.n / 32)) * 2,
        (double)(H.m * bl_qmat_row_bytes(H.n, 4)) + (double)(H.m * (H.n / 32)) * 2};

    const size_t bmax = (size_t)B * (size_t)maxdim;
    float *x = xmalloc(bmax * sizeof(float)), *y = xmalloc(bmax * sizeof(float));
    float *ref = xmalloc(bmax * sizeof(float));
    for (size_t k = 0; k < bmax; k++) x[k] = bl_rng_normal(&rng);
    double xabs = 0.0;
    for (int64_t k = 0; k < c.dim; k++) xabs += fabs(x[k]);

    /* checks: one projection of each shape and each head against the references */
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        double ab = 0.0;
        for (int64_t k = 0; k < S[p].n; k++) ab += fabs(x[k]);
        bl_sign_matmul(&S[p], x, 1, y, NULL);
        bl_sign_matmul_ref(&S[p], x, 1, ref);
        if (worst(y, ref, S[p].m, ab) > 1.0) die("a sign product disagrees with the reference");
        if (tables == BL_TABLES_I8) { /* the int8 tables: their specification, bit for bit */
            const bl_exec e8 = {NULL, BL_ISA_AUTO, BL_TABLES_I8};
            bl_sign_matmul(&S[p], x, B, y, &e8);
            bl_sign_matmul_i8_ref(&S[p], x, B, ref);
            if (memcmp(y, ref, (size_t)(B * S[p].m) * sizeof *y))
                die("an int8-table sign product differs from its specification");
        }
    }
    bl_half_matmul(BL_DT_F16, H.f16, H.m, H.n, x, 1, y, NULL);
    bl_half_matmul_ref(BL_DT_F16, H.f16, H.m, H.n, x, 1, ref);
    if (worst(y, ref, H.m, xabs) > 1.0) die("the F16 head disagrees with the reference");
    void *qwork = xmalloc(bl_qmat_i8_work_bytes(H.n, B));
    for (int q = 0; q < 2; q++) {
        bl_qmat_matmul(&H.q[q], x, 1, y, NULL);
        bl_qmat_matmul_ref(&H.q[q], x, 1, ref);
        if (worst(y, ref, H.m, xabs) > 1.0) die("a quantized head disagrees with the reference");
        if (tables == BL_TABLES_I8) { /* int8 inputs: the specification, bit for bit */
            const bl_exec e8 = {NULL, BL_ISA_AUTO, BL_TABLES_I8};
            bl_qmat_matmul_i8(&H.q[q], x, B, y, qwork, &e8);
            bl_qmat_matmul_i8_ref(&H.q[q], x, B, ref, qwork);
            if (memcmp(y, ref, (size_t)(B * H.m) * sizeof *y))
                die("an int8-input quantized head differs from its specification");
        }
    }

    double load[1] = {-1.0};
    if (getloadavg(load, 1) != 1) load[0] = -1.0;
    if (!json) {
        printf("%s: %d layers x %d projections, %d token(s) per product, %s sign tables; sign "
               "matrices %.1f MiB (distinct), "
               "head %lldx%lld: F16 %.1f MiB, q8_0 %.1f MiB, q4_0 %.1f MiB\n",
               arch, c.n_layers, BL_PROJ_COUNT, B, bl_sign_tables_name(tables),
               sign_bytes / 1048576.0, (long long)H.m,
               (long long)H.n, head_bytes[0] / 1048576.0, head_bytes[1] / 1048576.0,
               head_bytes[2] / 1048576.0);
        printf("kernels %s, load average %.2f; best of %d; times per step (%d token(s)); GB/s = "
               "bytes of the weights read / time; tok/s = tokens per second of the products\n\n",
               bl_isa_name(bl_cpu_best_isa()), load[0], reps, B);
        printf("| threads | sign products ms | GB/s | F16 head ms | GB/s | q8_0 head ms | q4_0 head ms "
               "| signs + F16 head ms | x 1st | signs + q4_0 head ms | x 1st | tok/s (signs + q4_0) |\n");
        printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        printf("{\"arch\": \"%s\", \"batch\": %d, \"sign_tables\": \"%s\", \"load_average\": %.2f, "
               "\"sign_bytes\": %.0f, \"rows\": [", arch, B, bl_sign_tables_name(tables), load[0],
               sign_bytes);
    }
    double first[2] = {0, 0};
    for (int ti = 0; ti < nthreads; ti++) {
        bl_pool *pool = NULL;
        bl_err err = {0};
        if (bl_pool_new(threads[ti], &pool, &err) != BL_OK) die(err.msg);
        const bl_exec ex = {pool, BL_ISA_AUTO, tables};
        double best_sign = 1e30, best_head[HEAD_KINDS] = {1e30, 1e30, 1e30};
        for (int r = 0; r < reps + 1; r++) { /* the first pass warms up */
            double t0 = bl_time_s();
            for (int k = 0; k < np; k++) bl_sign_matmul(&S[k], x, B, y, &ex);
            const double ts = bl_time_s() - t0;
            double th[HEAD_KINDS];
            t0 = bl_time_s();
            bl_half_matmul(BL_DT_F16, H.f16, H.m, H.n, x, B, y, &ex);
            th[HEAD_F16] = bl_time_s() - t0;
            for (int q = 0; q < 2; q++) {
                t0 = bl_time_s();
                if (tables == BL_TABLES_I8) bl_qmat_matmul_i8(&H.q[q], x, B, y, qwork, &ex);
                else bl_qmat_matmul(&H.q[q], x, B, y, &ex);
                th[HEAD_Q8 + q] = bl_time_s() - t0;
            }
            if (r == 0) continue;
            if (ts < best_sign) best_sign = ts;
            for (int h = 0; h < HEAD_KINDS; h++)
                if (th[h] < best_head[h]) best_head[h] = th[h];
        }
        bl_pool_free(pool);
        const double step16 = best_sign + best_head[HEAD_F16], step4 = best_sign + best_head[HEAD_Q4];
        if (ti == 0) first[0] = step16, first[1] = step4;
        if (!json)
            printf("| %d | %.2f | %.1f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n",
                   threads[ti], best_sign * 1e3, sign_bytes / best_sign / 1e9,
                   best_head[HEAD_F16] * 1e3, head_bytes[HEAD_F16] / best_head[HEAD_F16] / 1e9,
                   best_head[HEAD_Q8] * 1e3, best_head[HEAD_Q4] * 1e3, step16 * 1e3,
                   first[0] / step16, step4 * 1e3, first[1] / step4, B / step4);
        else {
            printf("%s{\"threads\": %d, \"sign_s\": %.6g", ti ? ", " : "", threads[ti], best_sign);
            for (int h = 0; h < HEAD_KINDS; h++)
                printf(", \"head_%s_s\": %.6g", head_names[h], best_head[h]);
            printf("}");
        }
    }
    if (json) printf("]}\n");
    for (int k = 0; k < np; k++) {
        bl_aligned_free((void *)S[k].bits);
        bl_signmat_release(&S[k]);
    }
    free(S);
    for (int q = 0; q < 2; q++) bl_aligned_free((void *)H.q[q].qs), bl_aligned_free((void *)H.q[q].d);
    bl_aligned_free(H.f16), bl_aligned_free(x), bl_aligned_free(y), bl_aligned_free(ref);
    bl_aligned_free(qwork);
    return 0;
}
