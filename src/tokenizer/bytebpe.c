/* Byte-level BPE (GPT-2, Llama-3, Qwen2/3): normalizer (NFC or none), pre-tokenizer steps (regex
 * Split with HF's split behaviours, ByteLevel with its optional GPT-2 regex and prefix space), then
 * BPE by merge rank inside each pre-token.
 *
 * The vocabulary was converted at load time from GPT-2's printable byte alphabet to raw bytes, so
 * pre-tokens are matched and merged as the bytes of the text. Pre-tokens repeat a lot in real
 * text, so each encode call caches the ids of the pre-tokens it has merged. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * (0-32, 127-160, 173) take U+0100.. in byte order. */
uint32_t tk_byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173 */
}

int tk_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    return n < 33 ? (int)n : n < 67 ? (int)(127 + n - 33) : 173;
}

bool tk_bytelevel_decode(const char *s, size_t len, tk_buf *out) {
    out->n = 0;
    if (!tk_buf_reserve(out, len + 1)) return false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = tk_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        int b = l ? tk_cp_to_byte(cp) : -1;
        if (b < 0) return false;
        out->p[out->n++] = (char)b;
        i += l;
    }
    return true;
}

typedef struct {
    uint32_t start, len;
    bool match;
} tk_span;

typedef struct {
    tk_span *p;
    size_t n, cap;
} tk_spans;

struct tk_bpe_ctx {
    tk_buf buf;                 /* normalized text, plus prefixed copies of pre-tokens */
    tk_spans cur, next, pieces;
    tk_merge_ws ws;
    tk_strmap cache;            /* pre-token bytes -> offset of its ids in cache_ids */
    tk_ids cache_ids;           /* at each offset: count, then the ids */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
};

/* Pre-tokens longer than this are not cached (they rarely repeat). */
#define CACHE_MAX_LEN 64

tk_bpe_ctx *tk_bpe_ctx_new(const bl_tokenizer *t) {
    tk_bpe_ctx *c = bl_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->md = pcre2_match_data_create(1, NULL);
    c->mctx = pcre2_match_context_create(NULL);
    /* JIT's default 32 KiB stack can be too small for long runs of one class */
    c->jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!c->md || !c->mctx) {
        tk_bpe_ctx_free(c);
        return NULL;
    }
    if (c->jit) pcre2_jit_stack_assign(c->mctx, NULL, c->jit);
    return c;
}

void tk_bpe_ctx_free(tk_bpe_ctx *c) {
    if (!c) return;
    tk_buf_free(&c->buf);
    free(c->cur.p);
    free(c->next.p);
    free(c->pieces.p);
    tk_ws_free(&c->ws);
    tk_strmap_free(&c->cache);
    free(c->cache_ids.p);
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jit);
    free(c);
}

static bool span_push(tk_spans *v, uint32_t start, uint32_t len, bool match) {
    if (v->n == v->cap) {
        tk_span *p = tk_grow(v->p, &v->cap, v->n + 1, sizeof *p);
        if (!p) return false;
        v->p = p;
    }
    v->p[v->n++] = (tk_span){start, len, match};
    return true;
}

/* Cuts span sp of c->buf at the matches of step->re and appends the pieces to out, combined as
 * HF's SplitDelimiterBehavior says. */
static bl_status split_span(const bl_tokenizer *t, tk_bpe_ctx *c, const tk_pre_step *step,
                            tk_span sp, tk_spans *out, bl_err *err) {
    const uint8_t *s = (const uint8_t *)c->buf.p + sp.start;
    size_t len = sp.len, pos = 0, last = 0;
    c->pieces.n = 0;
    while (pos < len) {
        int rc = pcre2_match(step->re, s, len, pos, 0, c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: pre-tokenizer regex failed: %s",
                           t->path, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: no piece, move on one character */
            pos = ms + tk_utf8_len(s + ms, len - ms);
            continue;
        }
        if (ms > last && !span_push(&c->pieces, sp.start + (uint32_t)last,
                                    (uint32_t)(ms - last), false))
            goto nomem;
        if (!span_push(&c->pieces, sp.start + (uint32_t)ms, (uint32_t)(me - ms), true))
            goto nomem;
        last = pos = me;
    }
    if (last < len &&
        !span_push(&c->pieces, sp.start + (uint32_t)last, (uint32_t)(len - last), false))
        goto nomem;
    tk_span *pc = c->pieces.p;
    size_t np = c->pieces.n, base = out->n;
    if (step->invert)
        for (size_t i = 0; i < np; i++) pc[i].match = !pc[i].match;
    bool prev_match = false;
    switch (step->behavior) {
    case TK_SPLIT_ISOLATED:
        for (size_t i = 0; i < np; i++)
            if (!span_push(out, pc[i].start, pc[i].len, false)) goto nomem;
        break;
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < np; i++)
            if (!pc[i].match && !span_push(out, pc[i].start, pc[i].len, false)) goto nomem;
        break;
    case TK_SPLIT_MERGED_PREV: /* a delimiter joins the piece before it */
        for (size_t i = 0; i < np; i++) {
            if (pc[i].match && !prev_match && out->n > base) out->p[out->n - 1].len += pc[i].len;
            else if (!span_push(out, pc[i].start, pc[i].len, false)) goto nomem;
            prev_match = pc[i].match;
        }
        break;
    case TK_SPLIT_MERGED_NEXT: /* a delimiter joins the piece after it */
        for (size_t i = np; i-- > 0;) {
            if (pc[i].match && !prev_match && out->n > base) {
                out->p[out->n - 1].start = pc[i].start;
                out->p[out->n - 1].len += pc[i].len;
            } else if (!span_push(out, pc[i].start, pc[i].len, false)) {
                goto nomem;
            }
            prev_match = pc[i].match;
        }
        for (size_t i = base, j = out->n; i + 1 < j; i++, j--) {
            tk_span tmp = out->p[i];
            out->p[i] = out->p[j - 1];
            out->p[j - 1] = tmp;
        }
        break;
    case TK_SPLIT_CONTIGUOUS: /* runs of delimiters become one piece */
        for (size_t i = 0; i < np; i++) {
            if (pc[i].match == prev_match && out->n > base) out->p[out->n - 1].len += pc[i].len;
            else if (!span_push(out, pc[i].start, pc[i].len, false)) goto nomem;
            prev_match = pc[i].match;
        }
        break;
    }
    return BL_OK;
nomem:
    return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory pre-tokenizing", t->path);
}

/* BPE of one pre-token. */
static bool encode_word(const bl_tokenizer *t, tk_bpe_ctx *c, const char *w, uint32_t len,
                        tk_ids *out) {
    if (t->ignore_merges) { /* Llama-3: a pre-token that is a token is taken whole */
        int32_t id = tk_strmap_get(&t->pieces, w, len);
        if (id >= 0) return tk_ids_push(out, id);
    }
    bool cacheable = len <= CACHE_MAX_LEN;
    if (cacheable) {
        if (!c->cache.slot && !tk_strmap_init(&c->cache, 1024)) return false;
        int32_t at = tk_strmap_get(&c->cache, w, len);
        if (at >= 0) {
            for (int32_t k = 0; k < c->cache_ids.p[at]; k++)
                if (!tk_ids_push(out, c->cache_ids.p[at + 1 + k])) return false;
            return true;
        }
    }
    tk_merge_ws *ws = &c->ws;
    ws->n = 0;
    for (uint32_t i = 0; i < len; i++) {
        int32_t id = t->byte_id[(uint8_t)w[i]];
        if (id < 0) id = t->unk; /* no such byte in the vocabulary */
        if (id >= 0 && !tk_ws_push(ws, id, i, 1, false)) return false;
    }
    if (ws->n == 0) return true;
    if (!tk_merge(t, w, ws)) return false;
    size_t first = out->n;
    for (int32_t i = 0; i >= 0; i = ws->sym[i].next)
        if (!tk_ids_push(out, ws->sym[i].id)) return false;
    if (!cacheable || c->cache_ids.n > INT32_MAX / 2) return true;
    int32_t at = (int32_t)c->cache_ids.n;
    if (!tk_ids_push(&c->cache_ids, (int32_t)(out->n - first))) return false;
    for (size_t k = first; k < out->n; k++)
        if (!tk_ids_push(&c->cache_ids, out->p[k])) return false;
    return tk_strmap_put(&c->cache, w, len, at, NULL);
}

bl_status tk_bytebpe_encode(const bl_tokenizer *t, tk_bpe_ctx *c, const char *s, size_t n,
                            tk_ids *out, bl_err *err) {
    if (n >= UINT32_MAX / 4)
        return bl_fail(err, BL_ERR_ARG, "%s: text of %zu bytes is too long", t->path, n);
    c->buf.n = 0;
    if (!(t->nfc ? tk_nfc(s, n, &c->buf) : tk_buf_put(&c->buf, s, n))) goto nomem;
    c->cur.n = 0;
    if (!span_push(&c->cur, 0, (uint32_t)c->buf.n, false)) goto nomem;
    for (int k = 0; k < t->n_pre; k++) {
        const tk_pre_step *step = &t->pre[k];
        c->next.n = 0;
        for (size_t i = 0; i < c->cur.n; i++) {
            tk_span sp = c->cur.p[i];
            if (step->prefix_space && (sp.len == 0 || c->buf.p[sp.start] != ' ')) {
                /* the prefixed copy goes to the end of buf; spans are offsets, so realloc is
                 * harmless */
                uint32_t at = (uint32_t)c->buf.n;
                if (!tk_buf_reserve(&c->buf, (size_t)sp.len + 1)) goto nomem;
                c->buf.p[c->buf.n++] = ' ';
                memcpy(c->buf.p + c->buf.n, c->buf.p + sp.start, sp.len);
                c->buf.n += sp.len;
                sp.start = at;
                sp.len += 1;
            }
            if (c->buf.n >= UINT32_MAX) goto nomem;
            if (!step->re) {
                if (!span_push(&c->next, sp.start, sp.len, false)) goto nomem;
                continue;
            }
            bl_status st = split_span(t, c, step, sp, &c->next, err);
            if (st) return st;
        }
        tk_spans tmp = c->cur;
        c->cur = c->next;
        c->next = tmp;
    }
    for (size_t i = 0; i < c->cur.n; i++)
        if (c->cur.p[i].len &&
            !encode_word(t, c, c->buf.p + c->cur.p[i].start, c->cur.p[i].len, out))
            goto nomem;
    return BL_OK;
nomem:
    return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory encoding %zu bytes", t->path, n);
}
