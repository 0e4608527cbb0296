/* Minimal test harness: CHECK records a failure and continues, REQUIRE stops the current test.
 * Each test executable calls TEST_RUN(fn) for its cases and returns test_summary(), which prints
 * "N passed, N failed" and returns 77 (CTest's skip code) when every case skipped. */
#ifndef BITLLM_TEST_H
#define BITLLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_checks, test_cases_passed, test_cases_failed, test_cases_skipped;
static int test_case_failed, test_case_skipped;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
            test_failed_checks++;                                                            \
            test_case_failed = 1;                                                            \
        }                                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                 \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            test_failed_checks++;                                                            \
            test_case_failed = 1;                                                            \
        }                                                                                    \
    } while (0)

#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "  FAIL %s:%d: %s (stopping this case)\n", __FILE__, __LINE__,    \
                    #cond);                                                                  \
            test_failed_checks++;                                                            \
            test_case_failed = 1;                                                            \
            return;                                                                          \
        }                                                                                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                \
    do {                                                                                     \
        double test_a_ = (double)(a), test_b_ = (double)(b);                                 \
        if (!(fabs(test_a_ - test_b_) <= (tol))) {                                           \
            fprintf(stderr, "  FAIL %s:%d: %s = %.9g vs %s = %.9g (tol %g)\n", __FILE__,      \
                    __LINE__, #a, test_a_, #b, test_b_, (double)(tol));                      \
            test_failed_checks++;                                                            \
            test_case_failed = 1;                                                            \
        }                                                                                    \
    } while (0)

/* Marks the current case skipped (e.g. shared test data absent) and returns from it. */
#define SKIP(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "  SKIP: ");                                                         \
        fprintf(stderr, __VA_ARGS__);                                                        \
        fputc('\n', stderr);                                                                 \
        test_case_skipped = 1;                                                               \
        return;                                                                              \
    } while (0)

#define TEST_RUN(fn)                                                                         \
    do {                                                                                     \
        test_case_failed = 0;                                                                \
        test_case_skipped = 0;                                                               \
        fprintf(stderr, "[ RUN  ] %s\n", #fn);                                               \
        fn();                                                                                \
        if (test_case_failed) {                                                              \
            test_cases_failed++;                                                             \
            fprintf(stderr, "[ FAIL ] %s\n", #fn);                                           \
        } else if (test_case_skipped) {                                                      \
            test_cases_skipped++;                                                            \
            fprintf(stderr, "[ SKIP ] %s\n", #fn);                                           \
        } else {                                                                             \
            test_cases_passed++;                                                             \
            fprintf(stderr, "[  OK  ] %s\n", #fn);                                           \
        }                                                                                    \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", test_cases_passed, test_cases_failed,
           test_cases_skipped);
    if (test_cases_failed) return 1;
    if (test_cases_passed == 0 && test_cases_skipped > 0) return 77;
    return 0;
}

/* Path of a file in the shared test-data folder ($BITLLM_DATA, default ../shared). */
static inline const char *test_data_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("BITLLM_DATA");
    if (!root || !*root) root = "../shared";
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    return buf;
}

static inline int test_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* True when the sanitizer pass asks for smaller problem sizes. */
static inline int test_quick(void) {
    const char *q = getenv("BITLLM_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* A method from its spec ("rtn2", "mdbf:rank_l=2"); a bad spec is a bug in the test. */
#include "bitllm/format.h"
static inline bl_method test_method(const char *spec) {
    bl_method m;
    bl_err e;
    if (bl_method_parse(spec, &m, &e) != BL_OK) {
        fprintf(stderr, "test_method(%s): %s\n", spec, e.msg);
        abort();
    }
    return m;
}

/* A small LLaMA configuration of awkward dimensions for synthetic models (bl_synth_model): GQA
 * (4 heads, 2 kv heads), an MLP width of 100 (no multiple of 8 or 16), an odd vocabulary of 131. */
#include "bitllm/model.h"
static inline bl_config test_small_config(int dim, int head_dim) {
    bl_config c;
    memset(&c, 0, sizeof c);
    c.arch = BL_ARCH_LLAMA;
    c.dim = dim;
    c.hidden_dim = 100;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = head_dim;
    c.vocab_size = 131;
    c.max_seq = 64;
    c.rope_theta = 10000.0f;
    c.norm_eps = 1e-5f;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

/* The LLM-like test matrices of bench_fit (bl_synth_llm_matrix): m×n, malloc'd, NULL on failure. */
static inline float *test_llm_matrix(int64_t m, int64_t n, uint64_t seed) {
    float *W = malloc(sizeof(float) * (size_t)(m * n));
    bl_err err;
    if (W && bl_synth_llm_matrix(m, n, seed, W, &err) != BL_OK) {
        free(W);
        W = NULL;
    }
    return W;
}

#endif
