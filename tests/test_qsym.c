/* The qsym format (group-wise symmetric codes with FP16 group scales, q8_0 / q4_0), reached only
 * through the registry and its traits: method specs and aliases, the round-to-nearest bound of
 * the fit, forward against the scalar dequantization, get_row, save → load, stored bits, the
 * random draw, and a whole model quantized with q8_0. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "format_checks.h"

static char tmpdir[] = "/tmp/bitllm-qsym-XXXXXX";

static float *random_matrix(int64_t m, int64_t n, uint64_t seed) {
    bl_rng r;
    bl_rng_seed(&r, seed);
    float *W = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * n; i++) W[i] = 0.05f * bl_rng_normal(&r);
    W[3] = 0.0f; /* a zero and a large outlier in the first group */
    W[5] = 0.9f;
    return W;
}

static void test_specs(void) {
    bl_err err = {0};
    bl_method m;
    REQUIRE(bl_method_parse("q8_0", &m, &err) == BL_OK);
    CHECK(m.format == bl_format_find("qsym") && m.params.bits == 8 && m.params.group == 32);
    REQUIRE(bl_method_parse("qsym:bits=4,group=32", &m, &err) == BL_OK);
    char name[32];
    bl_method_name(&m, name, sizeof name);
    CHECK_MSG(strcmp(name, "q4_0") == 0, "name %s", name);
    REQUIRE(bl_method_parse("qsym:bits=6,group=7", &m, &err) == BL_OK);
    bl_method_name(&m, name, sizeof name);
    CHECK(strcmp(name, "qsym") == 0 && m.params.bits == 6 && m.params.group == 7);
    CHECK(bl_method_parse("qsym:bits=9", &m, &err) == BL_ERR_ARG && strstr(err.msg, "bits"));
    CHECK(bl_method_parse("qsym:bits=1", &m, &err) == BL_ERR_ARG);
    CHECK(bl_method_parse("qsym:rank=2", &m, &err) == BL_ERR_ARG && strstr(err.msg, "rank"));
    CHECK(bl_method_parse("qsym:bits", &m, &err) == BL_ERR_ARG);
    CHECK(bl_method_parse("q9_0", &m, &err) == BL_ERR_ARG && strstr(err.msg, "qsym"));
    REQUIRE(bl_method_parse("q8_0", &m, &err) == BL_OK);
    CHECK(bl_method_uses(&m, false, BL_QP_GROUP) && !bl_method_uses(&m, false, BL_QP_BPW));
    /* code 0 (−2^(bits−1), outside the symmetric range) is refused, naming where it is */
    void *data = malloc(m.format->data_size);
    REQUIRE(bl_format_data_alloc(m.format, 3, 40, &m.params, data, &err) == BL_OK);
    bl_linear L;
    CHECK(bl_linear_from_data(&L, m.format, data, &err) == BL_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "code 0 at row 0 column 0") != NULL, "%s", err.msg);
    bl_format_data_free(m.format, data);
    free(data);
}

/* Every weight is within half a step of W (a clamp never binds: the step is max|W|/qmax). */
static void check_fit(int64_t m, int64_t n, int bits, int group) {
    float *W = random_matrix(m, n, (uint64_t)(m * 131 + n + bits));
    bl_layer_fit_opts o;
    bl_layer_fit_opts_default(&o);
    char spec[64];
    snprintf(spec, sizeof spec, "qsym:bits=%d,group=%d", bits, group);
    o.method = test_method(spec);
    bl_linear L;
    bl_layer_fit_result res;
    bl_err err = {0};
    REQUIRE(bl_fit_layer(W, m, n, &o, &L, &res, &err) == BL_OK);
    const int qmax = (1 << (bits - 1)) - 1;
    float *D = malloc(sizeof(float) * (size_t)(m * n)), *row = malloc(sizeof(float) * (size_t)n);
    REQUIRE(L.ops->to_dense(&L, D, &err) == BL_OK);
    double worst = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t g0 = 0; g0 < n; g0 += group) {
            int64_t g1 = g0 + group < n ? g0 + group : n;
            float amax = 0.0f;
            for (int64_t j = g0; j < g1; j++) amax = fmaxf(amax, fabsf(W[i * n + j]));
            /* the stored scale is amax/qmax rounded to FP16 (relative error <= 2^-11) */
            const double step = amax / qmax * (1.0 + 1.0 / 2048.0);
            for (int64_t j = g0; j < g1; j++) {
                double e = fabs((double)D[i * n + j] - W[i * n + j]) / (step > 0 ? step : 1.0);
                if (e > worst) worst = e;
            }
        }
    CHECK_MSG(worst <= 0.5 + 1e-3 * qmax, "bits %d group %d: error %.4f steps", bits, group,
              worst);
    /* get_row is the same dequantization as to_dense */
    for (int64_t i = 0; i < m; i += 5) {
        L.ops->get_row(&L, i, row);
        CHECK(memcmp(row, D + i * n, sizeof(float) * (size_t)n) == 0);
    }
    /* stored bits: codes + one FP16 scale per group, as bpw reports */
    const double G = (double)((n + group - 1) / group);
    CHECK(fabs(res.bpw - (bits + 16.0 * G / (double)n)) < 1e-12);
    /* forward against x·Ŵᵀ from the scalar reference; tolerance: the format's, which covers
     * float summation order only (the same weights are used) */
    const double fe = test_forward_rel_err(&L, D, 3, 9);
    CHECK_MSG(fe <= L.ops->forward_tol, "forward rel err %.3g", fe);
    /* save → load: identical weights, dtype/shape checked */
    char path[128];
    snprintf(path, sizeof path, "%s/l%d_%d.safetensors", tmpdir, bits, group);
    bl_tensor_set ts;
    REQUIRE(test_save_open(&L, "x", path, &ts));
    test_check_reload(&L, "x", &ts, D);
    bl_linear L3 = {.ops = L.ops, .m = m + 1, .n = n, .params = L.params}; /* wrong shape */
    CHECK(L.ops->load(&L3, "x", &ts, &err) != BL_OK && strstr(err.msg, "x.qs"));
    bl_tensor_set_free(&ts);
    unlink(path);
    /* random draw: the fitted shapes, deterministic for a seed */
    test_check_random(o, m, n, bits + 16.0 * G / (double)n);
    bl_linear_free(&L);
    free(W), free(D), free(row);
}

static void test_fits(void) {
    check_fit(37, 75, 8, 32); /* q8_0 layout, a partial last group */
    check_fit(37, 75, 4, 32); /* q4_0 */
    check_fit(13, 29, 3, 7);  /* codes straddling bytes, awkward group */
    check_fit(8, 64, 2, 64);
}

/* A whole model with q8_0: close to the FP model, and it saves/loads as any checkpoint. */
static void test_model(void) {
    char dir[160];
    snprintf(dir, sizeof dir, "%s/model", tmpdir);
    test_qrun r;
    test_quantized_run("q8_0", dir, &r);
    if (r.ok) {
        CHECK(r.bpw_layers > 8.0 && r.bpw_layers < 8.6);
        CHECK(strcmp(r.quant_method, "q8_0") == 0);
        CHECK(r.proj0 == bl_format_find("qsym"));
        double num = 0, den = 0;
        for (int i = 0; i < r.n; i++) {
            num += (double)(r.fp[i] - r.q[i]) * (r.fp[i] - r.q[i]);
            den += (double)r.fp[i] * r.fp[i];
        }
        /* 8-bit codes: relative weight error ~0.5%; the logits stay within 5% */
        CHECK_MSG(sqrt(num / den) < 0.05, "q8_0 logits rel err %.4f", sqrt(num / den));
    }
    test_qrun_free(&r);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    TEST_RUN(test_specs);
    TEST_RUN(test_fits);
    TEST_RUN(test_model);
    rmdir(tmpdir);
    return test_summary();
}
