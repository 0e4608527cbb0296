/* The fuzz targets (fuzz/targets.h). Inputs come from memory through the library's from-memory
 * entry points, so the same code reads a file on disk and a fuzzer's buffer. */
#include "targets.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/chat.h"
#include "bitllm/io.h"
#include "bitllm/model.h"
#include "bitllm/tasks.h"
#include "model/model_internal.h"
#include "serve/api.h"

/* Text every loaded tokenizer encodes and decodes: ASCII, spaces, digits, punctuation, 2-4 byte
 * UTF-8, control characters and special-token spellings. */
static const char sample_text[] = "Hello world!  It's 2024: 3.14159\n\tna\xc3\xafve caf\xc3\xa9 "
                                  "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 <s></s><|endoftext|>"
                                  " \x01 end";

static void exercise_tokenizer(const bl_tokenizer *t) {
    int32_t *ids = NULL;
    size_t n = 0;
    bl_err err;
    if (bl_tokenizer_encode(t, sample_text, sizeof sample_text - 1, true, &ids, &n, &err) ==
        BL_OK) {
        char *text = NULL;
        size_t len;
        if (bl_tokenizer_decode(t, ids, n, &text, &len, &err) == BL_OK) free(text);
        char piece[64];
        for (size_t i = 0; i < n; i++) (void)bl_tokenizer_piece(t, ids[i], piece, sizeof piece);
    }
    free(ids);
}

/* A few rows through the model: a loaded model must be one the forward pass can run. */
static void exercise_model(const bl_model *m) {
    bl_state *st = NULL;
    if (bl_state_new(m, 4, 2, 1, &st, NULL) != BL_OK) return;
    int32_t toks[2] = {0, m->cfg.vocab_size - 1};
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size * 2);
    if (logits) (void)bl_forward(st, toks, 2, logits, true, NULL);
    free(logits);
    bl_state_free(st);
    if (m->tok) exercise_tokenizer(m->tok);
}

bl_status bl_fuzz_safetensors(const uint8_t *data, size_t size, bl_err *err) {
    bl_tensor_set set = {0};
    char *meta = NULL;
    bl_status s = bl_safetensors_parse("fuzz.safetensors", data, size, &set, &meta, err);
    for (int i = 0; !s && i < set.n; i++) {
        const bl_tensor *t = &set.t[i];
        float *f = NULL;
        int64_t at;
        (void)bl_tensor_find_nonfinite(t, NULL, &at);
        if (bl_tensor_to_f32(t, &f, NULL) == BL_OK) free(f);
    }
    free(meta);
    bl_tensor_set_free(&set);
    return s;
}

/* Status: the tokenizer's failure if it has one, else the model's (both always run). */
bl_status bl_fuzz_gguf(const uint8_t *data, size_t size, bl_err *err) {
    bl_gguf g;
    bl_status s = bl_gguf_parse("fuzz.gguf", data, size, &g, err);
    if (s) return s;
    bl_tokenizer *t = NULL;
    bl_status ts = BL_OK;
    if (bl_gguf_find(&g, "tokenizer.ggml.model")) ts = bl_tokenizer_load_gguf(&g, &t, err);
    if (t) exercise_tokenizer(t);
    bl_tokenizer_free(t);
    bl_gguf_close(&g);
    bl_model *m = NULL;
    s = bl_model_load_memory("fuzz.gguf", data, size, NULL, &m, ts ? NULL : err);
    if (!s) exercise_model(m);
    bl_model_free(m);
    return ts ? ts : s;
}

bl_status bl_fuzz_llama2c(const uint8_t *data, size_t size, bl_err *err) {
    bl_model *m = NULL;
    bl_status s = bl_model_load_memory("fuzz.bin", data, size, NULL, &m, err);
    if (!s) exercise_model(m);
    bl_model_free(m);
    return s;
}

bl_status bl_fuzz_config(const uint8_t *data, size_t size, bl_err *err) {
    char *text = bl_strndup((const char *)data, size);
    if (!text) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_config c;
    bl_status s = bl_config_from_hf_json(text, "config.json", &c, err);
    /* The per-layer entries of a quantized checkpoint's config. */
    cJSON *root = s ? NULL : cJSON_Parse(text);
    const cJSON *layers =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "quantization_config"),
                                         "layers"),
        *e;
    cJSON_ArrayForEach(e, layers) {
        const bl_format_ops *ops;
        bl_format_params p;
        if (e->string) (void)bl_format_params_from_json(e, e->string, &ops, &p, NULL);
    }
    cJSON_Delete(root);
    free(text);
    return s;
}

bl_status bl_fuzz_tokenizer_json(const uint8_t *data, size_t size, bl_err *err) {
    bl_tokenizer *t = NULL;
    bl_status s = bl_tokenizer_from_hf_json("tokenizer.json", (const char *)data, size, NULL, 0,
                                            &t, err);
    if (!s) exercise_tokenizer(t);
    bl_tokenizer_free(t);
    return s;
}

bl_status bl_fuzz_tokenizer_bin(const uint8_t *data, size_t size, bl_err *err) {
    if (size < 2) return bl_fail(err, BL_ERR_ARG, "fuzz input: needs 2 bytes of vocabulary size");
    int vocab = data[0] | data[1] << 8;
    bl_tokenizer *t = NULL;
    bl_status s = bl_tokenizer_from_llama2c("tokenizer.bin", data + 2, size - 2, vocab, &t, err);
    if (!s) exercise_tokenizer(t);
    bl_tokenizer_free(t);
    return s;
}

bl_status bl_fuzz_model_dir(const uint8_t *data, size_t size, bl_err *err) {
    if (size < 4) return bl_fail(err, BL_ERR_ARG, "fuzz input: needs 4 bytes of config length");
    uint32_t clen = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 24;
    if (clen > size - 4) return bl_fail(err, BL_ERR_ARG, "fuzz input: config length too large");
    char *cfg = bl_strndup((const char *)data + 4, clen);
    if (!cfg) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_model *m = NULL;
    bl_status s = bl_model_load_memory("model.safetensors", data + 4 + clen, size - 4 - clen, cfg,
                                       &m, err);
    if (!s) exercise_model(m);
    bl_model_free(m);
    free(cfg);
    return s;
}

bl_status bl_fuzz_tasks(const uint8_t *data, size_t size, bl_err *err) {
    if (size < 1) return bl_fail(err, BL_ERR_ARG, "fuzz input: needs a task byte");
    int sel = data[0] % (BL_TASK_COUNT + 1);
    const char *labels = NULL;
    size_t labels_len = 0, off = 1;
    bl_task_id id = sel == BL_TASK_COUNT ? BL_TASK_PIQA : (bl_task_id)sel;
    if (sel == BL_TASK_COUNT) { /* PIQA's original files: labels first */
        if (size < 2 || (size_t)data[1] > size - 2)
            return bl_fail(err, BL_ERR_ARG, "fuzz input: bad label length");
        labels = (const char *)data + 2;
        labels_len = data[1];
        off = 2 + labels_len;
    }
    bl_task_set *t = NULL;
    bl_status s = bl_task_parse(id, "task.jsonl", (const char *)data + off, size - off, labels,
                                labels_len, 0, &t, err);
    bl_task_set_free(t);
    return s;
}

bl_status bl_fuzz_npy(const uint8_t *data, size_t size, bl_err *err) {
    float *f = NULL;
    bl_npy_header h;
    bl_status s = bl_npy_to_f32(data, size, "fuzz.npy", &f, &h, err);
    if (!s) { /* every element must be there */
        volatile float sum = 0.0f;
        for (uint64_t i = 0; i < h.numel; i++) sum += f[i];
        (void)sum;
    }
    free(f);
    return s;
}

/* The server's request context: a small SentencePiece-style vocabulary (control tokens, the 256
 * byte tokens, a few words and every chat family's special tokens) and a 512-token context, so
 * that prompts longer than the context are reached. Built once. */
static const char *const request_pieces[] = {
    " ", "a", "the", " the", "he", "llo", " world", "<|im_start|>", "<|im_end|>", "[INST]",
    "[/INST]", "<<SYS>>", "<</SYS>>", "<|begin_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>", "<|user|>", "<|assistant|>", "<|system|>", "<think>",
    "</think>"};

static const bl_model *request_model(void) {
    static bl_model m;
    static bool done;
    if (done) return m.tok ? &m : NULL;
    done = true;
    size_t n = 0;
    uint8_t *img = malloc(1 << 14); /* 281 records of at most 8 + 31 bytes */
    if (!img) return NULL;
#define PUT(p, len)                                                                               \
    do {                                                                                          \
        memcpy(img + n, (p), (len));                                                              \
        n += (len);                                                                               \
    } while (0)
    const int32_t max_len = 32;
    PUT(&max_len, 4);
    char piece[32];
    const int count = 3 + 256 + (int)(sizeof request_pieces / sizeof *request_pieces);
    static const char *const control[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    for (int id = 0; id < count; id++) {
        if (id < 3) snprintf(piece, sizeof piece, "%s", control[id]);
        else if (id < 259) snprintf(piece, sizeof piece, "<0x%02X>", id - 3);
        else snprintf(piece, sizeof piece, "%s", request_pieces[id - 259]);
        float score = -(float)id;
        int32_t len = (int32_t)strlen(piece);
        PUT(&score, 4);
        PUT(&len, 4);
        PUT(piece, (size_t)len);
    }
#undef PUT
    bl_tokenizer *t = NULL;
    if (bl_tokenizer_from_llama2c("request.bin", img, n, count, &t, NULL) == BL_OK) {
        m.tok = t;
        m.cfg.vocab_size = count;
        m.cfg.bos_id = 1;
        m.cfg.eos_id = 2;
    }
    free(img);
    return m.tok ? &m : NULL;
}

/* One byte: bit 0 chat (else completion), the rest (mod the family count + 1) the chat template,
 * the last value meaning none; then the request body, also given to /tokenize and /detokenize. A
 * parsed request's stop strings are then searched for in the body, as the server searches
 * generated text. */
bl_status bl_fuzz_request(const uint8_t *data, size_t size, bl_err *err) {
    if (size < 1) return bl_fail(err, BL_ERR_ARG, "fuzz input: needs a selector byte");
    const bl_model *m = request_model();
    if (!m) return bl_fail(err, BL_ERR_NOMEM, "fuzz: no tokenizer");
    int n_names;
    const char *const *names = bl_chat_template_names(&n_names);
    const int sel = (data[0] >> 1) % (n_names + 1);
    bl_chat_template tmpl;
    const bool has_tmpl =
        sel < n_names && bl_chat_template_by_name(names[sel], &tmpl, NULL) == BL_OK;
    const srv_api_ctx c = {.m = m, .tmpl = has_tmpl ? &tmpl : NULL,
                           .tmpl_error = "no chat template", .ctx = 512};
    srv_api_req r;
    srv_error e = {0};
    const char *body = (const char *)data + 1;
    /* the same body to llama.cpp's /tokenize and /detokenize */
    srv_error te = {0};
    free(srv_tokenize(&c, body, size - 1, &te));
    free(srv_detokenize(&c, body, size - 1, &te));
    if (!srv_parse_request(&c, body, size - 1, data[0] & 1, &r, &e))
        return bl_fail(err, BL_ERR_ARG, "HTTP %d: %s", e.status, e.message);
    (void)srv_find_stop(body, size - 1, 0, r.choice[0].stop, r.choice[0].n_stop);
    (void)srv_stop_hold(body, size - 1, r.choice[0].stop, r.choice[0].n_stop);
    srv_api_req_free(&r);
    return BL_OK;
}

const bl_fuzz_target bl_fuzz_targets[] = {
    {"safetensors", bl_fuzz_safetensors, "a safetensors file"},
    {"gguf", bl_fuzz_gguf, "a GGUF file (metadata, tokenizer, model)"},
    {"llama2c", bl_fuzz_llama2c, "a llama2.c checkpoint (v0, v1, v2)"},
    {"config", bl_fuzz_config, "config.json with quantization_config"},
    {"tokenizer_json", bl_fuzz_tokenizer_json, "tokenizer.json"},
    {"tokenizer_bin", bl_fuzz_tokenizer_bin, "llama2.c tokenizer.bin"},
    {"model_dir", bl_fuzz_model_dir, "config.json + model.safetensors, plain or quantized"},
    {"tasks", bl_fuzz_tasks, "eval task files (JSONL, HellaSwag text, PIQA labels)"},
    {"npy", bl_fuzz_npy, "a NumPy .npy array (bitllm fit's matrices and importances)"},
    {"request", bl_fuzz_request, "an OpenAI completion or chat request body (bitllm serve)"},
};
const int bl_fuzz_n_targets = (int)(sizeof bl_fuzz_targets / sizeof bl_fuzz_targets[0]);
