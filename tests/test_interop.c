/* Released OneBit checkpoints (model_type "bitllama": per projection `weight` as packed I8 signs
 * or as the latent float weight, `input_factor`, `weight_scale`, LayerNorm always on) load as
 * onebit layers with post_ln and compute exactly what the same data in bitllm's format does. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitllm/quantize.h"
#include "bitllm/train.h"
#include "test.h"

static void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  cannot remove %s\n", dir);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Rewrites a bitllm onebit checkpoint in the OneBit release layout. latent: float weights whose
 * signs are the packed bits (magnitudes random) instead of packed I8. */
static int write_onebit_release(const bl_model *q, const char *dir, bool latent) {
    bl_st_writer *w;
    if (bl_st_writer_new(&w, NULL)) return 0;
    bl_rng rng;
    bl_rng_seed(&rng, 5);
    void *bufs[1024];
    int nb = 0, ok = 1;
    for (int i = 0; i < q->tensors.n && ok; i++) {
        const bl_tensor *t = &q->tensors.t[i];
        char name[BL_MAX_NAME];
        snprintf(name, sizeof name, "%s", t->name);
        char *dot = strrchr(name, '.');
        if (ends_with(t->name, ".sign")) {
            strcpy(dot, ".weight");
            if (!latent) {
                ok = bl_st_writer_add(w, name, BL_DT_I8, 2, t->shape, t->data, t->nbytes, false,
                                      NULL) == BL_OK;
                continue;
            }
            char gname[BL_MAX_NAME];
            snprintf(gname, sizeof gname, "%.*s.g", (int)(dot - name), name);
            const bl_tensor *g = bl_tensor_set_find(&q->tensors, gname);
            if (!g) return 0;
            int64_t m = t->shape[0], n = g->shape[0], shape[2] = {m, n};
            float *f = malloc(sizeof(float) * (size_t)(m * n));
            for (int64_t r = 0; r < m; r++)
                for (int64_t c = 0; c < n; c++) {
                    int neg = (((const uint8_t *)t->data)[r * t->shape[1] + c / 8] >> (c % 8)) & 1;
                    float mag = 0.001f + bl_rng_uniform(&rng);
                    f[r * n + c] = neg ? -mag : mag;
                }
            bufs[nb++] = f;
            ok = bl_st_writer_add(w, name, BL_DT_F32, 2, shape, f, sizeof(float) * (size_t)(m * n),
                                  false, NULL) == BL_OK;
        } else if (ends_with(t->name, ".g") || ends_with(t->name, ".h")) {
            strcpy(dot, ends_with(t->name, ".g") ? ".input_factor" : ".weight_scale");
            ok = bl_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, false,
                                  NULL) == BL_OK;
        } else {
            ok = bl_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, false,
                                  NULL) == BL_OK;
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ok = ok && bl_st_writer_finish(w, path, NULL) == BL_OK;
    bl_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    /* config: the source's, as a "bitllama" model without quantization_config */
    char *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", q->path);
    if (!ok || bl_read_file(path, &text, &len, NULL)) return 0;
    cJSON *c = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObject(c, "quantization_config");
    cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("bitllama"));
    text = cJSON_Print(c);
    cJSON_Delete(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ok = bl_write_file_atomic(path, text, strlen(text), NULL) == BL_OK;
    free(text);
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/tokenizer.gguf", q->path);
    snprintf(to, sizeof to, "%s/tokenizer.gguf", dir);
    char *tok;
    if (ok && bl_read_file(from, &tok, &len, NULL) == BL_OK) {
        ok = bl_write_file_atomic(to, tok, len, NULL) == BL_OK;
        free(tok);
    }
    return ok;
}

static void logits(bl_model *m, float *out, int T) {
    static const int32_t toks[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
    bl_state *st;
    if (bl_state_new(m, 16, 16, 0, &st, NULL)) return;
    bl_forward(st, toks, T, out, true, NULL);
    bl_state_free(st);
}

static void test_onebit_release_layouts(void) {
    char src_path[4096];
    snprintf(src_path, sizeof src_path, "%s", test_data_path("models/stories260K/stories260K.gguf"));
    if (!test_file_exists(src_path)) SKIP("%s not found", src_path);
    bl_model *src = NULL;
    REQUIRE(bl_model_load(src_path, NULL, &src, NULL) == BL_OK);
    char ours[] = "/tmp/bitllm-ob-XXXXXX", packed[] = "/tmp/bitllm-obp-XXXXXX",
         lat[] = "/tmp/bitllm-obl-XXXXXX", conv[] = "/tmp/bitllm-obc-XXXXXX";
    REQUIRE(mkdtemp(ours) && mkdtemp(packed) && mkdtemp(lat) && mkdtemp(conv));
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    bl_quant_summary sum;
    REQUIRE(bl_quantize_model(src, &o, ours, &sum, NULL) == BL_OK);
    bl_model_free(src);
    bl_model *q = NULL;
    REQUIRE(bl_model_load(ours, NULL, &q, NULL) == BL_OK);
    REQUIRE(write_onebit_release(q, packed, false));
    REQUIRE(write_onebit_release(q, lat, true));
    /* The release layout always applies the LayerNorm: the expected model is ours with post_ln
     * recorded in its quantization_config (the writer stores the layer parameters). */
    for (int l = 0; l < q->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) q->layers[l].proj[p].params.post_ln = true;
    REQUIRE(bl_model_save(q, ours, NULL, NULL, NULL) == BL_OK);
    bl_model_free(q);
    REQUIRE(bl_model_load(ours, NULL, &q, NULL) == BL_OK);
    CHECK(q->layers[0].proj[0].params.post_ln);
    const int T = 10, V = q->cfg.vocab_size;
    float *a = malloc(sizeof(float) * V * T), *b = malloc(sizeof(float) * V * T);
    logits(q, a, T);
    const char *dirs[] = {packed, lat};
    for (int k = 0; k < 2; k++) {
        bl_model *r = NULL;
        bl_err err = {0};
        bl_status s = bl_model_load(dirs[k], NULL, &r, &err);
        CHECK_MSG(s == BL_OK, "%s: %s", dirs[k], err.msg);
        if (s) continue;
        CHECK(strcmp(r->quant_method, "onebit") == 0);
        CHECK(strcmp(r->layers[0].proj[0].ops->name, "onebit") == 0 &&
              r->layers[0].proj[0].params.post_ln);
        logits(r, b, T);
        CHECK_MSG(memcmp(a, b, sizeof(float) * V * T) == 0, "%s layout: logits differ",
                  k ? "latent" : "packed");
        if (k == 0) {
            /* converting the release keeps it: bitllm format with post_ln recorded */
            CHECK(bl_model_save(r, conv, NULL, NULL, &err) == BL_OK);
            bl_model *c = NULL;
            CHECK(bl_model_load(conv, NULL, &c, &err) == BL_OK);
            if (c) {
                logits(c, b, T);
                CHECK(memcmp(a, b, sizeof(float) * V * T) == 0);
                CHECK(c->layers[2].proj[5].params.post_ln);
                bl_model_free(c);
            }
        }
        bl_model_free(r);
    }
    free(a), free(b);
    /* Distillation reads a student through its in-memory layers, so a released OneBit checkpoint
     * is a student as it is, without `convert` (regression: the trainer read the tensors by
     * bitllm's on-disk names and refused it). It must train exactly as the same data in bitllm's
     * layout: same loss before, same loss after the same steps. */
    bl_model *t = NULL;
    REQUIRE(bl_model_load(src_path, NULL, &t, NULL) == BL_OK);
    int32_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = 3 + (i * 37) % (t->cfg.vocab_size - 3);
    bl_train_data d;
    REQUIRE(bl_train_data_from_ids(ids, 200, 16, 1, &d, NULL) == BL_OK);
    double before[2] = {0}, after[2] = {0};
    const char *students[2] = {ours, packed};
    for (int k = 0; k < 2; k++) {
        bl_model *st = NULL;
        bl_err err = {0};
        REQUIRE(bl_model_load(students[k], NULL, &st, &err) == BL_OK);
        char out[] = "/tmp/bitllm-obd-XXXXXX";
        REQUIRE(mkdtemp(out));
        bl_distill_opts dop;
        bl_distill_opts_default(&dop);
        dop.steps = 6;
        dop.seq = 16;
        dop.batch = 2;
        dop.warmup = 1;
        dop.post_ln = -1; /* as in the student */
        bl_distill_result res;
        bl_status s = bl_distill(t, st, &d, out, &dop, &res, &err);
        CHECK_MSG(s == BL_OK, "distill from %s: %s", k ? "the release layout" : "bitllm's layout",
                  err.msg);
        before[k] = res.loss_before;
        after[k] = res.loss_after;
        if (!s) {
            bl_model *r = NULL;
            CHECK_MSG(bl_model_load(out, NULL, &r, &err) == BL_OK, "%s", err.msg);
            if (r) {
                CHECK(r->layers[1].proj[4].ops == bl_format_find("onebit") &&
                      r->layers[1].proj[4].params.post_ln);
                bl_model_free(r);
            }
        }
        bl_model_free(st);
        rm_rf(out);
    }
    CHECK(isfinite(before[1]) && after[1] < before[1]);
    CHECK_MSG(before[0] == before[1] && after[0] == after[1],
              "release layout trains differently: loss %.9g -> %.9g vs %.9g -> %.9g", before[1],
              after[1], before[0], after[0]);
    bl_train_data_free(&d);
    bl_model_free(t);
    bl_model_free(q);
    rm_rf(ours), rm_rf(packed), rm_rf(lat), rm_rf(conv);
}

int main(void) {
    TEST_RUN(test_onebit_release_layouts);
    return test_summary();
}
