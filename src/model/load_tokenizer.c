/* A model's tokenizer: the file is told apart by content (a tokenizer.json or its directory, a
 * llama2.c tokenizer.bin, a GGUF file holding tokenizer.ggml.*), and it must fit the model: it
 * may not emit an id the model has no row for, and the model's vocabulary may exceed it only by
 * padding. */
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>

static bl_status load_tokenizer(bl_model *m, const char *path, bl_err *err) {
    bl_file_kind kind;
    char what[96];
    bl_status s = bl_detect_file(path, &kind, what, sizeof what, err);
    if (s) return s;
    bl_tokenizer_free(m->tok);
    m->tok = NULL;
    switch (kind) {
    case BL_FILE_DIR:
    case BL_FILE_JSON:
        s = bl_tokenizer_load_hf(path, &m->tok, err);
        break;
    case BL_FILE_GGUF: {
        bl_gguf g;
        if ((s = bl_gguf_open(path, &g, err))) return s;
        s = bl_tokenizer_load_gguf(&g, &m->tok, err);
        bl_gguf_close(&g);
        break;
    }
    case BL_FILE_LLAMA2C_TOKENIZER:
    case BL_FILE_UNKNOWN: /* its reader says what is wrong with it */
        s = bl_tokenizer_load_llama2c(path, m->cfg.vocab_size, &m->tok, err);
        break;
    default:
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: not a tokenizer (%s): expected a tokenizer.json, a llama2.c "
                       "tokenizer.bin or a GGUF file",
                       path, what);
    }
    if (!s && !(m->tokenizer_path = bl_strdup(path))) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    return s;
}

/* Errors say that it was the tokenizer that failed: the path alone reads like the model's. */
bl_status bl_model_load_tokenizer(bl_model *m, const char *path, bl_err *err) {
    bl_status s = load_tokenizer(m, path, err);
    return s ? bl_fail_context(err, s, "tokenizer") : BL_OK;
}

bl_status bl_model_check_tokenizer(const bl_model *m, bl_err *err) {
    const int n = bl_tokenizer_vocab_size(m->tok), V = m->cfg.vocab_size;
    const char *tp = m->tokenizer_path ? m->tokenizer_path : m->path;
    if (n > V)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: the tokenizer has %d tokens but the model %s only %d embedding rows: "
                       "a tokenizer for another model?",
                       tp, n, m->path, V);
    /* Released models pad their vocabulary by at most a few percent (e.g. Qwen2.5 151665 ->
     * 151936, DeepSeek-V2 100002 -> 102400); a tokenizer that covers under 3/4 of it is for
     * another model (e.g. a 512-token tokenizer for a 32000-row model). */
    if ((int64_t)n * 4 < (int64_t)V * 3)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: the tokenizer has %d tokens but the model %s has %d embedding rows "
                       "(more than padding): a tokenizer for another model?",
                       tp, n, m->path, V);
    return BL_OK;
}
