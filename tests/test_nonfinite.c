/* NaN and Inf at run time: the sampler never indexes out of range (regression: NaN logits made
 * bl_sample read cand[-1]), and a non-finite value in the forward pass stops generate, ppl,
 * eval, quantization calibration and the gradient statistics with an error that names the
 * model file, where the value appeared (layer and part, or tensor) and the token position. The
 * bad values are planted in stories260K's norms after loading (they are owned f32 copies):
 * NaN in the final norm, and 1e30 in a layer's norm, whose activations overflow to Inf. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/eval.h"
#include "bitllm/quantize.h"
#include "bitllm/tasks.h"
#include "bitllm/train.h"
#include "test.h"

#define S260 "models/stories260K/stories260K.gguf"

static bl_model *load(void) {
    const char *p = test_data_path(S260);
    if (!test_file_exists(p)) return NULL;
    bl_model *m = NULL;
    bl_err err = {0};
    if (bl_model_load(p, NULL, &m, &err) != BL_OK) fprintf(stderr, "  load: %s\n", err.msg);
    return m;
}

static const int32_t toks[] = {1, 403, 407, 261, 378, 432, 383, 286};
enum { NT = sizeof toks / sizeof toks[0] };

static void test_sample_nonfinite(void) {
    const float bad[] = {NAN, INFINITY, -INFINITY};
    const float temps[] = {0.0f, 1.0f, 0.8f, INFINITY};
    const float tops[] = {1.0f, 1.0f, 0.5f, 0.5f};
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 4; k++) {
            bl_sampler s;
            bl_err err = {0};
            REQUIRE(bl_sampler_init(&s, 8, temps[k], tops[k], 3, &err) == BL_OK);
            float lg[8] = {0.1f, 0.5f, -1.0f, 2.0f, 0.0f, 0.3f, 0.2f, -0.5f};
            lg[b * 2 + 1] = bad[b];
            CHECK_MSG(bl_sample(&s, lg) == -1, "bad %d mode %d", b, k);
            for (int i = 0; i < 8; i++) lg[i] = bad[b]; /* every logit non-finite */
            CHECK(bl_sample(&s, lg) == -1);
            const float ok[8] = {0.1f, 0.5f, -1.0f, 2.0f, 0.0f, 0.3f, 0.2f, -0.5f};
            for (int r = 0; r < 50; r++) {
                int id = bl_sample(&s, ok);
                CHECK(id >= 0 && id < 8);
                if (temps[k] == 0.0f) CHECK(id == 3);
            }
            bl_sampler_free(&s);
        }
    bl_sampler s;
    bl_err err = {0};
    CHECK(bl_sampler_init(&s, 8, NAN, 0.9f, 0, &err) == BL_ERR_ARG);
    CHECK(bl_sampler_init(&s, 8, -1.0f, 0.9f, 0, &err) == BL_ERR_ARG);
    CHECK(bl_sampler_init(&s, 8, 1.0f, 0.0f, 0, &err) == BL_ERR_ARG);
    CHECK(bl_sampler_init(&s, 8, 1.0f, 1.5f, 0, &err) == BL_ERR_ARG);
    CHECK(bl_sampler_init(&s, 8, 1.0f, NAN, 0, &err) == BL_ERR_ARG);
}

static bl_status forward(bl_model *m, bool all, bool head, bl_err *err) {
    bl_state *st;
    float *lg = malloc(sizeof(float) * NT * (size_t)m->cfg.vocab_size);
    bl_status s = bl_state_new(m, 64, 4, 0, &st, err); /* batches of 4: two forward_batch calls */
    if (!s) s = bl_forward(st, toks, NT, head ? lg : NULL, all, err);
    if (!s) CHECK(bl_state_pos(st) == NT);
    bl_state_free(st);
    free(lg);
    return s;
}

static void test_forward_nan_final_norm(void) {
    bl_model *m = load();
    if (!m) SKIP("%s not found", S260);
    bl_err err = {0};
    m->out_norm[5] = NAN;
    CHECK(forward(m, true, true, &err) == BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "stories260K.gguf") && strstr(err.msg, "final norm") &&
                  strstr(err.msg, "model.norm.weight") && strstr(err.msg, "position 0"),
              "%s", err.msg);
    CHECK(forward(m, false, true, &err) == BL_ERR_NUMERIC); /* only the last token's logits */
    CHECK_MSG(strstr(err.msg, "position 7"), "%s", err.msg);
    CHECK(forward(m, true, false, &err) == BL_OK); /* no head, nothing non-finite computed */
    /* ppl names the chunk, generate's sampler guard and eval name the item */
    int32_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = 3 + (i * 37) % 500;
    bl_ppl_result r;
    CHECK(bl_perplexity(m, ids, 300, 128, 64, NULL, NULL, &r, &err) == BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "chunk 1 (text tokens 0 to 126)") && strstr(err.msg, "final norm"),
              "%s", err.msg);
    bl_task_request req[2] = {{.context = "Question: a cat\nAnswer:", .continuation = " yes",
                               .norm_chars = 3, .norm_bytes = 3},
                              {.context = "Question: a cat\nAnswer:", .continuation = " no",
                               .norm_chars = 2, .norm_bytes = 2}};
    bl_task_item item = {.req = req, .n_req = 2, .gold = 0};
    bl_task_set set = {.id = BL_TASK_PIQA, .path = "in-memory.jsonl", .items = &item,
                       .n_items = 1};
    bl_task_result tr;
    bl_eval_opts eo = {.ctx = 64};
    CHECK(bl_task_eval(m, &set, &eo, &tr, &err) == BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "piqa item 0 (in-memory.jsonl)") && strstr(err.msg, "final norm"),
              "%s", err.msg);
    /* output-gradient statistics (training engine) */
    float *out[35] = {0};
    CHECK(bl_grad_stats(m, ids, 100, 64, out, &err) == BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "window 1") && strstr(err.msg, "not finite") &&
                  strstr(err.msg, "final norm"),
              "%s", err.msg);
    bl_model_free(m);
}

static void test_forward_overflow_in_layer(void) {
    bl_model *m = load();
    if (!m) SKIP("%s not found", S260);
    bl_err err = {0};
    float *w = m->layers[2].attn_norm;
    for (int i = 0; i < m->cfg.dim; i++) w[i] = 1e30f; /* finite weights, Inf activations */
    CHECK(forward(m, true, true, &err) == BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "layer 2 after attention") && strstr(err.msg, "position 0"),
              "%s", err.msg);
    for (int i = 0; i < m->cfg.dim; i++) w[i] = 1.0f;
    w = m->layers[3].ffn_norm;
    for (int i = 0; i < m->cfg.dim; i++) w[i] = 1e30f;
    CHECK(forward(m, true, false, &err) == BL_ERR_NUMERIC); /* caught without the head too */
    CHECK_MSG(strstr(err.msg, "layer 3 after the MLP"), "%s", err.msg);
    /* quantization calibration runs the same forward pass and names the window */
    int32_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = 3 + (i * 53) % 500;
    bl_quant_opts o;
    bl_quant_opts_default(&o);
    o.method = test_method("dbf");
    o.calib_ids = ids;
    o.n_calib = 200;
    o.fit.iters = 1;
    o.grad_importance = false; /* the input statistics pass alone */
    bl_quant_summary sum;
    CHECK(bl_quantize_model(m, &o, "/tmp/bitllm-never-written-nf", &sum, &err) ==
          BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "calibration: window 1") && strstr(err.msg, "layer 3 after the MLP"),
              "%s", err.msg);
    /* by default the output-gradient pass runs first and names its window and layer */
    o.grad_importance = true;
    CHECK(bl_quantize_model(m, &o, "/tmp/bitllm-never-written-nf", &sum, &err) ==
          BL_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "output-gradient statistics, window 1") &&
              strstr(err.msg, "layer 3"), "%s", err.msg);
    bl_model_free(m);
}

int main(void) {
    TEST_RUN(test_sample_nonfinite);
    TEST_RUN(test_forward_nan_final_norm);
    TEST_RUN(test_forward_overflow_in_layer);
    return test_summary();
}
