/* Quantized token embeddings and output head (bl_quant_opts.embed / .head, `quantize --embed
 * --head`): save → load round trip (formats, bits, re-save gives the same logits), the logits of a
 * quantized head against the same model with the head's dense dequantized copy (f32), mapped and
 * read-into-memory loads giving identical logits, batched decoding equal to sequences alone, the
 * default leaving the files as they were (no embed/head entries), and bad values refused before
 * any work. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitllm/quantize.h"
#include "model/model_internal.h"
#include "test.h"

static char base[] = "/tmp/bitllm-embhead-XXXXXX";

/* Awkward small dimensions: odd vocabulary, a width that is no multiple of 32 (a partial scale
 * group, a 4-bit row ending mid-byte is avoided by the even width). */
static bl_config small_config(void) { return test_small_config(40, 10); }

static bl_model *load(const char *dir, bl_load_mode mode) {
    bl_model *m = NULL;
    bl_err err = {0};
    const bl_load_opts o = {.load = mode};
    if (bl_model_load(dir, &o, &m, &err) != BL_OK) fprintf(stderr, "  load %s: %s\n", dir, err.msg);
    return m;
}

enum { NT = 7 };
static const int32_t toks[NT] = {1, 5, 130, 77, 3, 64, 99};

/* All logits of the tokens (NT × vocab; caller frees). */
static float *logits_of(const bl_model *m) {
    const int V = m->cfg.vocab_size;
    float *l = malloc(sizeof(float) * (size_t)(NT * V));
    bl_state *s = NULL;
    if (bl_state_new(m, 16, 8, 1, &s, NULL) != BL_OK || bl_forward(s, toks, NT, l, true, NULL)) {
        free(l);
        l = NULL;
    }
    bl_state_free(s);
    return l;
}

static bl_status quantize(const bl_model *src, const char *embed, const char *head,
                          const char *name, char *dir, size_t cap, bl_err *err) {
    snprintf(dir, cap, "%s/%s", base, name);
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("onebit");
    o.embed = embed;
    o.head = head;
    bl_quant_summary sum;
    return bl_quantize_model(src, &o, dir, &sum, err);
}

static void test_round_trip(void) {
    char src_dir[128], dir[160], again[160];
    snprintf(src_dir, sizeof src_dir, "%s/src", base);
    bl_config c = small_config();
    REQUIRE(bl_synth_model(&c, BL_DT_F32, 5, src_dir, NULL) == BL_OK);
    bl_model *src = load(src_dir, BL_LOAD_DEFAULT);
    REQUIRE(src);
    bl_err err = {0};
    const struct { const char *embed, *head, *name; const char *ef, *hf; } cases[] = {
        {"q8_0", "q4_0", "e8h4", "qsym", "qsym"},
        {"q4_0", NULL, "e4", "qsym", "dense"},
        {NULL, "q8_0", "h8", NULL, "qsym"},
        {"f16", "onebit", "e16h1", NULL, "onebit"},
    };
    for (int k = 0; k < 4; k++) {
        bl_status s = quantize(src, cases[k].embed, cases[k].head, cases[k].name, dir, sizeof dir, &err);
        CHECK_MSG(s == BL_OK, "%s: %s", cases[k].name, err.msg);
        if (s) continue;
        bl_model *a = load(dir, BL_LOAD_DEFAULT), *b = load(dir, BL_LOAD_READ);
        REQUIRE(a && b);
        CHECK_MSG(cases[k].ef ? a->embed.ops == bl_format_find(cases[k].ef) : a->embed.ops == NULL,
                  "%s: embeddings %s", cases[k].name, a->embed.ops ? a->embed.ops->name : "table");
        CHECK_MSG(a->output.ops == bl_format_find(cases[k].hf), "%s: head %s", cases[k].name,
                  a->output.ops->name);
        if (cases[k].embed && !strcmp(cases[k].embed, "f16"))
            CHECK(a->tok_embd.dtype == BL_DT_F16);
        CHECK(!a->cfg.tied_embeddings);
        if (a->embed.ops) CHECK(a->embed.params.bits == (strcmp(cases[k].embed, "q8_0") ? 4 : 8));
        float *la = logits_of(a), *lb = logits_of(b);
        REQUIRE(la && lb);
        const size_t bytes = sizeof(float) * (size_t)(NT * c.vocab_size);
        CHECK_MSG(memcmp(la, lb, bytes) == 0, "%s: mapped and read-in logits differ", cases[k].name);
        /* written again from the loaded model: the same tensors, the same logits */
        snprintf(again, sizeof again, "%s/%s-again", base, cases[k].name);
        CHECK_MSG(bl_model_save(a, again, NULL, NULL, &err) == BL_OK, "%s", err.msg);
        bl_model *r = load(again, BL_LOAD_DEFAULT);
        REQUIRE(r);
        float *lr = logits_of(r);
        CHECK_MSG(lr && memcmp(la, lr, bytes) == 0, "%s: re-saved model's logits differ", cases[k].name);
        free(la), free(lb), free(lr);
        bl_model_free(a), bl_model_free(b), bl_model_free(r);
    }
    bl_model_free(src);
}

/* The quantized head against its dense dequantized copy: the same model written with the head as
 * f32 Ŵ (to_dense). Both sum the same f32 products in different orders; with dim = 40 terms the
 * difference is a few ulps of Σ|w·x| — checked as |Δ| ≤ 1e-5·(1 + max|logit|). */
static void test_head_vs_dense(void) {
    char src_dir[128], dir[160], ddir[160];
    snprintf(src_dir, sizeof src_dir, "%s/src", base);
    bl_model *src = load(src_dir, BL_LOAD_DEFAULT);
    REQUIRE(src);
    bl_err err = {0};
    for (int k = 0; k < 2; k++) {
        const char *spec = k ? "q4_0" : "q8_0";
        REQUIRE(quantize(src, NULL, spec, spec, dir, sizeof dir, &err) == BL_OK);
        bl_model *q = load(dir, BL_LOAD_DEFAULT);
        REQUIRE(q);
        const bl_linear *H = &q->output;
        float *W = malloc(sizeof(float) * (size_t)(H->m * H->n));
        REQUIRE(H->ops->to_dense(H, W, &err) == BL_OK);
        bl_tensor t = {0};
        snprintf(t.name, sizeof t.name, "lm_head.weight");
        t.dtype = BL_DT_F32;
        t.ndim = 2;
        t.shape[0] = H->m;
        t.shape[1] = H->n;
        t.data = W;
        t.nbytes = sizeof(float) * (size_t)(H->m * H->n);
        bl_linear dense;
        REQUIRE(bl_linear_dense_init(&dense, &t, &err) == BL_OK);
        snprintf(ddir, sizeof ddir, "%s/%s-dense", base, spec);
        const bl_model_parts parts = {NULL, &dense, NULL};
        REQUIRE(bl_model_write(q, &parts, ddir, "onebit", NULL, &err) == BL_OK);
        bl_linear_free(&dense);
        bl_model *d = load(ddir, BL_LOAD_DEFAULT);
        REQUIRE(d);
        float *lq = logits_of(q), *ld = logits_of(d);
        REQUIRE(lq && ld);
        double big = 0, worst = 0;
        for (int i = 0; i < NT * q->cfg.vocab_size; i++) {
            big = fmax(big, fabs(ld[i]));
            worst = fmax(worst, fabs((double)lq[i] - ld[i]));
        }
        fprintf(stderr, "  %s head: max difference %.3g, max logit %.3g\n", spec, worst, big);
        CHECK_MSG(worst <= 1e-5 * (1 + big), "%s head: logits differ by %.3g (max |logit| %.3g)",
                  spec, worst, big);
        free(lq), free(ld), free(W);
        bl_model_free(q), bl_model_free(d);
    }
    bl_model_free(src);
}

/* Batched decoding with a quantized embedding and head: every sequence's logits equal, bit for
 * bit, its logits alone. */
static void test_batched(void) {
    char dir[160];
    snprintf(dir, sizeof dir, "%s/e8h4", base);
    bl_model *m = load(dir, BL_LOAD_DEFAULT);
    REQUIRE(m);
    const int V = m->cfg.vocab_size, B = 5;
    bl_state *batch = NULL, *alone = NULL;
    REQUIRE(bl_state_new_slots(m, B, 32, 16, 2, &batch, NULL) == BL_OK);
    float *lb = malloc(sizeof(float) * (size_t)(B * V)), *la = malloc(sizeof(float) * (size_t)V);
    bl_seq_batch q[5];
    for (int s = 0; s < B; s++) q[s] = (bl_seq_batch){s, toks + s, 1, lb + (size_t)s * V, false};
    REQUIRE(bl_forward_batch(batch, q, B, NULL) == BL_OK);
    int bad = 0;
    for (int s = 0; s < B; s++) {
        REQUIRE(bl_state_new(m, 32, 16, 1, &alone, NULL) == BL_OK);
        REQUIRE(bl_forward(alone, toks + s, 1, la, false, NULL) == BL_OK);
        bad += memcmp(la, lb + (size_t)s * V, sizeof(float) * (size_t)V) != 0;
        bl_state_free(alone);
    }
    CHECK_MSG(bad == 0, "%d of %d sequences differ batched", bad, B);
    free(lb), free(la);
    bl_state_free(batch);
    bl_model_free(m);
}

/* The default writes no embed/head entries and keeps the tied table; bad values are refused
 * before any fit, with the option named. */
static void test_defaults_and_bad_values(void) {
    char src_dir[128], dir[160];
    snprintf(src_dir, sizeof src_dir, "%s/src", base);
    bl_model *src = load(src_dir, BL_LOAD_DEFAULT);
    REQUIRE(src);
    bl_err err = {0};
    REQUIRE(quantize(src, NULL, NULL, "plain", dir, sizeof dir, &err) == BL_OK);
    bl_model *p = load(dir, BL_LOAD_DEFAULT);
    REQUIRE(p);
    CHECK(p->embed.ops == NULL && p->tok_embd.dtype == src->tok_embd.dtype);
    CHECK(p->cfg.tied_embeddings == src->cfg.tied_embeddings);
    CHECK(p->quant_config_json && !strstr(p->quant_config_json, "embed_tokens") &&
          !strstr(p->quant_config_json, "\"head\""));
    bl_model_free(p);
    const struct { const char *embed, *head, *want; } bad[] = {
        {"onebit", NULL, "row lookup"},
        {"q9_0", NULL, "--embed"},
        {"", NULL, "--embed"},
        {NULL, "bogus", "--head"},
        {NULL, "qsym:bits=12", "--head"},
        {NULL, "dbf:mid=0,bogus=1", "--head"},
    };
    for (int k = 0; k < 6; k++) {
        memset(&err, 0, sizeof err);
        bl_status s = quantize(src, bad[k].embed, bad[k].head, "bad", dir, sizeof dir, &err);
        CHECK_MSG(s == BL_ERR_ARG && strstr(err.msg, bad[k].want), "%s/%s: status %d, '%s'",
                  bad[k].embed ? bad[k].embed : "-", bad[k].head ? bad[k].head : "-", s, err.msg);
        CHECK_MSG(access(dir, F_OK) != 0, "a refused run left %s", dir);
    }
    bl_model_free(src);
}

int main(void) {
    if (!mkdtemp(base)) return 1;
    TEST_RUN(test_round_trip);
    TEST_RUN(test_head_vs_dense);
    TEST_RUN(test_batched);
    TEST_RUN(test_defaults_and_bad_values);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", base);
    return test_summary();
}
