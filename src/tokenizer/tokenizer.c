/* The tokenizer object: construction helpers shared by the loaders, the public accessors, decoding,
 * and encoding's first step, which splits added tokens (and, on request, the control tokens of a
 * SentencePiece vocabulary, or tokens the caller names by id) out of the text before the model's
 * own algorithm (SentencePiece or byte-level BPE) sees the pieces between them. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

const char *const tk_re_gpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const tk_re_llama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const tk_re_qwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bl_tokenizer *tk_new(bl_tok_kind kind, int32_t n_vocab, const char *path, bl_err *err) {
    if (n_vocab <= 0 || n_vocab > TK_MAX_VOCAB) {
        bl_fail(err, BL_ERR_FORMAT, "%s: vocabulary size %d out of range", path, (int)n_vocab);
        return NULL;
    }
    bl_tokenizer *t = bl_calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->unk = -1;
    t->path = bl_strdup(path);
    t->type = bl_calloc((size_t)n_vocab, 1);
    t->key_off = bl_calloc((size_t)n_vocab, sizeof *t->key_off);
    t->key_len = bl_calloc((size_t)n_vocab, sizeof *t->key_len);
    t->dec_off = bl_calloc((size_t)n_vocab, sizeof *t->dec_off);
    t->dec_len = bl_calloc((size_t)n_vocab, sizeof *t->dec_len);
    /* The arenas always exist, so key/decode lookups never offset a NULL pointer (a vocabulary
     * of empty tokens stores no bytes). */
    if (!t->path || !t->type || !t->key_off || !t->key_len || !t->dec_off || !t->dec_len ||
        !tk_buf_reserve(&t->keys, 1) || !tk_buf_reserve(&t->dec, 1))
        goto nomem;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
nomem:
    bl_tokenizer_free(t);
    bl_fail(err, BL_ERR_NOMEM, "%s: out of memory for a vocabulary of %d", path, (int)n_vocab);
    return NULL;
}

bool tk_set_token(bl_tokenizer *t, int32_t id, const void *key, size_t len, int type) {
    if (len > UINT32_MAX || t->keys.n + len > UINT32_MAX) return false;
    t->key_off[id] = (uint32_t)t->keys.n;
    t->key_len[id] = (uint32_t)len;
    t->type[id] = (uint8_t)type;
    return tk_buf_put(&t->keys, key, len);
}

const char *bl_tokenizer_chat_template(const bl_tokenizer *t) { return t->chat_template; }

bool tk_add_added(bl_tokenizer *t, int32_t id, const char *text, size_t len, bool special,
                  bool lstrip, bool rstrip, bool single_word) {
    if (len == 0 || len > UINT32_MAX) return true; /* an empty token can never match */
    tk_added *p = realloc(t->added, ((size_t)t->n_added + 1) * sizeof *p);
    if (!p) return false;
    t->added = p;
    tk_added *a = &t->added[t->n_added];
    a->text = bl_strndup(text, len);
    if (!a->text) return false;
    a->id = id;
    a->len = (uint32_t)len;
    a->special = special;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single_word;
    t->n_added++;
    if (special) t->type[id] = TK_CONTROL;
    else if (t->type[id] == 0) t->type[id] = TK_USER;
    return true;
}

int tk_parse_byte_piece(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

bool tk_unmeta(const char *s, size_t len, tk_buf *out) {
    out->n = 0;
    if (!tk_buf_reserve(out, len + 1)) return false;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out->p[out->n++] = ' ';
            i += 3;
        } else {
            out->p[out->n++] = s[i++];
        }
    }
    return true;
}

bl_status tk_compile_regex(bl_tokenizer *t, const char *pattern, size_t len, bool literal,
                           pcre2_code **out, bl_err *err) {
    int ec;
    PCRE2_SIZE eo;
    /* PCRE2_LITERAL admits UTF but not UCP */
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return bl_fail(err, BL_ERR_FORMAT, "%s: bad pre-tokenizer regex at offset %zu: %s",
                       t->path, (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    *out = re;
    return BL_OK;
}

static int cmp_added(const void *pa, const void *pb) {
    const tk_added *a = pa, *b = pb;
    uint8_t ca = (uint8_t)a->text[0], cb = (uint8_t)b->text[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Sorts a list of added-style tokens by first byte, longest first, and indexes it by first byte. */
static void index_added(tk_added *list, int n, uint32_t at[257]) {
    if (n) qsort(list, (size_t)n, sizeof *list, cmp_added);
    for (int c = 0, i = 0; c <= 256; c++) {
        while (i < n && (uint8_t)list[i].text[0] < c) i++;
        at[c] = (uint32_t)i;
    }
}

/* The control and user-defined tokens of a SentencePiece vocabulary (not its byte pieces). */
static bool collect_control(bl_tokenizer *t) {
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n += (t->type[id] == TK_CONTROL || t->type[id] == TK_USER) && t->key_len[id] > 0;
    if (n == 0) return true;
    if (!(t->ctl = bl_calloc((size_t)n, sizeof *t->ctl))) return false;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!((t->type[id] == TK_CONTROL || t->type[id] == TK_USER) && t->key_len[id] > 0))
            continue;
        tk_added *a = &t->ctl[t->n_ctl];
        if (!(a->text = bl_strndup(t->keys.p + t->key_off[id], t->key_len[id]))) return false;
        a->id = id;
        a->len = t->key_len[id];
        a->special = true;
        t->n_ctl++;
    }
    index_added(t->ctl, t->n_ctl, t->ctl_at);
    return true;
}

bool tk_set_chat_template(bl_tokenizer *t, const char *text, size_t len) {
    free(t->chat_template);
    t->chat_template = bl_strndup(text, len);
    return t->chat_template != NULL;
}

bl_status tk_finish(bl_tokenizer *t, bl_err *err) {
    if (!tk_strmap_init(&t->pieces, (size_t)t->n_vocab)) goto nomem;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *key = t->keys.p + t->key_off[id];
        uint32_t len = t->key_len[id];
        int ty = t->type[id];
        if (ty == 0) t->type[id] = ty = TK_UNUSED;
        if (t->kind == BL_TOK_SPM && ty == TK_BYTE) {
            int b = tk_parse_byte_piece(key, len);
            if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = id;
        }
        if ((ty == TK_NORMAL || ty == TK_USER) && len > 0 &&
            !tk_strmap_put(&t->pieces, key, len, id, NULL))
            goto nomem;
    }
    if (t->kind == BL_TOK_SPM && !t->use_ranks) {
        if (!tk_pairmap_init(&t->adj, (size_t)t->pieces.n * 2)) goto nomem;
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (t->type[id] != TK_NORMAL && t->type[id] != TK_USER) continue;
            const uint8_t *key = (const uint8_t *)t->keys.p + t->key_off[id];
            uint32_t len = t->key_len[id], prev = 0;
            for (uint32_t i = 0; i < len;) {
                uint32_t cp;
                size_t l = tk_utf8_char(key + i, len - i, &cp);
                if (i > 0 && !tk_pairmap_put(&t->adj, (int32_t)prev, (int32_t)cp, 0, 0))
                    goto nomem;
                prev = cp;
                i += (uint32_t)l;
            }
        }
    }
    if (t->kind == BL_TOK_BYTE_BPE)
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_id[b] = tk_strmap_get(&t->pieces, &c, 1);
        }
    /* what decode emits for each id */
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int ty = t->type[id];
        const char *key = t->keys.p + t->key_off[id];
        size_t len = t->key_len[id];
        char byte;
        if (ty == TK_BYTE && t->kind == BL_TOK_SPM) {
            int b = tk_parse_byte_piece(key, len);
            byte = (char)b;
            key = &byte;
            len = b >= 0;
        } else if (ty == TK_CONTROL || ty == TK_UNKNOWN || ty == TK_UNUSED) {
            len = 0;
        }
        t->dec_off[id] = (uint32_t)t->dec.n;
        t->dec_len[id] = (uint32_t)len;
        if (t->dec.n + len > UINT32_MAX || !tk_buf_put(&t->dec, key, len)) goto nomem;
    }
    bool single_word = false;
    for (int i = 0; i < t->n_added; i++) {
        tk_added *a = &t->added[i];
        single_word |= a->single_word;
        t->dec_off[a->id] = (uint32_t)t->dec.n;
        t->dec_len[a->id] = a->special ? 0 : a->len;
        if (!a->special && (t->dec.n + a->len > UINT32_MAX || !tk_buf_put(&t->dec, a->text, a->len)))
            goto nomem;
    }
    index_added(t->added, t->n_added, t->added_at);
    if (t->kind == BL_TOK_SPM && !collect_control(t)) goto nomem;
    if (single_word) {
        bl_status st = tk_compile_regex(t, "\\w", 2, false, &t->word_re, err);
        if (st) return st;
    }
    return BL_OK;
nomem:
    return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory building the vocabulary", t->path);
}

int32_t tk_find_token(const bl_tokenizer *t, const char *text, size_t len) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].text, text, len) == 0)
            return t->added[i].id;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->key_len[id] == len && memcmp(t->keys.p + t->key_off[id], text, len) == 0)
            return id;
    return -1;
}

void bl_tokenizer_free(bl_tokenizer *t) {
    if (!t) return;
    free(t->path);
    free(t->type);
    free(t->score);
    free(t->key_off);
    free(t->key_len);
    free(t->dec_off);
    free(t->dec_len);
    tk_buf_free(&t->keys);
    tk_buf_free(&t->dec);
    tk_strmap_free(&t->pieces);
    tk_pairmap_free(&t->merges);
    tk_pairmap_free(&t->adj);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].text);
    free(t->added);
    for (int i = 0; i < t->n_ctl; i++) free(t->ctl[i].text);
    free(t->ctl);
    free(t->chat_template);
    pcre2_code_free(t->word_re);
    free(t);
}

bl_tok_kind bl_tokenizer_kind(const bl_tokenizer *t) { return t->kind; }
int bl_tokenizer_vocab_size(const bl_tokenizer *t) { return t->n_vocab; }
int bl_tokenizer_bos(const bl_tokenizer *t) { return t->bos; }
int bl_tokenizer_eos(const bl_tokenizer *t) { return t->eos; }
bool bl_tokenizer_add_bos(const bl_tokenizer *t) { return t->add_bos && t->bos >= 0; }

void bl_tokenizer_set_bos_eos(bl_tokenizer *t, int bos, int eos) {
    if (bos >= 0 && bos < t->n_vocab) t->bos = bos;
    if (eos >= 0 && eos < t->n_vocab) t->eos = eos;
}

size_t bl_tokenizer_piece(const bl_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    size_t n = t->dec_len[id] < cap ? t->dec_len[id] : cap;
    if (n) memcpy(buf, t->dec.p + t->dec_off[id], n);
    return n;
}

bl_status bl_tokenizer_decode(const bl_tokenizer *t, const int32_t *ids, size_t n, char **text,
                              size_t *len, bl_err *err) {
    if (!t || !text || (!ids && n)) return bl_fail(err, BL_ERR_ARG, "tokenizer: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return bl_fail(err, BL_ERR_ARG, "%s: token id %d at position %zu is outside [0, %d)",
                           t->path, (int)ids[i], i, (int)t->n_vocab);
        total += t->dec_len[ids[i]];
    }
    char *raw = bl_malloc(total + 1);
    if (!raw) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory decoding", t->path);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(raw + k, t->dec.p + t->dec_off[ids[i]], t->dec_len[ids[i]]);
        k += t->dec_len[ids[i]];
    }
    char *out = bl_utf8_valid(raw, k, len); /* bytes that form no character become U+FFFD */
    free(raw);
    if (!out) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory decoding", t->path);
    *text = out;
    return BL_OK;
}

/* ---- added-token splitting, as HF tokenizers' AddedVocabulary::find_matches ---- */

/* Longest token of list (indexed by at) spelled at s[pos], or NULL. */
static const tk_added *match_at_pos(const tk_added *list, const uint32_t at[257], const char *s,
                                    size_t n, size_t pos) {
    uint8_t c = (uint8_t)s[pos];
    for (uint32_t k = at[c]; k < at[c + 1]; k++) {
        const tk_added *a = &list[k];
        if (a->len <= n - pos && memcmp(s + pos, a->text, a->len) == 0) return a;
    }
    return NULL;
}

static bool is_word_char(const bl_tokenizer *t, const char *s, size_t n, size_t at) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return false;
    int rc = pcre2_match(t->word_re, (PCRE2_SPTR)s, n, at, PCRE2_ANCHORED, md, NULL);
    pcre2_match_data_free(md);
    return rc > 0;
}

static size_t prev_char(const char *s, size_t pos) {
    size_t p = pos - 1;
    while (p > 0 && pos - p < 4 && ((uint8_t)s[p] & 0xC0) == 0x80) p--;
    return p;
}

/* Start of the run of whitespace that ends at pos. */
static size_t space_run_before(const char *s, size_t pos, size_t floor) {
    while (pos > floor) {
        size_t p = prev_char(s, pos);
        uint32_t cp;
        if (p < floor || !tk_utf8_decode((const uint8_t *)s + p, pos - p, &cp) ||
            !tk_is_space(cp))
            break;
        pos = p;
    }
    return pos;
}

static size_t space_run_after(const char *s, size_t n, size_t pos) {
    while (pos < n) {
        uint32_t cp;
        size_t l = tk_utf8_decode((const uint8_t *)s + pos, n - pos, &cp);
        if (!l || !tk_is_space(cp)) break;
        pos += l;
    }
    return pos;
}

static bl_status encode_segment(const bl_tokenizer *t, const char *s, size_t start, size_t end,
                                tk_merge_ws *ws, tk_buf *scratch, tk_bpe_ctx *bc, tk_ids *out,
                                bl_err *err) {
    if (end <= start) return BL_OK;
    if (t->kind == BL_TOK_SPM)
        return tk_spm_encode(t, s + start, end - start, start == 0, ws, scratch, out, err);
    return tk_bytebpe_encode(t, bc, s + start, end - start, out, err);
}

/* A token the caller fixed by id, spanning text[off, off + len). */
typedef struct {
    size_t off, len;
    int32_t id;
} forced_span;

static bl_status encode_impl(const bl_tokenizer *t, const char *text, size_t len, bool add_bos,
                             const forced_span *forced, size_t n_forced, bool parse_special,
                             int32_t **ids, size_t *n_ids, bl_err *err) {
    tk_ids out = {0};
    tk_merge_ws ws = {0};
    tk_buf scratch = {0};
    tk_bpe_ctx *bc = NULL;
    bl_status st = BL_OK;
    if (t->kind == BL_TOK_BYTE_BPE && !(bc = tk_bpe_ctx_new(t))) goto nomem;
    if (add_bos && t->bos >= 0 && !tk_ids_push(&out, t->bos)) goto nomem;
    size_t done = 0, next_forced = 0; /* text before `done` is encoded */
    const bool scan = t->n_added || n_forced || (parse_special && t->n_ctl);
    for (size_t pos = 0; scan && pos <= len;) {
        if (next_forced < n_forced && forced[next_forced].off == pos) {
            const forced_span *f = &forced[next_forced++];
            st = encode_segment(t, text, done, pos, &ws, &scratch, bc, &out, err);
            if (st) goto done;
            if (!tk_ids_push(&out, f->id)) goto nomem;
            done = pos = pos + f->len;
            continue;
        }
        if (pos == len) break;
        const tk_added *a = match_at_pos(t->added, t->added_at, text, len, pos);
        if (!a && parse_special && t->n_ctl) a = match_at_pos(t->ctl, t->ctl_at, text, len, pos);
        /* a fixed token's text is never searched for other tokens */
        if (a && next_forced < n_forced && pos + a->len > forced[next_forced].off) a = NULL;
        if (!a) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + a->len;
        if (a->single_word &&
            ((start > 0 && is_word_char(t, text, len, prev_char(text, start))) ||
             (stop < len && is_word_char(t, text, len, stop)))) {
            pos = stop; /* not a whole word: the text stays ordinary text */
            continue;
        }
        if (a->lstrip) start = space_run_before(text, start, done);
        if (a->rstrip) {
            stop = space_run_after(text, len, stop);
            if (next_forced < n_forced && stop > forced[next_forced].off)
                stop = forced[next_forced].off;
        }
        st = encode_segment(t, text, done, start, &ws, &scratch, bc, &out, err);
        if (st) goto done;
        if (!tk_ids_push(&out, a->id)) goto nomem;
        done = pos = stop;
    }
    st = encode_segment(t, text, done, len, &ws, &scratch, bc, &out, err);
    goto done;
nomem:
    st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory encoding %zu bytes", t->path, len);
done:
    tk_ws_free(&ws);
    tk_buf_free(&scratch);
    tk_bpe_ctx_free(bc);
    if (st) {
        free(out.p);
        return st;
    }
    if (!out.p && !(out.p = bl_malloc(sizeof *out.p)))
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", t->path);
    *ids = out.p;
    *n_ids = out.n;
    return BL_OK;
}

bl_status bl_tokenizer_encode(const bl_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t **ids, size_t *n_ids, bl_err *err) {
    if (!t || !ids || !n_ids) return bl_fail(err, BL_ERR_ARG, "tokenizer: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return bl_fail(err, BL_ERR_ARG, "%s: NULL text", t->path);
    return encode_impl(t, text, len, add_bos, NULL, 0, false, ids, n_ids, err);
}

bl_status bl_tokenizer_encode_pieces(const bl_tokenizer *t, const bl_tok_piece *pieces, size_t n,
                                     bool parse_special, int32_t **ids, size_t *n_ids,
                                     bl_err *err) {
    if (!t || !ids || !n_ids || (!pieces && n))
        return bl_fail(err, BL_ERR_ARG, "tokenizer: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    size_t total = 0, n_forced = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pieces[i].text && pieces[i].len)
            return bl_fail(err, BL_ERR_ARG, "%s: NULL text in piece %zu", t->path, i);
        if (pieces[i].id >= t->n_vocab)
            return bl_fail(err, BL_ERR_ARG, "%s: token id %d outside [0, %d)", t->path,
                           (int)pieces[i].id, (int)t->n_vocab);
        if (bl_add_overflows(total, pieces[i].len, &total))
            return bl_fail(err, BL_ERR_ARG, "%s: text too long", t->path);
        n_forced += pieces[i].id >= 0;
    }
    char *text = bl_malloc(total + 1);
    forced_span *forced = bl_malloc_array(n_forced + 1, sizeof *forced);
    if (!text || !forced) {
        free(text);
        free(forced);
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory encoding %zu bytes", t->path, total);
    }
    size_t off = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].id >= 0) forced[k++] = (forced_span){off, pieces[i].len, pieces[i].id};
        if (pieces[i].len) memcpy(text + off, pieces[i].text, pieces[i].len);
        off += pieces[i].len;
    }
    bl_status st = encode_impl(t, text, total, false, forced, n_forced, parse_special, ids, n_ids,
                               err);
    free(text);
    free(forced);
    return st;
}
