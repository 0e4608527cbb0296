/* Per-matrix bit allocation (bl_quant_opts.allocate, src/ptq/allocate.c) on stories260K with
 * calibration: the allocated model stores no more bits than the uniform run and is within
 * 0.01 bpw of it, two runs write byte-identical checkpoints, and the summed sensitivity-weighted
 * error of the allocated fits is at most the uniform fits'. A format without a middle dimension
 * is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/quantize.h"
#include "test.h"

enum { NP = 64 }; /* ≥ 5 layers · 7 projections */

typedef struct {
    int n, na;
    double werr[NP];   /* wrel²·wnorm2 of each fitted projection */
    double sens[NP];   /* from the allocation table */
    int64_t mid[NP];
    double budget, allocated;
} log_t;

static void on_layer(void *ctx, const char *name, int64_t m, int64_t n,
                     const bl_layer_fit_result *r) {
    (void)name;
    (void)m;
    (void)n;
    log_t *lg = ctx;
    if (lg->n < NP) {
        lg->mid[lg->n] = r->mid;
        lg->werr[lg->n++] = r->wrel_err * r->wrel_err * r->wnorm2;
    }
}

static void on_alloc(void *ctx, const bl_alloc_entry *e) {
    log_t *lg = ctx; /* entries arrive in projection order */
    if (lg->na < NP) lg->sens[lg->na++] = e->sensitivity;
    lg->budget = e->budget_bits;
    lg->allocated = e->allocated_bits;
}

static char *read_all(const char *path) {
    char *t = NULL;
    size_t len = 0;
    bl_err err = {0};
    return bl_read_file(path, &t, &len, &err) == BL_OK ? t : NULL;
}

static bool same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = false;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static bool run(bl_model *mdl, const char *method, bool allocate, const int32_t *ids, size_t n_ids,
                char *dir, log_t *lg, bl_quant_summary *sum) {
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method(method);
    o.fit.seed = 2;
    o.fit.iters = test_quick() ? 4 : 8;
    o.calib_ids = ids;
    o.n_calib = n_ids;
    o.allocate = allocate;
    o.n_threads = 1; /* the result does not depend on it; spares idle OpenMP workers spinning */
    o.on_layer = on_layer;
    o.on_layer_ctx = lg;
    o.on_alloc = on_alloc;
    o.on_alloc_ctx = lg;
    strcpy(dir, "/tmp/bitllm-alloc-XXXXXX");
    if (!mkdtemp(dir)) return false;
    bl_err err = {0};
    if (bl_quantize_model(mdl, &o, dir, sum, &err) != BL_OK) {
        fprintf(stderr, "  quantize: %s\n", err.msg);
        return false;
    }
    return true;
}

static void rm_rf(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", dir);
}

static void test_allocate(void) {
    char path[4096], wiki[4096]; /* test_data_path returns one static buffer */
    snprintf(path, sizeof path, "%s", test_data_path("models/stories260K/stories260K.gguf"));
    snprintf(wiki, sizeof wiki, "%s", test_data_path("data/wikitext-2/wiki.test.raw"));
    if (!test_file_exists(path) || !test_file_exists(wiki))
        SKIP("stories260K or WikiText-2 not found under %s", test_data_path(""));
    bl_model *mdl = NULL;
    bl_err err = {0};
    CHECK_MSG(bl_model_load(path, NULL, &mdl, &err) == BL_OK, "%s", err.msg);
    REQUIRE(mdl);
    char *text = read_all(wiki);
    REQUIRE(text);
    text[4000] = '\0'; /* ~2500 tokens: every run makes ~12 calibration passes */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    REQUIRE(bl_tokenizer_encode(mdl->tok, text, strlen(text), false, &ids, &n_ids, &err) == BL_OK);
    const int total = mdl->cfg.n_layers * BL_PROJ_COUNT;
    REQUIRE(total <= NP);
    const char *methods[2] = {"dbf", "mdbf:rank_l=2"};
    for (int mi = 0; mi < (test_quick() ? 1 : 2); mi++) {
        log_t *u = calloc(1, sizeof *u), *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
        char du[64], da[64], db[64];
        bl_quant_summary su, sa, sb;
        REQUIRE(run(mdl, methods[mi], false, ids, n_ids, du, u, &su));
        REQUIRE(run(mdl, methods[mi], true, ids, n_ids, da, a, &sa));
        /* determinism: a second allocated run (the release pass; the sanitizer pass saves it) */
        const bool twice = !test_quick();
        if (twice) REQUIRE(run(mdl, methods[mi], true, ids, n_ids, db, b, &sb));
        REQUIRE(u->n == total && a->n == total && (!twice || b->n == total));
        /* the budget: the uniform run's total, the allocated run at most that and within 0.01 bpw */
        double wsum = 0.0;
        for (int l = 0; l < mdl->cfg.n_layers; l++)
            for (int p = 0; p < BL_PROJ_COUNT; p++)
                wsum += (double)mdl->layers[l].proj[p].m * (double)mdl->layers[l].proj[p].n;
        CHECK_MSG(fabs(a->budget - su.bpw_layers * wsum) < 0.5, "%s: budget %.0f bits, uniform "
                  "run %.0f", methods[mi], a->budget, su.bpw_layers * wsum);
        CHECK_MSG(sa.bpw_layers * wsum <= a->budget + 0.5 && fabs(sa.bpw_layers * wsum -
                  a->allocated) < 0.5, "%s: stored %.0f bits, allocated %.0f, budget %.0f",
                  methods[mi], sa.bpw_layers * wsum, a->allocated, a->budget);
        CHECK_MSG(fabs(sa.bpw_layers - su.bpw_layers) <= 0.01, "%s: %.4f bpw against %.4f",
                  methods[mi], sa.bpw_layers, su.bpw_layers);
        int moved = 0;
        for (int i = 0; i < total; i++) moved += a->mid[i] != u->mid[i];
        CHECK_MSG(moved > 0, "%s: the allocation kept every uniform size", methods[mi]);
        if (twice) {
            char fa[128], fb[128];
            snprintf(fa, sizeof fa, "%s/model.safetensors", da);
            snprintf(fb, sizeof fb, "%s/model.safetensors", db);
            CHECK_MSG(same_file(fa, fb), "%s: two allocated runs differ", methods[mi]);
            rm_rf(db);
        }
        /* the objective: Σ sensitivity · weighted error */
        double eu = 0.0, ea = 0.0;
        for (int i = 0; i < total; i++) {
            eu += a->sens[i] * u->werr[i];
            ea += a->sens[i] * a->werr[i];
        }
        fprintf(stderr, "  %s: %.4f bpw uniform, %.4f allocated (%d of %d sizes moved); summed "
                        "weighted error %.4g -> %.4g\n",
                methods[mi], su.bpw_layers, sa.bpw_layers, moved, total, eu, ea);
        CHECK_MSG(ea <= eu, "%s: allocated %.5g above uniform %.5g", methods[mi], ea, eu);
        rm_rf(du);
        rm_rf(da);
        free(u);
        free(a);
        free(b);
    }
    /* no size knob */
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("onebit");
    o.allocate = true;
    bl_quant_summary s;
    CHECK(bl_quantize_model(mdl, &o, "/tmp/bitllm-alloc-never", &s, &err) == BL_ERR_ARG &&
          strstr(err.msg, "no size knob") != NULL);
    free(ids);
    free(text);
    bl_model_free(mdl);
}

int main(void) {
    TEST_RUN(test_allocate);
    return test_summary();
}
