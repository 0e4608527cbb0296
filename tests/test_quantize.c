/* Whole-model quantization: every method produces a loadable checkpoint whose forward equals the
 * dense reconstruction of its layers, save → load is bit-exact, accounting matches the files, and
 * corrupted checkpoints are rejected with a message. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitllm/eval.h"
#include "bitllm/quantize.h"
#include "test.h"

static char model_path[4096];

static bl_model *load(const char *path) {
    bl_model *m = NULL;
    bl_err err = {0};
    if (bl_model_load(path, NULL, &m, &err) != BL_OK) fprintf(stderr, "  load: %s\n", err.msg);
    return m;
}

static const int32_t probe[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395};
enum { NPROBE = sizeof probe / sizeof probe[0] };

static void logits_of(bl_model *m, float *out) {
    bl_state *st;
    if (bl_state_new(m, 32, 16, 0, &st, NULL) != BL_OK) return;
    bl_forward(st, probe, NPROBE, out, true, NULL);
    bl_state_free(st);
}

/* Replaces every projection of m by a dense f32 copy of its reconstruction. */
static int densify(bl_model *m, float **bufs) {
    int k = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            bl_linear *L = &m->layers[l].proj[p];
            float *W = malloc(sizeof(float) * (size_t)(L->m * L->n));
            if (L->ops->to_dense(L, W, NULL) != BL_OK) return 0;
            bl_tensor t = {.dtype = BL_DT_F32, .ndim = 2, .shape = {L->m, L->n}, .data = W,
                           .nbytes = sizeof(float) * (size_t)(L->m * L->n)};
            snprintf(t.name, sizeof t.name, "dense.%d.%d", l, p);
            bl_linear_free(L);
            if (bl_linear_dense_init(L, &t, NULL) != BL_OK) return 0;
            bufs[k++] = W;
        }
    return k;
}

static void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", dir);
}

static void check_method(const char *method, double bpw, int rank_l, int paths) {
    bl_model *src = load(model_path);
    REQUIRE(src);
    char dir[] = "/tmp/bitllm-quant-XXXXXX";
    REQUIRE(mkdtemp(dir));
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method(method);
    o.bpw = bpw;
    o.method.params.rank_l = rank_l;
    o.method.params.paths = paths;
    o.fit.iters = test_quick() ? 20 : 60;
    bl_quant_summary sum;
    bl_err err = {0};
    bl_status s = bl_quantize_model(src, &o, dir, &sum, &err);
    CHECK_MSG(s == BL_OK, "%s: %s", method, err.msg);
    bl_model *q = s == BL_OK ? load(dir) : NULL;
    CHECK(q != NULL);
    if (q) {
        fprintf(stderr, "  %-6s bpw %.4f layers / %.4f model\n", method,
                sum.bpw_layers, sum.bpw_model);
        CHECK(strcmp(q->quant_method, method) == 0);
        double bl, bm;
        bl_model_bpw(q, &bl, &bm);
        CHECK_NEAR(bl, sum.bpw_layers, 1e-12);
        /* Stored bits of the layers never exceed the bytes in the file. */
        uint64_t file_bits = 0;
        for (int i = 0; i < q->tensors.n; i++) file_bits += 8ull * q->tensors.t[i].nbytes;
        CHECK(bl_model_weight_bits(q) <= file_bits);
        /* dbf/mdbf matched to onebit's cost never exceed it (1 + 16/n + 16/m per layer) */
        if (test_method(method).format->mid_from_bpw) CHECK(sum.bpw_layers <= 1.4082);
        const int V = q->cfg.vocab_size;
        float *a = malloc(sizeof(float) * V * NPROBE), *b = malloc(sizeof(float) * V * NPROBE);
        logits_of(q, a);
        /* save the loaded model again: identical logits and identical tensor bytes */
        char dir2[] = "/tmp/bitllm-quant2-XXXXXX";
        REQUIRE(mkdtemp(dir2));
        CHECK(bl_model_save(q, dir2, NULL, NULL, &err) == BL_OK);
        bl_model *q2 = load(dir2);
        CHECK(q2 != NULL);
        if (q2) {
            logits_of(q2, b);
            CHECK_MSG(memcmp(a, b, sizeof(float) * V * NPROBE) == 0,
                      "%s: logits differ after save/load", method);
            CHECK(q2->tensors.n == q->tensors.n);
            for (int i = 0; i < q->tensors.n && i < q2->tensors.n; i++) {
                const bl_tensor *t2 = bl_tensor_set_find(&q2->tensors, q->tensors.t[i].name);
                CHECK(t2 && t2->nbytes == q->tensors.t[i].nbytes &&
                      memcmp(t2->data, q->tensors.t[i].data, t2->nbytes) == 0);
            }
            bl_model_free(q2);
        }
        rm_rf(dir2);
        /* the packed-bit forward equals a dense forward with the reconstructed weights */
        float *bufs[512];
        int nb = densify(q, bufs);
        CHECK(nb == q->cfg.n_layers * BL_PROJ_COUNT);
        if (strcmp(method, "onebit") != 0) { /* plain SVID has no post-LN; every format is linear */
            logits_of(q, b);
            double worst = 0, scale = 0;
            for (int i = 0; i < V * NPROBE; i++) {
                worst = fmax(worst, fabs(a[i] - b[i]));
                scale = fmax(scale, fabs(b[i]));
            }
            CHECK_MSG(worst <= 1e-3 * fmax(1, scale), "%s: packed vs dense forward differ by %g",
                      method, worst);
        }
        bl_model_free(q);
        for (int i = 0; i < nb; i++) free(bufs[i]);
        free(a), free(b);
    }
    rm_rf(dir);
    bl_model_free(src);
}

static void test_rtn(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    check_method("rtn1", 0, 1, 1);
    check_method("rtn2", 0, 1, 1);
    check_method("rtn4", 0, 1, 1);
}

static void test_onebit(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    check_method("onebit", 0, 1, 1);
}

static void test_dbf(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    check_method("dbf", 0, 1, 1);
}

static void test_mdbf(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    check_method("mdbf", 0, 2, 1);
    check_method("mdbf", 0, 1, 2);
}

/* ---- random factors (benchmarks): the fitted run's shapes and bits, with nonsense values ---- */

static void count_nan(void *ctx, const char *name, int64_t m, int64_t n,
                      const bl_layer_fit_result *r) {
    int *c = ctx;
    c[0]++;
    c[1] += isnan(r->rel_err) ? 1 : 0;
}

static bl_status quantize_as(const bl_model *src, const char *method, int rank_l, bool rnd,
                             uint64_t seed, const char *dir, double *bpw_layers, int *calls) {
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method(method);
    o.method.params.rank_l = rank_l;
    o.random_factors = rnd;
    o.fit.seed = seed;
    o.fit.iters = 1; /* shapes do not depend on the iteration count */
    o.on_layer = count_nan;
    o.on_layer_ctx = calls;
    bl_quant_summary sum;
    bl_err err = {0};
    bl_status s = bl_quantize_model(src, &o, dir, &sum, &err);
    if (s) fprintf(stderr, "  %s: %s\n", method, err.msg);
    *bpw_layers = sum.bpw_layers;
    return s;
}

static char *read_st(const char *dir, size_t *len) {
    char path[4200];
    char *data = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (bl_read_file(path, &data, len, NULL) != BL_OK) *len = 0;
    return data;
}

static bool provenance_random(const bl_model *m) {
    cJSON *q = m->quant_config_json ? cJSON_Parse(m->quant_config_json) : NULL;
    bool r = cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(q, "provenance"),
                                              "random_factors"));
    cJSON_Delete(q);
    return r;
}

static void check_random(const char *method, int rank_l) {
    const char *name = method;
    bl_model *src = load(model_path);
    REQUIRE(src);
    char fit[] = "/tmp/bitllm-rf-fit-XXXXXX", r0[] = "/tmp/bitllm-rf-r0-XXXXXX",
         r0b[] = "/tmp/bitllm-rf-r0b-XXXXXX", r1[] = "/tmp/bitllm-rf-r1-XXXXXX";
    REQUIRE(mkdtemp(fit) && mkdtemp(r0) && mkdtemp(r0b) && mkdtemp(r1));
    double bf, b0, b0b, b1;
    int calls_fit[2] = {0}, calls[2] = {0};
    REQUIRE(quantize_as(src, method, rank_l, false, 0, fit, &bf, calls_fit) == BL_OK);
    REQUIRE(quantize_as(src, method, rank_l, true, 0, r0, &b0, calls) == BL_OK);
    REQUIRE(quantize_as(src, method, rank_l, true, 0, r0b, &b0b, calls) == BL_OK);
    REQUIRE(quantize_as(src, method, rank_l, true, 1, r1, &b1, calls) == BL_OK);
    bl_model_free(src);
    const int total = 3 * calls_fit[0];
    CHECK_MSG(calls_fit[1] == 0 && calls[0] == total && calls[1] == total,
              "%s: rel_err NaN for %d of %d random and %d of %d fitted layers", name, calls[1],
              calls[0], calls_fit[1], calls_fit[0]);
    CHECK_MSG(b0 == bf && b0b == bf && b1 == bf, "%s: bpw %.6f random vs %.6f fitted", name, b0,
              bf);
    bl_model *qf = load(fit), *q = load(r0);
    CHECK(qf && q);
    if (qf && q) {
        CHECK(provenance_random(q) && !provenance_random(qf));
        for (int l = 0; l < q->cfg.n_layers; l++)
            for (int p = 0; p < BL_PROJ_COUNT; p++) {
                const bl_linear *a = &q->layers[l].proj[p], *b = &qf->layers[l].proj[p];
                const bl_format_params *pa = &a->params, *pb = &b->params;
                CHECK_MSG(a->ops == b->ops && pa->bits == pb->bits && pa->group == pb->group &&
                              pa->mid == pb->mid && pa->rank_l == pb->rank_l &&
                              pa->paths == pb->paths && pa->post_ln == pb->post_ln &&
                              bl_format_stored_bits(a->ops, a->m, a->n, pa) ==
                                  bl_format_stored_bits(b->ops, b->m, b->n, pb),
                          "%s: layer %d.%d differs from the fit (%s mid %lld vs %s mid %lld)",
                          name, l, p, a->ops->name, (long long)pa->mid, b->ops->name,
                          (long long)pb->mid);
                /* entries of std ≈ 0.02, like synthetic weights */
                float *W = malloc(sizeof(float) * (size_t)(a->m * a->n));
                CHECK(W && a->ops->to_dense(a, W, NULL) == BL_OK);
                double ss = 0;
                for (int64_t i = 0; W && i < a->m * a->n; i++) ss += (double)W[i] * W[i];
                double rms = sqrt(ss / (double)(a->m * a->n));
                CHECK_MSG(rms > 0.015 && rms < 0.025, "%s: layer %d.%d rms %g", name, l, p, rms);
                free(W);
            }
        const int V = q->cfg.vocab_size;
        float *lg = calloc((size_t)V * NPROBE, sizeof(float));
        logits_of(q, lg);
        int bad = 0, zero = 0;
        for (int i = 0; i < V * NPROBE; i++) bad += !isfinite(lg[i]), zero += lg[i] == 0.0f;
        CHECK_MSG(bad == 0 && zero < V * NPROBE, "%s: %d non-finite, %d zero logits", name, bad,
                  zero);
        free(lg);
    }
    bl_model_free(qf);
    bl_model_free(q);
    /* the same bytes as the fit would store; fixed by the seed */
    size_t lf, l0, l0b, l1;
    char *df = read_st(fit, &lf), *d0 = read_st(r0, &l0), *d0b = read_st(r0b, &l0b),
         *d1 = read_st(r1, &l1);
    CHECK_MSG(lf > 0 && l0 == lf && l0b == lf && l1 == lf, "%s: %zu bytes vs %zu fitted", name,
              l0, lf);
    CHECK_MSG(l0 == l0b && d0 && d0b && memcmp(d0, d0b, l0) == 0, "%s: seed 0 not reproducible",
              name);
    CHECK_MSG(l0 == l1 && d0 && d1 && memcmp(d0, d1, l0) != 0, "%s: seeds 0 and 1 agree", name);
    free(df), free(d0), free(d0b), free(d1);
    rm_rf(fit), rm_rf(r0), rm_rf(r0b), rm_rf(r1);
}

static void test_random_factors(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    check_random("rtn1", 1);
    check_random("rtn2", 1);
    check_random("onebit", 1);
    check_random("dbf", 1);
    check_random("mdbf", 2);
}

/* Calibration and gradient statistics describe weights that random factors never read. */
static void test_random_factors_refuse_calibration(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    bl_model *src = load(model_path);
    REQUIRE(src);
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("dbf");
    o.random_factors = true;
    o.calib_ids = probe;
    o.n_calib = NPROBE;
    bl_quant_summary sum;
    bl_err err = {0};
    CHECK(bl_quantize_model(src, &o, "/tmp/bitllm-never-written", &sum, &err) == BL_ERR_ARG);
    CHECK(strstr(err.msg, "calibration") != NULL);
    fprintf(stderr, "  %s\n", err.msg);
    float *imp[1] = {NULL};
    o.calib_ids = NULL;
    o.n_calib = 0;
    o.out_importance = imp;
    err.msg[0] = 0;
    CHECK(bl_quantize_model(src, &o, "/tmp/bitllm-never-written", &sum, &err) == BL_ERR_ARG);
    CHECK(strstr(err.msg, "gradient") != NULL);
    struct stat st;
    CHECK(stat("/tmp/bitllm-never-written", &st) != 0);
    bl_model_free(src);
}

/* What the written checkpoint says about itself comes back exactly: the provenance's bpw target
 * and seed (stored as exact strings: 1.3 + 1 ulp prints as 1.3 from cJSON's 15 digits, and a
 * 64-bit seed is not a double), and the config's float fields (JSON numbers, exact for floats:
 * 15 significant digits always bring a float back). */
static void test_saved_values_exact(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    bl_model *src = load(model_path);
    REQUIRE(src);
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("dbf");
    o.random_factors = true;
    o.bpw = nextafter(1.3, 2.0);
    o.fit.seed = 18446744073709551557ull;
    char dir[] = "/tmp/bitllm-exact-XXXXXX";
    REQUIRE(mkdtemp(dir));
    bl_quant_summary sum;
    bl_err err = {0};
    REQUIRE(bl_quantize_model(src, &o, dir, &sum, &err) == BL_OK);
    bl_model *q = load(dir);
    REQUIRE(q);
    cJSON *qc = cJSON_Parse(q->quant_config_json);
    const cJSON *prov = cJSON_GetObjectItem(qc, "provenance");
    double bpw = 0;
    CHECK(bl_json_get_exact(prov, "bpw_target", &bpw) && memcmp(&bpw, &o.bpw, sizeof bpw) == 0);
    const cJSON *seed = cJSON_GetObjectItem(prov, "seed");
    CHECK(cJSON_IsString(seed) && strcmp(seed->valuestring, "18446744073709551557") == 0);
    cJSON_Delete(qc);
    const bl_config *a = &src->cfg, *b = &q->cfg;
    CHECK(memcmp(&a->rope_theta, &b->rope_theta, sizeof(float)) == 0);
    CHECK(memcmp(&a->norm_eps, &b->norm_eps, sizeof(float)) == 0);
    bl_model_free(q);
    /* awkward floats through config.json: the closest floats to 1e-5, 1e-6 and 5e5 and their
     * neighbours, and a denormal */
    const float eps[] = {1e-5f, nextafterf(1e-5f, 1.0f), nextafterf(1e-6f, 0.0f), 1.4e-45f,
                         3.4028235e38f};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        bl_model m2 = *src;
        m2.cfg.norm_eps = eps[i];
        m2.cfg.rope_theta = nextafterf(500000.0f, (float)i);
        char d2[] = "/tmp/bitllm-exact2-XXXXXX";
        REQUIRE(mkdtemp(d2));
        REQUIRE(bl_model_save(&m2, d2, NULL, NULL, &err) == BL_OK);
        bl_model *r = load(d2);
        REQUIRE(r);
        CHECK_MSG(memcmp(&r->cfg.norm_eps, &eps[i], sizeof(float)) == 0 &&
                      memcmp(&r->cfg.rope_theta, &m2.cfg.rope_theta, sizeof(float)) == 0,
                  "norm_eps %a came back as %a", (double)eps[i], (double)r->cfg.norm_eps);
        bl_model_free(r);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", d2);
        CHECK(system(cmd) == 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    bl_model_free(src);
}

/* A bpw target below what a format can store at its smallest middle dimension is an error. */
static void test_infeasible_target(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    bl_model *src = load(model_path);
    REQUIRE(src);
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("mdbf");
    o.bpw = 1.0;
    o.method.params.rank_l = 4;
    o.method.params.paths = 2;
    bl_quant_summary sum;
    bl_err err = {0};
    CHECK(bl_quantize_model(src, &o, "/tmp/bitllm-never-written", &sum, &err) == BL_ERR_ARG);
    CHECK(strstr(err.msg, "bpw") != NULL);
    fprintf(stderr, "  %s\n", err.msg);
    struct stat st;
    CHECK(stat("/tmp/bitllm-never-written", &st) != 0);
    bl_model_free(src);
}

static void test_corrupted_checkpoints(void) {
    if (!test_file_exists(model_path)) SKIP("%s not found", model_path);
    bl_model *src = load(model_path);
    REQUIRE(src);
    char dir[] = "/tmp/bitllm-corrupt-XXXXXX";
    REQUIRE(mkdtemp(dir));
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("onebit");
    bl_quant_summary sum;
    REQUIRE(bl_quantize_model(src, &o, dir, &sum, NULL) == BL_OK);
    bl_model_free(src);
    char st[4200], cfg[4200];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    char *orig_st, *orig_cfg;
    size_t st_len, cfg_len;
    REQUIRE(bl_read_file(st, &orig_st, &st_len, NULL) == BL_OK);
    REQUIRE(bl_read_file(cfg, &orig_cfg, &cfg_len, NULL) == BL_OK);
    struct {
        const char *what;
        int file; /* 0 = safetensors, 1 = config */
        size_t cut; /* truncate to this length (0: no) */
        const char *find, *repl; /* config text substitution */
    } cases[] = {
        {"truncated safetensors (data)", 0, 0, NULL, NULL},
        {"truncated safetensors (header)", 0, 100, NULL, NULL},
        {"config: wrong format name", 1, 0, "\"format\":\t\"onebit\"", "\"format\":\t\"onebit9\""},
        {"config: unknown method layer shape", 1, 0, "\"hidden_size\":\t64", "\"hidden_size\":\t72"},
        {"config: bad post_ln type", 1, 0, "\"format\":\t\"onebit\"", "\"format\":\t\"onebit\", \"post_ln\": 3"},
        {"config: rtn without bits", 1, 0, "\"format\":\t\"onebit\"", "\"format\":\t\"dbf\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        REQUIRE(bl_write_file_atomic(st, orig_st, st_len, NULL) == BL_OK);
        REQUIRE(bl_write_file_atomic(cfg, orig_cfg, cfg_len, NULL) == BL_OK);
        if (cases[i].file == 0) {
            size_t cut = cases[i].cut ? cases[i].cut : st_len - 1000;
            REQUIRE(bl_write_file_atomic(st, orig_st, cut, NULL) == BL_OK);
        } else {
            char *p = strstr(orig_cfg, cases[i].find);
            CHECK_MSG(p != NULL, "pattern %s not in config.json", cases[i].find);
            if (!p) continue;
            size_t pre = (size_t)(p - orig_cfg), fl = strlen(cases[i].find),
                   rl = strlen(cases[i].repl);
            char *nc = malloc(cfg_len + rl + 1);
            memcpy(nc, orig_cfg, pre);
            memcpy(nc + pre, cases[i].repl, rl);
            memcpy(nc + pre + rl, p + fl, cfg_len - pre - fl + 1);
            REQUIRE(bl_write_file_atomic(cfg, nc, strlen(nc), NULL) == BL_OK);
            free(nc);
        }
        bl_model *m = NULL;
        bl_err err = {0};
        bl_status s = bl_model_load(dir, NULL, &m, &err);
        CHECK_MSG(s != BL_OK && err.msg[0], "%s: accepted", cases[i].what);
        if (s != BL_OK) fprintf(stderr, "  %s -> %s\n", cases[i].what, err.msg);
        bl_model_free(m);
    }
    free(orig_st);
    free(orig_cfg);
    rm_rf(dir);
}

/* A recipe stage sees every fitted layer after the initial fits and may replace one; a failing
 * stage stops the run with its name in the message and nothing written. */
typedef struct {
    int calls, layers_seen;
    bool fail;
} stage_probe;

static bl_status probe_stage(void *ctx, const bl_model *src, const bl_quant_opts *o,
                             bl_linear *layers, bl_err *err) {
    stage_probe *p = ctx;
    p->calls++;
    for (int i = 0; i < src->cfg.n_layers * BL_PROJ_COUNT; i++)
        p->layers_seen += layers[i].ops && strcmp(layers[i].ops->name, "onebit") == 0;
    (void)o;
    if (p->fail) return bl_fail(err, BL_ERR_NUMERIC, "probe refuses");
    /* replace the first layer by its RTN1 refit from the source weights */
    const bl_linear *L = &src->layers[0].proj[0];
    float *W = malloc(sizeof(float) * (size_t)(L->m * L->n));
    bl_status s = W ? L->ops->to_dense(L, W, err) : bl_fail(err, BL_ERR_NOMEM, "oom");
    bl_layer_fit_opts lo;
    bl_layer_fit_opts_default(&lo);
    if (!s) s = bl_method_parse("rtn1", &lo.method, err);
    bl_layer_fit_result r;
    bl_linear fresh = {0};
    if (!s) s = bl_fit_layer(W, L->m, L->n, &lo, &fresh, &r, err);
    free(W);
    if (s) return s;
    bl_linear_free(&layers[0]);
    layers[0] = fresh;
    return BL_OK;
}

static void test_recipe_stages(void) {
    bl_model *src = load(model_path);
    if (!src) return;
    const char *dir = "/tmp/bitllm-test-stages";
    rm_rf(dir);
    stage_probe sp = {0};
    const bl_quant_stage stage = {"probe", probe_stage, &sp};
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    REQUIRE(bl_method_parse("onebit", &o.method, NULL) == BL_OK);
    o.stages = &stage;
    o.n_stages = 1;
    bl_quant_summary sum;
    bl_err err = {0};
    REQUIRE(bl_quantize_model(src, &o, dir, &sum, &err) == BL_OK);
    CHECK(sp.calls == 1);
    CHECK(sp.layers_seen == src->cfg.n_layers * BL_PROJ_COUNT);
    bl_model *q = load(dir);
    REQUIRE(q);
    CHECK(strcmp(q->layers[0].proj[0].ops->name, "rtn") == 0 && q->layers[0].proj[0].params.bits == 1);
    CHECK(strcmp(q->layers[0].proj[1].ops->name, "onebit") == 0);
    char *prov = NULL;
    CHECK(bl_quant_provenance(dir, &prov, &err) == BL_OK && prov &&
          strstr(prov, "\"stages\":[\"probe\"]"));
    free(prov);
    bl_model_free(q);
    rm_rf(dir);
    sp = (stage_probe){.fail = true};
    CHECK(bl_quantize_model(src, &o, dir, &sum, &err) == BL_ERR_NUMERIC);
    CHECK(strstr(err.msg, "stage probe") && strstr(err.msg, "probe refuses"));
    char cfg[256];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    CHECK(access(cfg, F_OK) != 0); /* nothing written */
    bl_model_free(src);
    rm_rf(dir);
}

int main(void) {
    snprintf(model_path, sizeof model_path, "%s",
             test_data_path("models/stories260K/stories260K.gguf"));
    TEST_RUN(test_rtn);
    TEST_RUN(test_onebit);
    TEST_RUN(test_dbf);
    TEST_RUN(test_mdbf);
    TEST_RUN(test_random_factors);
    TEST_RUN(test_random_factors_refuse_calibration);
    TEST_RUN(test_infeasible_target);
    TEST_RUN(test_saved_values_exact);
    TEST_RUN(test_corrupted_checkpoints);
    TEST_RUN(test_recipe_stages);
    return test_summary();
}
