/* HF tokenizers' tokenizer.json with a BPE model: byte-level (GPT-2 / Llama-3 / Qwen) or
 * SentencePiece-style ("▁" pieces, byte_fallback). The vocabulary and merges are respelled once
 * into the internal form (raw bytes, plain spaces; see tok_internal.h); merges become a rank table
 * keyed by id pairs. tokenizer_config.json beside the file, if present, supplies bos_token,
 * eos_token, add_bos_token and the chat template (its "chat_template", or chat_template.jinja
 * beside it as newer checkpoints ship it). Every count, id and reference is checked: a malformed file is an
 * error naming it, never a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "tokenizer/tok_internal.h"

typedef struct {
    bl_tokenizer *t;
    const char *path;
    tk_strmap vocab; /* respelled model.vocab keys -> id (merges and unk_token refer to these) */
    tk_buf a, b;
} hf_ctx;

static const cJSON *item(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static bool json_id(const cJSON *v, int32_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d < TK_MAX_VOCAB) || d != (double)(int32_t)d) return false;
    *out = (int32_t)d;
    return true;
}

/* A vocabulary spelling -> internal key in out. False only when out of memory. */
static bool respell(const bl_tokenizer *t, const char *s, size_t len, tk_buf *out) {
    if (t->kind == BL_TOK_SPM) return tk_unmeta(s, len, out);
    if (tk_bytelevel_decode(s, len, out)) return true;
    out->n = 0; /* not in the byte alphabet (a special token kept as text) */
    return tk_buf_put(out, s, len);
}

static bl_status nomem(hf_ctx *c, bl_err *err) {
    return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory loading the tokenizer", c->path);
}

static bl_status load_vocab(hf_ctx *c, const cJSON *model, bl_err *err) {
    bl_tokenizer *t = c->t;
    bool byte_fallback = cJSON_IsTrue(item(model, "byte_fallback"));
    const cJSON *e;
    if (!tk_strmap_init(&c->vocab, (size_t)t->n_vocab)) return nomem(c, err);
    cJSON_ArrayForEach(e, item(model, "vocab")) {
        int32_t id;
        if (!json_id(e, &id)) continue; /* cannot happen: validated while sizing */
        if (!respell(t, e->string, strlen(e->string), &c->a)) return nomem(c, err);
        int32_t old;
        if (!tk_strmap_put(&c->vocab, c->a.p, c->a.n, id, &old)) return nomem(c, err);
        if (old >= 0 || t->type[id]) continue; /* duplicate spelling or id: the first one wins */
        int type = TK_NORMAL;
        if (t->kind == BL_TOK_SPM && byte_fallback && tk_parse_byte_piece(c->a.p, c->a.n) >= 0)
            type = TK_BYTE;
        if (!tk_set_token(t, id, c->a.p, c->a.n, type)) return nomem(c, err);
    }
    const char *unk = cJSON_IsString(item(model, "unk_token")) ? item(model, "unk_token")->valuestring
                                                                : NULL;
    if (unk) {
        if (!respell(t, unk, strlen(unk), &c->a)) return nomem(c, err);
        t->unk = tk_strmap_get(&c->vocab, c->a.p, c->a.n);
        if (t->unk >= 0) t->type[t->unk] = TK_UNKNOWN;
    }
    return BL_OK;
}

static bl_status load_added(hf_ctx *c, const cJSON *root, bl_err *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, item(root, "added_tokens")) {
        int32_t id;
        const cJSON *content = item(e, "content");
        if (!json_id(item(e, "id"), &id)) continue; /* cannot happen: validated while sizing */
        if (!cJSON_IsString(content))
            return bl_fail(err, BL_ERR_FORMAT, "%s: added token %d has no content", c->path,
                           (int)id);
        if (!tk_add_added(c->t, id, content->valuestring, strlen(content->valuestring),
                          cJSON_IsTrue(item(e, "special")), cJSON_IsTrue(item(e, "lstrip")),
                          cJSON_IsTrue(item(e, "rstrip")), cJSON_IsTrue(item(e, "single_word"))))
            return nomem(c, err);
    }
    return BL_OK;
}

static bl_status load_merges(hf_ctx *c, const cJSON *merges, bl_err *err) {
    bl_tokenizer *t = c->t;
    int n = cJSON_GetArraySize(merges);
    if (!tk_pairmap_init(&t->merges, (size_t)n)) return nomem(c, err);
    int32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if (cJSON_IsString(e)) { /* "left right" */
            const char *s = e->valuestring, *sp = *s ? strchr(s + 1, ' ') : NULL;
            if (sp) l = s, ll = (size_t)(sp - s), r = sp + 1, rl = strlen(sp + 1);
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) { /* ["left", "right"] */
            l = e->child->valuestring, ll = strlen(l);
            r = e->child->next->valuestring, rl = strlen(r);
        }
        if (!l)
            return bl_fail(err, BL_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [a, b]",
                           c->path, (int)rank);
        if (!respell(t, l, ll, &c->a) || !respell(t, r, rl, &c->b)) return nomem(c, err);
        int32_t ia = tk_strmap_get(&c->vocab, c->a.p, c->a.n);
        int32_t ib = tk_strmap_get(&c->vocab, c->b.p, c->b.n);
        if (!tk_buf_put(&c->a, c->b.p, c->b.n)) return nomem(c, err);
        int32_t iab = tk_strmap_get(&c->vocab, c->a.p, c->a.n);
        if (ia < 0 || ib < 0 || iab < 0)
            return bl_fail(err, BL_ERR_FORMAT, "%s: merge %d (%.*s | %.*s) uses a token not in "
                           "the vocabulary", c->path, (int)rank, (int)(ll > 40 ? 40 : ll), l,
                           (int)(rl > 40 ? 40 : rl), r);
        if (!tk_pairmap_put(&t->merges, ia, ib, rank, iab)) return nomem(c, err);
        rank++;
    }
    return BL_OK;
}

/* "chat_template": a string, or a list of {"name", "template"} from which "default" (else the
 * first) is taken. */
static const char *config_chat_template(const cJSON *cfg) {
    const cJSON *v = item(cfg, "chat_template"), *e, *first = NULL;
    if (cJSON_IsString(v)) return v->valuestring;
    if (!cJSON_IsArray(v)) return NULL;
    cJSON_ArrayForEach(e, v) {
        const cJSON *name = item(e, "name"), *tmpl = item(e, "template");
        if (!cJSON_IsString(tmpl)) continue;
        if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0)
            return tmpl->valuestring;
        if (!first) first = tmpl;
    }
    return first ? first->valuestring : NULL;
}

/* bos_token / eos_token of tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token(const bl_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = item(cfg, key);
    if (cJSON_IsObject(v)) v = item(v, "content");
    if (!cJSON_IsString(v)) return -1;
    return tk_find_token(t, v->valuestring, strlen(v->valuestring));
}

/* tokenizer_config.json (optional: cfg NULL) supplies bos_token, eos_token, add_bos_token. */
static bl_status load_config(hf_ctx *c, const char *cfg_path, const char *cfg, size_t cfg_len,
                             const cJSON *root, bl_err *err) {
    bl_tokenizer *t = c->t;
    t->bos = tk_hf_template_bos(root, t->n_vocab);
    t->add_bos = t->bos >= 0;
    if (!cfg) return BL_OK;
    cJSON *o = bl_json_parse(cfg, cfg_len, NULL);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return bl_fail(err, BL_ERR_FORMAT, "%s: not a JSON object", cfg_path);
    }
    int32_t bos = config_token(t, o, "bos_token"), eos = config_token(t, o, "eos_token");
    if (bos >= 0) t->bos = bos;
    if (eos >= 0) t->eos = eos;
    const cJSON *ab = item(o, "add_bos_token");
    bool bad = ab && !cJSON_IsNull(ab) && !cJSON_IsBool(ab);
    if (cJSON_IsBool(ab)) t->add_bos = cJSON_IsTrue(ab);
    const char *tmpl = config_chat_template(o);
    bool ok = !tmpl || tk_set_chat_template(t, tmpl, strlen(tmpl));
    cJSON_Delete(o);
    if (bad)
        return bl_fail(err, BL_ERR_FORMAT, "%s: \"add_bos_token\" must be true or false",
                       cfg_path);
    return ok ? BL_OK : nomem(c, err);
}

/* chat_template.jinja beside tokenizer_config.json replaces its "chat_template" (transformers
 * writes the template there since 4.43). */
static bl_status load_template_file(bl_tokenizer *t, const char *cfg_path, bl_err *err) {
    const char *slash = strrchr(cfg_path, '/');
    size_t dl = slash ? (size_t)(slash - cfg_path + 1) : 0;
    char *path = bl_malloc(dl + 32);
    if (!path) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", cfg_path);
    snprintf(path, dl + 32, "%.*schat_template.jinja", (int)dl, cfg_path);
    struct stat sb;
    bl_status st = BL_OK;
    char *data = NULL;
    size_t len = 0;
    if (stat(path, &sb) == 0 && !(st = bl_read_file(path, &data, &len, err)) &&
        !tk_set_chat_template(t, data, len))
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    free(data);
    free(path);
    return st;
}

/* Checks ids and returns the vocabulary size (largest id + 1) in *n. */
static bl_status size_vocab(const char *path, const cJSON *root, const cJSON *model, int32_t *n,
                            bl_err *err) {
    const cJSON *vocab = item(model, "vocab"), *added = item(root, "added_tokens"), *e;
    if (!cJSON_IsObject(vocab))
        return bl_fail(err, BL_ERR_FORMAT, "%s: model has no \"vocab\" object", path);
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return bl_fail(err, BL_ERR_FORMAT, "%s: \"added_tokens\" is not an array", path);
    int32_t max = -1, id;
    cJSON_ArrayForEach(e, vocab) {
        if (!json_id(e, &id))
            return bl_fail(err, BL_ERR_FORMAT, "%s: vocab entry \"%.40s\" has an id that is not "
                           "an integer in [0, %d)", path, e->string, TK_MAX_VOCAB);
        if (id > max) max = id;
    }
    cJSON_ArrayForEach(e, added) {
        if (!json_id(item(e, "id"), &id))
            return bl_fail(err, BL_ERR_FORMAT, "%s: an added token has an id that is not an "
                           "integer in [0, %d)", path, TK_MAX_VOCAB);
        if (id > max) max = id;
    }
    if (max < 0) return bl_fail(err, BL_ERR_FORMAT, "%s: empty vocabulary", path);
    *n = max + 1;
    return BL_OK;
}

/* Member names whose values have one type wherever they appear in tokenizer.json (the readers
 * below look them up leniently; a wrong type must not quietly become the default). */
static const char *const bool_keys[] = {
    "byte_fallback", "fuse_unk", "ignore_merges", "special", "lstrip", "rstrip", "single_word",
    "normalized", "add_prefix_space", "trim_offsets", "use_regex", "invert", "split",
    "individual_digits", "add_bos_token", "add_eos_token",
};
static const char *const string_keys[] = {
    "type", "content", "unk_token", "prepend", "replacement", "prepend_scheme", "behavior",
    "continuing_subword_prefix", "end_of_word_suffix", "String", "Regex",
};

static bool in_list(const char *k, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, list[i]) == 0) return true;
    return false;
}

/* Walks the tree (not the vocabulary, the merges or the keys of special_tokens, whose member
 * names are token spellings) checking the members named above; where is the path so far. */
static bl_status check_types(const char *path, const cJSON *node, char *where, size_t len,
                             size_t cap, bl_err *err) {
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, node) {
        size_t n = len;
        if (cJSON_IsObject(node) && e->string)
            n += (size_t)snprintf(where + len, cap - len, "%s%s", len ? "." : "", e->string);
        else
            n += (size_t)snprintf(where + len, cap - len, "[%d]", i);
        if (n >= cap) n = cap - 1;
        i++;
        const char *k = cJSON_IsObject(node) && e->string ? e->string : "";
        if (!cJSON_IsNull(e) && in_list(k, bool_keys, sizeof bool_keys / sizeof *bool_keys) &&
            !cJSON_IsBool(e))
            return bl_fail(err, BL_ERR_FORMAT, "%s: \"%s\" must be true or false", path, where);
        if (!cJSON_IsNull(e) && in_list(k, string_keys, sizeof string_keys / sizeof *string_keys) &&
            !cJSON_IsString(e))
            return bl_fail(err, BL_ERR_FORMAT, "%s: \"%s\" must be a string", path, where);
        if (strcmp(k, "vocab") == 0 || strcmp(k, "merges") == 0) continue;
        if (strcmp(k, "special_tokens") == 0 && cJSON_IsObject(e)) {
            const cJSON *st;
            cJSON_ArrayForEach(st, e) {
                bl_status s = check_types(path, st, where, n, cap, err);
                if (s) return s;
            }
            continue;
        }
        if (cJSON_IsObject(e) || cJSON_IsArray(e)) {
            bl_status s = check_types(path, e, where, n, cap, err);
            if (s) return s;
        }
        where[len] = 0;
    }
    return BL_OK;
}

static bl_status load_json(const char *path, const char *cfg_path, const char *cfg,
                           size_t cfg_len, const cJSON *root, bl_tokenizer **out, bl_err *err) {
    const cJSON *model = item(root, "model");
    if (!cJSON_IsObject(model))
        return bl_fail(err, BL_ERR_FORMAT, "%s: no \"model\" object", path);
    char where[256] = "";
    bl_status st = check_types(path, root, where, 0, sizeof where, err);
    if (st) return st;
    /* BPE dropout skips merges at random when encoding: not a deterministic tokenizer */
    const cJSON *dropout = item(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: model.dropout must be null or 0", path);
    const char *type = cJSON_IsString(item(model, "type")) ? item(model, "type")->valuestring
                                                           : "BPE";
    if (strcmp(type, "BPE") != 0)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: model type \"%.40s\" is not supported (BPE "
                       "only)", path, type);
    const cJSON *merges = item(model, "merges");
    if (!cJSON_IsArray(merges))
        return bl_fail(err, BL_ERR_FORMAT, "%s: BPE model has no \"merges\" array", path);
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = item(model, affix[i]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: %s is not supported", path, affix[i]);
    }
    bl_tok_kind kind;
    if (tk_hf_is_bytelevel(root)) kind = BL_TOK_BYTE_BPE;
    else if (tk_hf_is_spm(root)) kind = BL_TOK_SPM;
    else
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: BPE model is neither byte-level nor "
                       "SentencePiece-style", path);
    int32_t n = 0;
    st = size_vocab(path, root, model, &n, err);
    if (st) return st;
    hf_ctx c = {.path = path};
    if (!(c.t = tk_new(kind, n, path, err))) return err ? err->code : BL_ERR_NOMEM;
    c.t->use_ranks = true;
    c.t->ignore_merges = cJSON_IsTrue(item(model, "ignore_merges"));
    if ((st = load_vocab(&c, model, err)) || (st = load_added(&c, root, err)) ||
        (st = tk_hf_pipeline(c.t, root, err)) || (st = tk_finish(c.t, err)) ||
        (st = load_merges(&c, merges, err)) ||
        (st = load_config(&c, cfg_path, cfg, cfg_len, root, err))) {
        bl_tokenizer_free(c.t);
        c.t = NULL;
    }
    tk_strmap_free(&c.vocab);
    tk_buf_free(&c.a);
    tk_buf_free(&c.b);
    *out = c.t;
    return st;
}

/* The tokenizer.json object; NULL with err set when the text is not one. */
static cJSON *parse_root(const char *path, const char *json, size_t len, bl_err *err) {
    size_t at = 0;
    cJSON *root = bl_json_parse(json, len, &at);
    if (cJSON_IsObject(root)) return root;
    char what[96];
    bl_describe_content((const uint8_t *)json, len, len, what, sizeof what);
    if (root)
        bl_fail(err, BL_ERR_FORMAT, "%s: not a tokenizer.json: not a JSON object (%s)", path, what);
    else
        bl_fail(err, BL_ERR_FORMAT, "%s: not a tokenizer.json: invalid JSON (%s at byte %zu; %s)",
                path, bl_json_refusal(json, len, at), at, what);
    cJSON_Delete(root);
    return NULL;
}

bl_status bl_tokenizer_from_hf_json(const char *path, const char *json, size_t len,
                                    const char *cfg, size_t cfg_len, bl_tokenizer **out,
                                    bl_err *err) {
    *out = NULL;
    cJSON *root = parse_root(path, json, len, err);
    if (!root) return err ? err->code : BL_ERR_FORMAT;
    bl_status st = load_json(path, "tokenizer_config.json", cfg, cfg_len, root, out, err);
    cJSON_Delete(root);
    return st;
}

bl_status bl_tokenizer_load_hf(const char *path, bl_tokenizer **out, bl_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return bl_fail(err, BL_ERR_IO, "%s: no such file or directory", path);
    size_t plen = strlen(path);
    char *json = bl_malloc(plen + 32), *cfg = bl_malloc(plen + 32);
    if (!json || !cfg) {
        free(json);
        free(cfg);
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(json, plen + 32, "%s/tokenizer.json", path);
        snprintf(cfg, plen + 32, "%s/tokenizer_config.json", path);
    } else {
        const char *slash = strrchr(path, '/');
        snprintf(json, plen + 32, "%s", path);
        snprintf(cfg, plen + 32, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0,
                 path);
    }
    char *data = NULL, *cdata = NULL;
    size_t len = 0, clen = 0;
    bl_status st = bl_read_file(json, &data, &len, err);
    if (!st && stat(cfg, &sb) == 0) st = bl_read_file(cfg, &cdata, &clen, err); /* optional */
    cJSON *root = st ? NULL : parse_root(json, data, len, err);
    if (!st && !root) st = err ? err->code : BL_ERR_FORMAT;
    free(data); /* cJSON holds copies; release the text before building the tables */
    if (root) st = load_json(json, cfg, cdata, clen, root, out, err);
    if (root && !st && (st = load_template_file(*out, cfg, err))) {
        bl_tokenizer_free(*out);
        *out = NULL;
    }
    cJSON_Delete(root);
    free(cdata);
    free(json);
    free(cfg);
    return st;
}
