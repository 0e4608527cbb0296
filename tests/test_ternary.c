/* The ternary format (codes {-1, 0, +1} with one FP16 absmean scale per group; tq2_0), reached
 * only through the registry and its traits: method specs and the alias, the fit against its
 * definition (recomputed here from W), get_row, forward against the scalar dequantization,
 * stored bits against the file's bytes, save → load, refused codes and shapes, the random draw,
 * and a whole model quantized with tq2_0 that saves, loads and runs. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "format_checks.h"

static char tmpdir[] = "/tmp/bitllm-ternary-XXXXXX";

static float *random_matrix(int64_t m, int64_t n, uint64_t seed) {
    bl_rng r;
    bl_rng_seed(&r, seed);
    float *W = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * n; i++) W[i] = 0.05f * bl_rng_normal(&r);
    W[m * n > 3 ? 3 : 0] = 0.9f; /* an outlier: clamped to +1 step */
    for (int64_t j = 0; j < n && m > 1; j++) W[n + j] = 0.0f; /* an all-zero row: scale 0 */
    return W;
}

static void test_specs(void) {
    bl_err err = {0};
    bl_method m;
    REQUIRE(bl_method_parse("tq2_0", &m, &err) == BL_OK);
    CHECK(m.format == bl_format_find("ternary") && m.params.group == 256);
    char name[32];
    REQUIRE(bl_method_parse("ternary:group=256", &m, &err) == BL_OK);
    bl_method_name(&m, name, sizeof name);
    CHECK_MSG(strcmp(name, "tq2_0") == 0, "name %s", name);
    REQUIRE(bl_method_parse("ternary", &m, &err) == BL_OK);
    CHECK(m.params.group == 128);
    CHECK(bl_method_parse("ternary:group=0", &m, &err) == BL_ERR_ARG && strstr(err.msg, "group"));
    CHECK(bl_method_parse("ternary:bits=2", &m, &err) == BL_ERR_ARG && strstr(err.msg, "bits"));
    REQUIRE(bl_method_parse("ternary:group=7", &m, &err) == BL_OK);
    CHECK(bl_method_uses(&m, false, BL_QP_GROUP) && !bl_method_uses(&m, false, BL_QP_BPW));
    /* the cost formula is the tensor table: 2 bits per weight + 16 per group */
    CHECK(bl_format_stored_bits(m.format, 5, 15, &m.params) == 2u * 75 + 16u * 5 * 3);
    /* handed-over zeroed data is a valid layer (codes 0 = -1, scales 0) */
    void *data = malloc(m.format->data_size);
    REQUIRE(bl_format_data_alloc(m.format, 2, 9, &m.params, data, &err) == BL_OK);
    bl_linear L;
    REQUIRE(bl_linear_from_data(&L, m.format, data, &err) == BL_OK);
    bl_linear_free(&L);
    free(data);
    CHECK(bl_format_data_alloc(m.format, 0, 9, &m.params, data = malloc(m.format->data_size),
                               &err) == BL_ERR_ARG);
    CHECK(strstr(err.msg, "bad ternary shape") != NULL);
    free(data);
}

/* The fit recomputed from its definition: per group d = fp16(mean |W|), code = 1 + clamp(
 * round(W/d), -1, 1), Ŵ = d·(code − 1); compared bit for bit with to_dense. */
static void check_fit(int64_t m, int64_t n, int group) {
    float *W = random_matrix(m, n, (uint64_t)(m * 131 + n + group));
    bl_layer_fit_opts o;
    bl_layer_fit_opts_default(&o);
    char spec[64];
    snprintf(spec, sizeof spec, "ternary:group=%d", group);
    o.method = test_method(spec);
    bl_linear L;
    bl_layer_fit_result res;
    bl_err err = {0};
    REQUIRE(bl_fit_layer(W, m, n, &o, &L, &res, &err) == BL_OK);
    CHECK(L.ops == bl_format_find("ternary") && L.params.group == group);
    float *D = malloc(sizeof(float) * (size_t)(m * n)), *row = malloc(sizeof(float) * (size_t)n);
    REQUIRE(L.ops->to_dense(&L, D, &err) == BL_OK);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t g0 = 0; g0 < n; g0 += group) {
            const int64_t g1 = g0 + group < n ? g0 + group : n;
            double sum = 0;
            for (int64_t j = g0; j < g1; j++) sum += fabs((double)W[i * n + j]);
            const float d = bl_round_f16((float)(sum / (double)(g1 - g0)));
            for (int64_t j = g0; j < g1; j++) {
                long c = d > 0 ? lroundf(W[i * n + j] / d) : 0;
                c = c > 1 ? 1 : c < -1 ? -1 : c;
                if (D[i * n + j] != d * (float)c) mismatches++;
            }
        }
    CHECK_MSG(mismatches == 0, "group %d: %lld weights differ from the definition", group,
              (long long)mismatches);
    for (int64_t j = 0; j < n && m > 1; j++) CHECK(D[n + j] == 0.0f); /* the zero row */
    for (int64_t i = 0; i < m; i += 3) { /* get_row is the same dequantization */
        L.ops->get_row(&L, i, row);
        CHECK(memcmp(row, D + i * n, sizeof(float) * (size_t)n) == 0);
    }
    const double G = (double)((n + group - 1) / group);
    CHECK(fabs(res.bpw - (2.0 + 16.0 * G / (double)n)) < 1e-12);
    /* forward against x·Ŵᵀ from the scalar reference; tolerance: the format's, which covers
     * float summation order only (the same weights are used) */
    const double fe = test_forward_rel_err(&L, D, 3, 9);
    CHECK_MSG(fe <= L.ops->forward_tol, "forward rel err %.3g", fe);
    /* save → load: the tensors of the table with their exact shapes, identical weights */
    char path[128];
    snprintf(path, sizeof path, "%s/l%d.safetensors", tmpdir, group);
    bl_tensor_set ts;
    REQUIRE(test_save_open(&L, "x", path, &ts));
    const bl_tensor *tc = bl_tensor_set_find(&ts, "x.codes"), *td = bl_tensor_set_find(&ts, "x.d");
    REQUIRE(tc && td && ts.n == 2);
    CHECK(tc->dtype == BL_DT_U8 && tc->shape[0] == m && tc->shape[1] == (2 * n + 7) / 8);
    CHECK(td->dtype == BL_DT_F16 && td->shape[0] == m && td->shape[1] == (int64_t)G);
    const uint64_t pad = (uint64_t)m * ((2 * n) % 8 ? 8 - (2 * n) % 8 : 0); /* per code row */
    CHECK(8 * (tc->nbytes + td->nbytes) == bl_format_stored_bits(L.ops, m, n, &L.params) + pad);
    test_check_reload(&L, "x", &ts, D);
    bl_linear L3 = {.ops = L.ops, .m = m, .n = n + 4, .params = L.params}; /* wrong shape */
    CHECK(L.ops->load(&L3, "x", &ts, &err) != BL_OK && strstr(err.msg, "x.codes"));
    bl_tensor_set_free(&ts);
    unlink(path);
    /* random draw: the fitted shapes, deterministic for a seed */
    test_check_random(o, m, n, 2.0 + 16.0 * G / (double)n);
    bl_linear_free(&L);
    free(W), free(D), free(row);
}

/* A file whose codes hold a 3 (no ternary value) is refused, naming the tensor and where. */
static void test_bad_code(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    bl_err err = {0};
    bl_st_writer *w = NULL;
    const uint8_t codes[2] = {0x19, 0x03}; /* row 0: codes 1, 2, 1; row 1: code 3, 0, 0 */
    const uint16_t d[2] = {0x3c00, 0x3c00}; /* 1.0 */
    const int64_t sc[2] = {2, 1}, sd[2] = {2, 1};
    REQUIRE(bl_st_writer_new(&w, &err) == BL_OK);
    REQUIRE(bl_st_writer_add(w, "x.codes", BL_DT_U8, 2, sc, codes, 2, true, &err) == BL_OK);
    REQUIRE(bl_st_writer_add(w, "x.d", BL_DT_F16, 2, sd, d, 4, true, &err) == BL_OK);
    REQUIRE(bl_st_writer_finish(w, path, &err) == BL_OK);
    bl_st_writer_free(w);
    bl_tensor_set ts;
    memset(&ts, 0, sizeof ts);
    REQUIRE(bl_safetensors_open(path, &ts, NULL, &err) == BL_OK);
    bl_linear L = {.ops = bl_format_find("ternary"), .m = 2, .n = 3, .params = {.group = 128}};
    CHECK(L.ops->load(&L, "x", &ts, &err) == BL_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "x: ternary code 3 at row 1 column 0") != NULL, "%s", err.msg);
    CHECK(L.impl == NULL);
    bl_tensor_set_free(&ts);
    unlink(path);
}

static void test_fits(void) {
    check_fit(37, 75, 32);  /* a partial last group, codes straddle nothing but rows pad */
    check_fit(13, 29, 7);   /* awkward group */
    check_fit(8, 256, 256); /* tq2_0's layout */
    check_fit(1, 3, 128);   /* one group shorter than the group size */
}

/* A whole model with tq2_0: it quantizes, records its method, loads and runs (finite logits). */
static void test_model(void) {
    char dir[160];
    snprintf(dir, sizeof dir, "%s/model", tmpdir);
    test_qrun r;
    test_quantized_run("tq2_0", dir, &r);
    if (r.ok) {
        CHECK(r.bpw_layers > 2.0 && r.bpw_layers < 2.5);
        CHECK(strcmp(r.quant_method, "tq2_0") == 0);
        CHECK(r.proj0 == bl_format_find("ternary"));
        int finite = 0;
        for (int i = 0; i < r.n; i++) finite += isfinite(r.q[i]) != 0;
        CHECK(finite == r.n);
    }
    test_qrun_free(&r);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    TEST_RUN(test_specs);
    TEST_RUN(test_fits);
    TEST_RUN(test_bad_code);
    TEST_RUN(test_model);
    rmdir(tmpdir);
    return test_summary();
}
