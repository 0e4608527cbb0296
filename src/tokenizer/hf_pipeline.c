/* The parts of an HF tokenizer.json around the BPE model: which kind of tokenizer it is, its
 * normalizer and pre-tokenizer (turned into tokenizer settings), and the BOS of its
 * post-processor template. Components we do not implement are refused with BL_ERR_UNSUPPORTED
 * rather than ignored, since ignoring one would silently change the ids. */
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizer/tok_internal.h"

#define META "\xE2\x96\x81" /* "▁" */

static bool type_is(const cJSON *node, const char *type) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(node, "type");
    return cJSON_IsString(ty) && strcmp(ty->valuestring, type) == 0;
}

static bool flag(const cJSON *node, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static const char *str_of(const cJSON *node, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The component itself, or the members of a Sequence (under list_key), one level deep. */
static int members(const cJSON *node, const char *list_key, const cJSON **out, int cap) {
    if (!cJSON_IsObject(node)) return 0;
    if (!type_is(node, "Sequence")) {
        out[0] = node;
        return 1;
    }
    int n = 0;
    const cJSON *it;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(node, list_key);
    cJSON_ArrayForEach(it, list) {
        if (n == cap) return -1;
        out[n++] = it;
    }
    return n;
}

static bool any_member(const cJSON *node, const char *list_key, const char *type) {
    const cJSON *m[16];
    int n = members(node, list_key, m, 16);
    for (int i = 0; i < n; i++)
        if (type_is(m[i], type)) return true;
    return false;
}

bool tk_hf_is_bytelevel(const struct cJSON *root) {
    return any_member(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers",
                      "ByteLevel") ||
           any_member(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoders", "ByteLevel");
}

bool tk_hf_is_spm(const struct cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    return flag(model, "byte_fallback", false) ||
           any_member(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers",
                      "Metaspace") ||
           any_member(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers",
                      "Prepend");
}

static bl_status unsupported(const bl_tokenizer *t, const char *what, const cJSON *node,
                             bl_err *err) {
    const char *ty = str_of(node, "type");
    return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: %s \"%s\" is not supported", t->path, what,
                   ty ? ty : "?");
}

static bl_status add_step(bl_tokenizer *t, const char *re, size_t len, bool literal,
                          tk_split_behavior behavior, bool invert, bool prefix, bl_err *err) {
    if (t->n_pre == TK_MAX_PRE)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizers", t->path,
                       TK_MAX_PRE);
    tk_pre_step *s = &t->pre[t->n_pre];
    memset(s, 0, sizeof *s);
    s->behavior = behavior;
    s->invert = invert;
    s->prefix_space = prefix;
    if (re) {
        bl_status st = tk_compile_regex(t, re, len, literal, &s->re, err);
        if (st) return st;
    }
    t->n_pre++;
    return BL_OK;
}

static bool behavior_of(const char *s, tk_split_behavior *out) {
    static const struct { const char *name; tk_split_behavior b; } tab[] = {
        {"Isolated", TK_SPLIT_ISOLATED}, {"Removed", TK_SPLIT_REMOVED},
        {"MergedWithPrevious", TK_SPLIT_MERGED_PREV}, {"MergedWithNext", TK_SPLIT_MERGED_NEXT},
        {"Contiguous", TK_SPLIT_CONTIGUOUS},
    };
    for (size_t i = 0; s && i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) {
            *out = tab[i].b;
            return true;
        }
    return false;
}

static bl_status bytelevel_pipeline(bl_tokenizer *t, const cJSON *root, bl_err *err) {
    const cJSON *m[16];
    int n = members(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers", m, 16);
    for (int i = 0; i < n; i++) {
        if (type_is(m[i], "NFC")) t->nfc = true;
        else return unsupported(t, "normalizer", m[i], err);
    }
    n = members(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers", m, 16);
    if (n < 0)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: too many pre-tokenizers", t->path);
    for (int i = 0; i < n; i++) {
        bl_status st;
        if (type_is(m[i], "Split")) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(m[i], "pattern");
            const char *re = str_of(pat, "Regex"), *lit = str_of(pat, "String");
            tk_split_behavior b;
            if ((!re && !lit) || !behavior_of(str_of(m[i], "behavior"), &b))
                return bl_fail(err, BL_ERR_FORMAT, "%s: Split pre-tokenizer without a pattern "
                               "or with an unknown behavior", t->path);
            const char *p = re ? re : lit;
            st = add_step(t, p, strlen(p), !re, b, flag(m[i], "invert", false), false, err);
        } else if (type_is(m[i], "ByteLevel")) {
            bool use_regex = flag(m[i], "use_regex", true);
            st = add_step(t, use_regex ? tk_re_gpt2 : NULL, use_regex ? strlen(tk_re_gpt2) : 0,
                          false, TK_SPLIT_ISOLATED, false, flag(m[i], "add_prefix_space", false),
                          err);
        } else if (type_is(m[i], "Digits")) {
            bool each = flag(m[i], "individual_digits", false);
            st = add_step(t, "\\p{N}", 5, false, each ? TK_SPLIT_ISOLATED : TK_SPLIT_CONTIGUOUS,
                          false, false, err);
        } else {
            return unsupported(t, "pre-tokenizer", m[i], err);
        }
        if (st) return st;
    }
    return BL_OK;
}

static bl_status spm_pipeline(bl_tokenizer *t, const cJSON *root, bl_err *err) {
    const cJSON *m[16];
    int n = members(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers", m, 16);
    for (int i = 0; i < n; i++) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(m[i], "pattern");
        const char *lit = str_of(pat, "String"), *content = str_of(m[i], "content");
        const char *pre = str_of(m[i], "prepend");
        if (type_is(m[i], "Prepend") && pre && strcmp(pre, META) == 0) {
            t->prefix = TK_PREFIX_EVERY;
        } else if (type_is(m[i], "Replace") && lit && content && strcmp(lit, " ") == 0 &&
                   strcmp(content, META) == 0) {
            /* spaces already are the canonical spelling of "▁" here */
        } else {
            return unsupported(t, "normalizer", m[i], err);
        }
    }
    n = members(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers", m, 16);
    for (int i = 0; i < n; i++) {
        const char *rep = str_of(m[i], "replacement");
        if (!type_is(m[i], "Metaspace") || (rep && strcmp(rep, META) != 0))
            return unsupported(t, "pre-tokenizer", m[i], err);
        const char *scheme = str_of(m[i], "prepend_scheme");
        if (scheme && strcmp(scheme, "first") == 0) t->prefix = TK_PREFIX_FIRST_IF_MISSING;
        else if (scheme && strcmp(scheme, "never") == 0) t->prefix = TK_PREFIX_NONE;
        else if (scheme || flag(m[i], "add_prefix_space", true))
            t->prefix = TK_PREFIX_EVERY_IF_MISSING;
        t->split_on_space = flag(m[i], "split", true);
    }
    return BL_OK;
}

bl_status tk_hf_pipeline(bl_tokenizer *t, const struct cJSON *root, bl_err *err) {
    return t->kind == BL_TOK_SPM ? spm_pipeline(t, root, err) : bytelevel_pipeline(t, root, err);
}

/* Id of the special token a TemplateProcessing "single" template starts with (the BOS it adds),
 * looking inside a Sequence post-processor; -1 if none. */
int32_t tk_hf_template_bos(const struct cJSON *root, int32_t n_vocab) {
    const cJSON *m[16];
    int n = members(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "processors", m, 16);
    for (int i = 0; i < n; i++) {
        if (!type_is(m[i], "TemplateProcessing")) continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(m[i], "single");
        const cJSON *first = cJSON_IsArray(single) ? single->child : NULL;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        const char *name = str_of(sp, "id");
        if (!name) return -1;
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(m[i], "special_tokens");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(specials, name), "ids");
        const cJSON *id0 = cJSON_IsArray(ids) ? ids->child : NULL;
        if (!cJSON_IsNumber(id0) || id0->valuedouble < 0 || id0->valuedouble >= n_vocab) return -1;
        return (int32_t)id0->valuedouble;
    }
    return -1;
}
