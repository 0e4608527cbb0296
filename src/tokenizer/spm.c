/* SentencePiece-style BPE with byte fallback (llama2.c's encoder, llama.cpp's "llama" vocabulary,
 * HF tokenizer.json BPE models over "▁" pieces).
 *
 * The text gets its dummy-prefix space, is cut into UTF-8 characters, each character becomes its
 * piece or, when the vocabulary lacks it, one <0xXX> token per byte; then pairs merge as
 * described in merge.c. With piece scores the text is merged in stretches that no piece can span
 * (tok_internal.h, adj): a cut between two characters that never stand side by side inside a
 * piece changes nothing, since no merged symbol could ever cover both. Spaces stay plain spaces here: the loaders spelled every "▁" in the
 * vocabulary as a space, which is how llama2.c's tokenizer.bin stores them, so one algorithm
 * serves every file. (A literal U+2581 in the input therefore stays that character, encoded by
 * byte fallback, where SentencePiece itself would read it as a space.) */
#include <string.h>

#include "tokenizer/tok_internal.h"

/* Symbols for one character: its piece, else its bytes (byte fallback), else <unk>. */
static bool push_char(const bl_tokenizer *t, const char *s, uint32_t at, uint32_t len, int32_t id,
                      tk_merge_ws *ws) {
    if (id >= 0) return tk_ws_push(ws, id, at, len, false);
    bool all = true;
    for (uint32_t i = 0; i < len; i++) all &= t->byte_id[(uint8_t)s[at + i]] >= 0;
    if (all) {
        for (uint32_t i = 0; i < len; i++)
            if (!tk_ws_push(ws, t->byte_id[(uint8_t)s[at + i]], at + i, 1, true)) return false;
        return true;
    }
    return tk_ws_push(ws, t->unk, at, len, true); /* -1 when there is no <unk>: dropped below */
}

/* Merges the pending symbols and appends their ids. */
static bool flush(const bl_tokenizer *t, const char *s, tk_merge_ws *ws, tk_ids *out) {
    if (ws->n == 0) return true;
    if (!tk_merge(t, s, ws)) return false;
    for (int32_t i = 0; i >= 0; i = ws->sym[i].next)
        if (ws->sym[i].id >= 0 && !tk_ids_push(out, ws->sym[i].id)) return false;
    ws->n = 0;
    return true;
}

static bool encode_range(const bl_tokenizer *t, const char *s, uint32_t start, uint32_t end,
                         tk_merge_ws *ws, tk_ids *out) {
    ws->n = 0;
    uint32_t prev = 0;
    bool prev_piece = false, cut = t->adj.slot != NULL;
    for (uint32_t i = start; i < end;) {
        uint32_t cp;
        uint32_t l = (uint32_t)tk_utf8_char((const uint8_t *)s + i, end - i, &cp);
        int32_t id = tk_strmap_get(&t->pieces, s + i, l), r, m;
        /* no piece holds prev followed by this character: nothing merges across here */
        if (cut && ws->n && (!prev_piece || id < 0 || !tk_pairmap_get(&t->adj, (int32_t)prev,
                                                                      (int32_t)cp, &r, &m)) &&
            !flush(t, s, ws, out))
            return false;
        if (!push_char(t, s, i, l, id, ws)) return false;
        prev = cp;
        prev_piece = id >= 0;
        i += l;
    }
    return flush(t, s, ws, out);
}

bl_status tk_spm_encode(const bl_tokenizer *t, const char *s, size_t n, bool first,
                        tk_merge_ws *ws, tk_buf *scratch, tk_ids *out, bl_err *err) {
    if (n == 0) return BL_OK;
    bool prefix = t->prefix == TK_PREFIX_EVERY ||
                  (t->prefix == TK_PREFIX_EVERY_IF_MISSING && s[0] != ' ') ||
                  (t->prefix == TK_PREFIX_FIRST_IF_MISSING && first && s[0] != ' ');
    if (n >= UINT32_MAX - 1)
        return bl_fail(err, BL_ERR_ARG, "%s: text of %zu bytes is too long", t->path, n);
    scratch->n = 0;
    if ((prefix && !tk_buf_put(scratch, " ", 1)) || !tk_buf_put(scratch, s, n)) goto nomem;
    const char *text = scratch->p;
    uint32_t len = (uint32_t)scratch->n;
    if (!t->split_on_space) {
        if (!encode_range(t, text, 0, len, ws, out)) goto nomem;
        return BL_OK;
    }
    /* HF Metaspace with split=true: every space starts a new word, merges stay inside words */
    for (uint32_t start = 0; start < len;) {
        uint32_t end = start + 1;
        while (end < len && text[end] != ' ') end++;
        if (!encode_range(t, text, start, end, ws, out)) goto nomem;
        start = end;
    }
    return BL_OK;
nomem:
    return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory encoding %zu bytes", t->path, n);
}
