/* Training throughput of the distillation engine: tokens per second of the student's forward
 * pass and of forward + backward, per layer format, at stated model sizes (random weights with
 * the dimensions of llama2.c's stories260K and stories15M). Validates first: the f32 gradients
 * of a small model against the f64 instantiation. Prints a table; "KD step" is the rate of a
 * distillation step (dense teacher forward + student forward and backward) derived from the two.
 *
 *   bench_train [--quick] [--steps N]      threads: OMP_NUM_THREADS */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

typedef struct {
    const char *name;
    bl_config c;
    int B, T;
} bench_cfg;

static const bench_cfg configs[] = {
    {"stories260K", {.arch = BL_ARCH_LLAMA, .dim = 64, .hidden_dim = 172, .n_layers = 5,
                     .n_heads = 8, .n_kv_heads = 4, .head_dim = 8, .vocab_size = 512,
                     .max_seq = 512, .rope_theta = 10000, .norm_eps = 1e-5f,
                     .rope_interleaved = true}, 8, 256},
    {"stories15M", {.arch = BL_ARCH_LLAMA, .dim = 288, .hidden_dim = 768, .n_layers = 6,
                    .n_heads = 6, .n_kv_heads = 6, .head_dim = 48, .vocab_size = 32000,
                    .max_seq = 256, .rope_theta = 10000, .norm_eps = 1e-5f,
                    .rope_interleaved = true}, 2, 256},
};

/* The layout of a random layer of the table's format `kind`, through the registry: its default
 * parameters, with a middle dimension near onebit's bits for the model's square projections
 * where the format has one. */
static bl_method spec_for(int kind, const bl_config *c) {
    bl_method m;
    bl_method s;
    nn_build_opts o;
    bl_err err = {0};
    nn_build_opts_default(&o);
    if (bl_method_parse(nn_formats[kind]->format, &m, &err) == BL_OK) {
        if (m.format->mid_from_bpw) m.params.mid = c->dim / 2;
        if (nn_method_spec(&m, &o, &s, &err) == BL_OK) return s;
    }
    fprintf(stderr, "bench_train: %s\n", err.msg);
    exit(1);
}

static const char *kind_name(int k) { return nn_formats[k]->format; }

/* Relative difference of the f32 and f64 gradients of one random batch. */
static double validate(void) {
    const bl_config c = {.arch = BL_ARCH_QWEN3, .dim = 24, .hidden_dim = 40, .n_layers = 2,
                         .n_heads = 4, .n_kv_heads = 2, .head_dim = 6, .vocab_size = 37,
                         .max_seq = 16, .rope_theta = 1e4f, .norm_eps = 1e-6f, .qk_norm = true};
    bl_method spec[BL_PROJ_COUNT];
    for (int p = 0; p < BL_PROJ_COUNT; p++) spec[p] = spec_for(p % nn_n_formats, &c), spec[p].params.mid = 9;
    nn_build_opts o;
    nn_build_opts_default(&o);
    nn_model *M;
    float *P;
    if (nn_model_random(&c, spec, 5, 16, &o, &M, &P, NULL)) return 1;
    nn_model_train_all(M);
    nn_acts_f32 *A;
    nn_acts_f64 *A64;
    if (nn_acts_new_f32(M, 2, 16, &A, NULL) || nn_acts_new_f64(M, 2, 16, &A64, NULL)) return 1;
    int32_t tok[32];
    for (int i = 0; i < 32; i++) tok[i] = (i * 7 + 3) % c.vocab_size;
    double *P64 = malloc(8 * M->n_params), *G64 = calloc(M->n_params, 8);
    float *G = calloc(M->n_params, 4);
    for (size_t i = 0; i < M->n_params; i++) P64[i] = P[i];
    nn_forward_f32(M, P, A, tok);
    nn_hard_ce_f32(A->logits, tok + 1, 31, c.vocab_size, 1, A->logits, A->row);
    memset(A->logits + 31 * c.vocab_size, 0, 4 * (size_t)c.vocab_size);
    nn_backward_f32(M, P, G, A, tok, A->logits, NULL);
    nn_forward_f64(M, P64, A64, tok);
    nn_hard_ce_f64(A64->logits, tok + 1, 31, c.vocab_size, 1, A64->logits, A64->row);
    memset(A64->logits + 31 * c.vocab_size, 0, 8 * (size_t)c.vocab_size);
    nn_backward_f64(M, P64, G64, A64, tok, A64->logits, NULL);
    double num = 0, den = 0;
    for (size_t i = 0; i < M->n_params; i++) {
        num += (G[i] - G64[i]) * (G[i] - G64[i]);
        den += G64[i] * G64[i];
    }
    free(P64), free(G64), free(G);
    nn_acts_free_f32(A);
    nn_acts_free_f64(A64);
    bl_aligned_free(P);
    nn_model_free(M);
    return sqrt(num / den);
}

typedef struct {
    double fwd, fwdbwd; /* tokens per second */
    size_t params;
} timing;

static int time_one(const bench_cfg *bc, int kind, int steps, timing *out) {
    bl_method spec[BL_PROJ_COUNT];
    for (int p = 0; p < BL_PROJ_COUNT; p++) spec[p] = spec_for(kind, &bc->c);
    nn_build_opts o;
    nn_build_opts_default(&o);
    nn_model *M;
    float *P;
    bl_err err = {0};
    if (nn_model_random(&bc->c, spec, 1, bc->T, &o, &M, &P, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    nn_acts_f32 *A;
    if (nn_acts_new_f32(M, bc->B, bc->T, &A, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    const int64_t N = A->N;
    const int V = bc->c.vocab_size;
    float *G = calloc(M->n_params, sizeof *G), *pt = malloc(sizeof(float) * (size_t)(N * V));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) tok[i] = (int32_t)((uint64_t)(i * 2654435761u) % (uint64_t)V);
    for (int64_t i = 0; i < N * V; i++) pt[i] = 1.0f / (float)V;
    nn_forward_f32(M, P, A, tok); /* warm-up: first touch of the buffers */
    double t0 = bl_time_s();
    for (int s = 0; s < steps; s++) nn_forward_f32(M, P, A, tok);
    out->fwd = (double)N * steps / (bl_time_s() - t0);
    t0 = bl_time_s();
    for (int s = 0; s < steps; s++) {
        nn_forward_f32(M, P, A, tok);
        nn_soft_ce_f32(A->logits, pt, N, V, 1, A->logits, A->row);
        nn_backward_f32(M, P, G, A, tok, A->logits, NULL);
        nn_model_sync_signs_f32(M, P, NULL);
    }
    out->fwdbwd = (double)N * steps / (bl_time_s() - t0);
    out->params = M->n_params;
    free(G), free(pt), free(tok);
    nn_acts_free_f32(A);
    bl_aligned_free(P);
    nn_model_free(M);
    return 0;
}

int main(int argc, char **argv) {
    int steps = 5, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_train [--quick] [--steps N]\n");
            return 2;
        }
    }
    if (quick) steps = 2;
    if (steps < 1) steps = 1;
    const double rel = validate();
    printf("validation: f32 vs f64 gradients, relative L2 difference %.2e %s\n", rel,
           rel < 1e-4 ? "(ok)" : "(FAILED)");
    if (!(rel < 1e-4)) return 1;
    const char *pol = getenv("OMP_WAIT_POLICY");
    printf("threads %d, OMP_WAIT_POLICY %s, %d timed steps per row\n\n", omp_get_max_threads(),
           pol ? pol : "(default)", steps);
    printf("| model | projections | B×T | parameters | fwd tok/s | fwd+bwd tok/s | "
           "KD step tok/s |\n");
    printf("|---|---|---|---|---|---|---|\n");
    const int nc = quick ? 1 : (int)(sizeof configs / sizeof configs[0]);
    for (int c = 0; c < nc; c++) {
        timing dense = {0};
        for (int k = 0; k < nn_n_formats; k++) {
            timing t;
            if (time_one(&configs[c], k, steps, &t)) return 1;
            if (k == 0) dense = t; /* the table starts with dense */
            const double kd = 1.0 / (1.0 / dense.fwd + 1.0 / t.fwdbwd);
            printf("| %s | %s | %d×%d | %zu | %.0f | %.0f | %.0f |\n", configs[c].name,
                   kind_name(k), configs[c].B, configs[c].T, t.params, t.fwd, t.fwdbwd, kd);
            fflush(stdout);
        }
    }
    return 0;
}
