/* Tokenizer from GGUF metadata (tokenizer.ggml.*): "llama" (SentencePiece pieces with scores and
 * token types) and "gpt2" (byte-level pieces with a merge list; tokenizer.ggml.pre names the
 * pre-tokenizer regex). Only the parsed key/value array of bl_gguf is read, through the small
 * accessors below, so any bl_gguf whose kv entries are filled in works. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static const bl_gguf_kv *kv_find(const bl_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

static bool kv_int(const bl_gguf *g, const char *key, int64_t *out) {
    const bl_gguf_kv *kv = kv_find(g, key);
    if (!kv) return false;
    switch (kv->type) {
    case BL_GGUF_U8: case BL_GGUF_U16: case BL_GGUF_U32: case BL_GGUF_U64: case BL_GGUF_BOOL:
        *out = kv->v.u64 > INT64_MAX ? INT64_MAX : (int64_t)kv->v.u64;
        return true;
    case BL_GGUF_I8: case BL_GGUF_I16: case BL_GGUF_I32: case BL_GGUF_I64:
        *out = kv->v.i64;
        return true;
    default:
        return false;
    }
}

static bool kv_bool(const bl_gguf *g, const char *key, bool dflt) {
    int64_t v;
    return kv_int(g, key, &v) ? v != 0 : dflt;
}

static bool kv_str(const bl_gguf *g, const char *key, bl_str *out) {
    const bl_gguf_kv *kv = kv_find(g, key);
    if (!kv || kv->type != BL_GGUF_STRING) return false;
    *out = kv->v.str;
    return true;
}

static bool str_is(bl_str s, const char *lit) {
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* Element i of a numeric array, as a double (little-endian, maybe unaligned). */
static double arr_num(const bl_gguf_kv *kv, uint64_t i) {
    bl_gguf_type t = kv->v.arr.type;
    size_t es = bl_gguf_type_size(t);
    uint64_t u = 0;
    for (size_t b = 0; b < es; b++) u |= (uint64_t)kv->v.arr.data[i * es + b] << (8 * b);
    switch (t) {
    case BL_GGUF_I8: return (int8_t)u;
    case BL_GGUF_I16: return (int16_t)u;
    case BL_GGUF_I32: return (int32_t)u;
    case BL_GGUF_I64: return (double)(int64_t)u;
    case BL_GGUF_F32: {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        return f;
    }
    case BL_GGUF_F64: {
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    default: return (double)u;
    }
}

/* A numeric array of exactly n elements, or NULL (absent); *bad set if present but unusable. */
static const bl_gguf_kv *num_array(const bl_gguf *g, const char *key, uint64_t n, bool *bad) {
    const bl_gguf_kv *kv = kv_find(g, key);
    if (!kv) return NULL;
    if (kv->type != BL_GGUF_ARRAY || bl_gguf_type_size(kv->v.arr.type) == 0 || kv->v.arr.n != n ||
        (n && !kv->v.arr.data)) {
        *bad = true;
        return NULL;
    }
    return kv;
}

static int32_t id_or_none(const bl_gguf *g, const char *key, int32_t n) {
    int64_t v;
    return kv_int(g, key, &v) && v >= 0 && v < n ? (int32_t)v : -1;
}

/* The optional tokenizer.ggml.* values must have their type when present (a wrong one would
 * quietly become the default), and the special ids must name tokens. */
static bl_status check_optional(const bl_gguf *g, const char *path, int32_t n, bl_err *err) {
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.unknown_token_id"};
    static const char *const flags[] = {"tokenizer.ggml.add_space_prefix",
                                        "tokenizer.ggml.add_bos_token"};
    int64_t v;
    for (int i = 0; i < 3; i++) {
        if (!kv_find(g, ids[i])) continue;
        if (!kv_int(g, ids[i], &v))
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s must be an integer", path, ids[i]);
        if (v < 0 || v >= n)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %lld is not a token id (%d tokens)",
                           path, ids[i], (long long)v, (int)n);
    }
    for (int i = 0; i < 2; i++)
        if (kv_find(g, flags[i]) && !kv_int(g, flags[i], &v))
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s must be a boolean", path, flags[i]);
    bl_str s;
    if (kv_find(g, "tokenizer.ggml.pre") && !kv_str(g, "tokenizer.ggml.pre", &s))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tokenizer.ggml.pre must be a string", path);
    const bl_gguf_kv *types = kv_find(g, "tokenizer.ggml.token_type");
    if (types && types->type == BL_GGUF_ARRAY &&
        (types->v.arr.type == BL_GGUF_F32 || types->v.arr.type == BL_GGUF_F64))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tokenizer.ggml.token_type must hold integers",
                       path);
    return BL_OK;
}

/* Merge list entries "left right" -> rank table. */
static bl_status load_merges(bl_tokenizer *t, const bl_gguf_kv *kv, bl_err *err) {
    tk_buf a = {0}, b = {0};
    bl_status st = BL_OK;
    uint64_t n = kv->v.arr.n;
    if (n > INT32_MAX || !tk_pairmap_init(&t->merges, (size_t)n)) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory for %llu merges", t->path,
                     (unsigned long long)n);
        goto done;
    }
    for (uint64_t r = 0; r < n; r++) {
        bl_str m = kv->v.arr.strs[r];
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: merge %llu is not \"left right\"", t->path,
                         (unsigned long long)r);
            goto done;
        }
        size_t la = (size_t)(sp - m.ptr);
        if (!tk_bytelevel_decode(m.ptr, la, &a) ||
            !tk_bytelevel_decode(sp + 1, m.len - la - 1, &b)) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: merge %llu is not in the byte-level alphabet",
                         t->path, (unsigned long long)r);
            goto done;
        }
        int32_t ia = tk_strmap_get(&t->pieces, a.p, a.n), ib = tk_strmap_get(&t->pieces, b.p, b.n);
        if (!tk_buf_put(&a, b.p, b.n)) goto nomem;
        int32_t iab = tk_strmap_get(&t->pieces, a.p, a.n);
        if (ia < 0 || ib < 0 || iab < 0) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: merge %llu (%.*s) uses a token not in the "
                         "vocabulary", t->path, (unsigned long long)r, (int)(m.len > 64 ? 64 : m.len),
                         m.ptr);
            goto done;
        }
        if (!tk_pairmap_put(&t->merges, ia, ib, (int32_t)r, iab)) goto nomem;
    }
    goto done;
nomem:
    st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory for merges", t->path);
done:
    tk_buf_free(&a);
    tk_buf_free(&b);
    return st;
}

/* tokenizer.ggml.pre -> pre-tokenizer, as llama.cpp maps the names we know. */
static bl_status set_pre(bl_tokenizer *t, const bl_gguf *g, bl_err *err) {
    bl_str pre = {"default", 7};
    kv_str(g, "tokenizer.ggml.pre", &pre);
    const char *re = tk_re_gpt2;
    if (str_is(pre, "llama-bpe") || str_is(pre, "llama3") || str_is(pre, "llama-v3")) {
        re = tk_re_llama3;
        t->ignore_merges = true;
        t->add_bos = true;
    } else if (str_is(pre, "qwen2")) {
        re = tk_re_qwen2;
        t->nfc = true;
    }
    t->n_pre = 1;
    t->pre[0].behavior = TK_SPLIT_ISOLATED;
    return tk_compile_regex(t, re, strlen(re), false, &t->pre[0].re, err);
}

bl_status bl_tokenizer_load_gguf(const bl_gguf *g, bl_tokenizer **out, bl_err *err) {
    *out = NULL;
    const char *path = g->path ? g->path : "<gguf>";
    bl_str model;
    if (!kv_str(g, "tokenizer.ggml.model", &model))
        return bl_fail(err, BL_ERR_FORMAT, "%s: no tokenizer.ggml.model", path);
    bool spm = str_is(model, "llama"), gpt2 = str_is(model, "gpt2");
    if (!spm && !gpt2)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: tokenizer model \"%.*s\" is not supported "
                       "(llama, gpt2)", path, (int)(model.len > 32 ? 32 : model.len), model.ptr);
    const bl_gguf_kv *toks = kv_find(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != BL_GGUF_ARRAY || toks->v.arr.type != BL_GGUF_STRING ||
        !toks->v.arr.strs || toks->v.arr.n == 0 || toks->v.arr.n > TK_MAX_VOCAB)
        return bl_fail(err, BL_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or malformed", path);
    int32_t n = (int32_t)toks->v.arr.n;
    bool bad = false;
    const bl_gguf_kv *scores = num_array(g, "tokenizer.ggml.scores", (uint64_t)n, &bad);
    const bl_gguf_kv *types = num_array(g, "tokenizer.ggml.token_type", (uint64_t)n, &bad);
    if (bad)
        return bl_fail(err, BL_ERR_FORMAT, "%s: tokenizer scores or token types do not match "
                       "the %d tokens", path, (int)n);
    bl_status st = check_optional(g, path, n, err);
    if (st) return st;
    const bl_gguf_kv *merges = kv_find(g, "tokenizer.ggml.merges");
    if (gpt2 && (!merges || merges->type != BL_GGUF_ARRAY ||
                 merges->v.arr.type != BL_GGUF_STRING || (merges->v.arr.n && !merges->v.arr.strs)))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tokenizer.ggml.merges missing or malformed", path);

    bl_tokenizer *t = tk_new(spm ? BL_TOK_SPM : BL_TOK_BYTE_BPE, n, path, err);
    if (!t) return err ? err->code : BL_ERR_NOMEM;
    tk_buf key = {0};
    if (spm && !(t->score = bl_calloc((size_t)n, sizeof *t->score))) goto nomem;
    for (int32_t id = 0; id < n; id++) {
        bl_str s = toks->v.arr.strs[id];
        if (s.len > UINT32_MAX || (s.len && !s.ptr)) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: token %d is malformed", path, (int)id);
            goto fail;
        }
        /* integer elements (checked above): exact in a double */
        double ty = types ? arr_num(types, (uint64_t)id) : TK_NORMAL;
        if (ty < 0 || ty > TK_BYTE) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s: token %d has token type %.0f (0..6)", path,
                         (int)id, ty);
            goto fail;
        }
        int type = ty < TK_NORMAL ? TK_NORMAL : (int)ty; /* 0: undefined, taken as normal */
        if (spm) {
            if (!tk_unmeta(s.ptr, s.len, &key)) goto nomem;
            if (!types && tk_parse_byte_piece(key.p, key.n) >= 0) type = TK_BYTE;
            double sc = scores ? arr_num(scores, (uint64_t)id) : 0.0;
            if (!isfinite(sc)) {
                st = bl_fail(err, BL_ERR_FORMAT, "%s: token %d has a non-finite score", path,
                             (int)id);
                goto fail;
            }
            t->score[id] = (float)sc;
        } else if (type == TK_CONTROL || type == TK_USER ||
                   !tk_bytelevel_decode(s.ptr, s.len, &key)) {
            /* special tokens are stored as their text, not in the byte alphabet */
            key.n = 0;
            if (!tk_buf_put(&key, s.ptr, s.len)) goto nomem;
            if ((type == TK_CONTROL || type == TK_USER) &&
                !tk_add_added(t, id, s.ptr, s.len, type == TK_CONTROL, false, false, false))
                goto nomem;
        }
        if (!tk_set_token(t, id, key.p, key.n, type)) goto nomem;
        if (type == TK_UNKNOWN && t->unk < 0) t->unk = id;
    }
    t->bos = id_or_none(g, "tokenizer.ggml.bos_token_id", n);
    t->eos = id_or_none(g, "tokenizer.ggml.eos_token_id", n);
    int32_t unk = id_or_none(g, "tokenizer.ggml.unknown_token_id", n);
    if (unk >= 0) t->unk = unk;
    if (spm) {
        t->add_bos = true;
        t->prefix = kv_bool(g, "tokenizer.ggml.add_space_prefix", true) ? TK_PREFIX_EVERY
                                                                        : TK_PREFIX_NONE;
    } else {
        t->use_ranks = true;
        if ((st = set_pre(t, g, err))) goto fail;
    }
    t->add_bos = kv_bool(g, "tokenizer.ggml.add_bos_token", t->add_bos);
    bl_str tmpl;
    if (kv_str(g, "tokenizer.chat_template", &tmpl) && !tk_set_chat_template(t, tmpl.ptr, tmpl.len))
        goto nomem;
    if ((st = tk_finish(t, err))) goto fail;
    if (gpt2 && (st = load_merges(t, merges, err))) goto fail;
    tk_buf_free(&key);
    *out = t;
    return BL_OK;
nomem:
    st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory loading the tokenizer", path);
fail:
    tk_buf_free(&key);
    bl_tokenizer_free(t);
    return st;
}
