/* Checks the tests of a single format share (include after test.h): the forward against the
 * dense reference, a save → load round trip, and a whole model quantized with the format. */
#ifndef BITLLM_TEST_FORMAT_CHECKS_H
#define BITLLM_TEST_FORMAT_CHECKS_H

#include "bitllm/quantize.h"

/* Relative L2 error of L's forward on T random rows against x·Dᵀ in double, D = to_dense(L). */
static double test_forward_rel_err(const bl_linear *L, const float *D, int64_t T, uint64_t seed) {
    const int64_t m = L->m, n = L->n;
    float *x = malloc(sizeof(float) * (size_t)(T * n));
    float *y = malloc(sizeof(float) * (size_t)(T * m));
    bl_rng r;
    bl_rng_seed(&r, seed);
    for (int64_t k = 0; k < T * n; k++) x[k] = bl_rng_normal(&r);
    L->ops->forward(L, x, T, y, NULL, NULL);
    double num = 0, den = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < m; i++) {
            double ref = 0;
            for (int64_t j = 0; j < n; j++) ref += (double)D[i * n + j] * x[t * n + j];
            num += (y[t * m + i] - ref) * (y[t * m + i] - ref);
            den += ref * ref;
        }
    free(x), free(y);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* The random draw of method o.method: the fitted bpw, and the same weights twice for a seed. */
static void test_check_random(bl_layer_fit_opts o, int64_t m, int64_t n, double want_bpw) {
    o.random_factors = true;
    bl_linear R1, R2;
    bl_layer_fit_result res;
    bl_err err = {0};
    REQUIRE(bl_fit_layer(NULL, m, n, &o, &R1, &res, &err) == BL_OK);
    REQUIRE(bl_fit_layer(NULL, m, n, &o, &R2, &res, &err) == BL_OK);
    CHECK(fabs(res.bpw - want_bpw) < 1e-12);
    float *D1 = malloc(sizeof(float) * (size_t)(m * n));
    float *D2 = malloc(sizeof(float) * (size_t)(m * n));
    CHECK(R1.ops->to_dense(&R1, D1, &err) == BL_OK && R2.ops->to_dense(&R2, D2, &err) == BL_OK);
    CHECK(memcmp(D1, D2, sizeof(float) * (size_t)(m * n)) == 0);
    bl_linear_free(&R1), bl_linear_free(&R2);
    free(D1), free(D2);
}

/* Saves L as "<prefix>.*" into path and opens the file into *ts (the caller frees it and removes
 * the file); false after a failed REQUIRE. */
static bool test_save_open(const bl_linear *L, const char *prefix, const char *path,
                           bl_tensor_set *ts) {
    bl_err err = {0};
    bl_st_writer *w = NULL;
    memset(ts, 0, sizeof *ts);
    bool ok = bl_st_writer_new(&w, &err) == BL_OK;
    ok = ok && L->ops->save(L, prefix, w, &err) == BL_OK;
    ok = ok && bl_st_writer_finish(w, path, &err) == BL_OK;
    bl_st_writer_free(w);
    ok = ok && bl_safetensors_open(path, ts, NULL, &err) == BL_OK;
    CHECK_MSG(ok, "save/open %s: %s", path, err.msg);
    return ok;
}

typedef struct {
    bool ok;                   /* false: the case stopped (a failed REQUIRE or a SKIP) */
    double bpw_layers;         /* of the quantize summary */
    char quant_method[64];     /* what the loaded checkpoint records */
    const bl_format_ops *proj0; /* the format of layer 0's first projection */
    float *fp, *q;             /* logits of the FP and the quantized model, n floats each */
    int n;
} test_qrun;

static void test_qrun_free(test_qrun *r) {
    free(r->fp);
    free(r->q);
    r->fp = r->q = NULL;
}

/* Quantizes into dir (removed afterwards) and fills *r; r->ok tells whether it got that far. */
static void test_quantized_run(const char *spec, const char *dir, test_qrun *r) {
    memset(r, 0, sizeof *r);
    const char *src_path = test_data_path("models/stories260K/stories260K.gguf");
    if (!test_file_exists(src_path)) SKIP("%s not found", src_path);
    bl_model *src = NULL, *q = NULL;
    REQUIRE(bl_model_load(src_path, NULL, &src, NULL) == BL_OK);
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method(spec);
    bl_quant_summary sum;
    bl_err err = {0};
    REQUIRE(bl_quantize_model(src, &o, dir, &sum, &err) == BL_OK);
    r->bpw_layers = sum.bpw_layers;
    REQUIRE(bl_model_load(dir, NULL, &q, &err) == BL_OK);
    snprintf(r->quant_method, sizeof r->quant_method, "%s", q->quant_method);
    r->proj0 = q->layers[0].proj[0].ops;
    const int32_t toks[6] = {1, 403, 407, 261, 378, 432};
    r->n = 6 * src->cfg.vocab_size;
    r->fp = malloc(sizeof(float) * (size_t)r->n);
    r->q = malloc(sizeof(float) * (size_t)r->n);
    bl_state *s1, *s2;
    REQUIRE(bl_state_new(src, 8, 8, 0, &s1, NULL) == BL_OK);
    REQUIRE(bl_state_new(q, 8, 8, 0, &s2, NULL) == BL_OK);
    REQUIRE(bl_forward(s1, toks, 6, r->fp, true, NULL) == BL_OK);
    REQUIRE(bl_forward(s2, toks, 6, r->q, true, NULL) == BL_OK);
    bl_state_free(s1), bl_state_free(s2);
    bl_model_free(q), bl_model_free(src);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    r->ok = true;
}

/* Loads "<prefix>.*" of ts as a layer of L's format, shape and parameters: the same weights as
 * D (= to_dense(L)) bit for bit. */
static void test_check_reload(const bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                              const float *D) {
    bl_err err = {0};
    bl_linear L2 = {.ops = L->ops, .m = L->m, .n = L->n, .params = L->params};
    CHECK_MSG(L->ops->load(&L2, prefix, ts, &err) == BL_OK, "%s", err.msg);
    if (!L2.impl) return;
    float *D2 = malloc(sizeof(float) * (size_t)(L->m * L->n));
    CHECK(L2.ops->to_dense(&L2, D2, &err) == BL_OK);
    CHECK(memcmp(D, D2, sizeof(float) * (size_t)(L->m * L->n)) == 0);
    bl_linear_free(&L2);
    free(D2);
}

#endif
