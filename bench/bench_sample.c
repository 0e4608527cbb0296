/* The cost of drawing one token: bl_sample on vocabularies of LLaMA-2 (32000), LLaMA-3 (128256)
 * and Qwen (151936) size, for flat logits (uniform in ±4: the widest nucleus) and peaked ones
 * (the sum of four uniforms, standard deviation ~3, plus one logit 8 above the rest: a language
 * model's usual shape), under greedy decoding, temperature alone, the nucleus (bitllm generate's
 * and chat's defaults, temperature 0.8 and top_p 0.9) and llama.cpp's default chain (top_k 40,
 * top_p 0.95, min_p 0.05, temperature 0.8). Microseconds per token, median of R runs of N draws,
 * on one thread (a server samples its sequences side by side, one per thread).
 *
 *   bench_sample [--reps R] [--draws N] [--json]   (default R 5, N 200) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/core.h"
#include "bitllm/model.h"

typedef struct {
    const char *name;
    float temp, top_p, min_p;
    int top_k;
} setting;

static const setting settings[] = {
    {"greedy", 0.0f, 1.0f, 0.0f, 0},
    {"temperature 0.8", 0.8f, 1.0f, 0.0f, 0},
    {"temperature 0.8, top_p 0.9", 0.8f, 0.9f, 0.0f, 0},
    {"top_k 40, top_p 0.95, min_p 0.05, temperature 0.8", 0.8f, 0.95f, 0.05f, 40},
};
enum { N_SETTINGS = sizeof settings / sizeof *settings };

static int by_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void make_logits(float *l, int V, bool peaked, uint64_t seed) {
    bl_rng g;
    bl_rng_seed(&g, seed);
    for (int i = 0; i < V; i++) {
        if (!peaked) {
            l[i] = (bl_rng_uniform(&g) - 0.5f) * 8.0f;
            continue;
        }
        float t = 0.0f;
        for (int k = 0; k < 4; k++) t += bl_rng_uniform(&g);
        l[i] = (t - 2.0f) * 5.2f;
    }
    if (peaked) {
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        l[V / 3] = mx + 8.0f;
    }
}

int main(int argc, char **argv) {
    int reps = 5, draws = 200;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--draws") && i + 1 < argc) draws = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = true;
        else {
            fprintf(stderr, "usage: bench_sample [--reps R] [--draws N] [--json]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 1000 || draws < 1) {
        fprintf(stderr, "bench_sample: --reps in [1, 1000] and --draws >= 1\n");
        return 2;
    }
    static const int vocabs[] = {32000, 128256, 151936};
    double load[1] = {-1.0};
    if (getloadavg(load, 1) != 1) load[0] = -1.0;
    if (json) printf("{\"load_average\": %.2f, \"rows\": [", load[0]);
    else {
        printf("bl_sample, one thread, microseconds per token (median of %d runs of %d draws), "
               "load average %.2f\n\n", reps, draws, load[0]);
        printf("| vocabulary | logits | greedy | temperature 0.8 | + top_p 0.9 | top_k 40, top_p "
               "0.95, min_p 0.05 |\n|---:|---|---:|---:|---:|---:|\n");
    }
    float *l = malloc(sizeof(float) * 151936);
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!l || !t) return 1;
    bool first = true;
    long sink = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++)
        for (int peaked = 0; peaked < 2; peaked++) {
            const int V = vocabs[vi];
            make_logits(l, V, peaked, 1 + vi);
            double us[N_SETTINGS];
            for (int si = 0; si < N_SETTINGS; si++) {
                const setting *st = &settings[si];
                bl_sampler s;
                bl_err err = {0};
                if (bl_sampler_init(&s, V, st->temp, st->top_p, 7, &err) != BL_OK ||
                    bl_sampler_set_filters(&s, st->top_k, st->min_p, &err) != BL_OK) {
                    fprintf(stderr, "bench_sample: %s\n", err.msg);
                    return 1;
                }
                for (int r = 0; r < reps; r++) {
                    const double t0 = bl_time_s();
                    for (int d = 0; d < draws; d++) sink += bl_sample(&s, l);
                    t[r] = (bl_time_s() - t0) / draws * 1e6;
                }
                qsort(t, (size_t)reps, sizeof *t, by_double);
                us[si] = t[reps / 2];
                bl_sampler_free(&s);
            }
            if (json) {
                printf("%s{\"vocab\": %d, \"logits\": \"%s\"", first ? "" : ", ", V,
                       peaked ? "peaked" : "flat");
                for (int si = 0; si < N_SETTINGS; si++)
                    printf(", \"%s\": %.2f", settings[si].name, us[si]);
                printf("}");
                first = false;
            } else {
                printf("| %d | %s | %.1f | %.1f | %.1f | %.1f |\n", V, peaked ? "peaked" : "flat",
                       us[0], us[1], us[2], us[3]);
            }
        }
    if (json) printf("]}\n");
    fprintf(stderr, "(checksum %ld)\n", sink);
    free(l);
    free(t);
    return 0;
}
