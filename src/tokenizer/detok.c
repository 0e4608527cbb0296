/* Text out of a stream of tokens, always valid UTF-8. A character can be split across tokens
 * (byte-fallback <0xNN> pieces, byte-level pieces), and a model can emit bytes that never form
 * one; writing such bytes raw makes text and JSON output undecodable. The UTF-8 stream below
 * holds an incomplete sequence back until its next bytes arrive and turns bytes that cannot
 * complete one into U+FFFD, one per maximal invalid subpart (The Unicode Standard §3.9, "U+FFFD
 * Substitution of Maximal Subparts"), which is what HF tokenizers' ByteLevel decoder
 * (String::from_utf8_lossy) and Python's bytes.decode(errors="replace") produce. The whole-text
 * decoder (bl_tokenizer_decode) and the streaming one (bl_detok) share it, so streamed text
 * equals decoded text. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Length of the sequence that lead byte b starts (0: b cannot start one) and the range of its
 * second byte (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF). */
static int seq_len(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;
    if (b < 0xE0) return 2;
    if (b < 0xF0) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 3;
    }
    if (b < 0xF5) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

static size_t put_fffd(char *out) {
    memcpy(out, "\xEF\xBF\xBD", 3);
    return 3;
}

size_t bl_utf8_stream_feed(bl_utf8_stream *u, const char *in, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t b = (uint8_t)in[i];
        uint8_t lo, hi;
        if (u->n > 0) {
            const int need = seq_len(u->pend[0], &lo, &hi);
            if (u->n > 1) lo = 0x80, hi = 0xBF;
            if (b >= lo && b <= hi) {
                u->pend[u->n++] = b;
                if (u->n == need) {
                    memcpy(out + k, u->pend, (size_t)need);
                    k += (size_t)need;
                    u->n = 0;
                }
                continue;
            }
            k += put_fffd(out + k); /* the held bytes are one maximal subpart */
            u->n = 0;
        }
        const int need = seq_len(b, &lo, &hi);
        if (need == 1) out[k++] = (char)b;
        else if (need == 0) k += put_fffd(out + k);
        else u->pend[u->n++] = b;
    }
    return k;
}

size_t bl_utf8_stream_finish(bl_utf8_stream *u, char *out) {
    if (u->n == 0) return 0;
    u->n = 0;
    return put_fffd(out);
}

char *bl_utf8_valid(const char *s, size_t n, size_t *out_len) {
    size_t cap;
    if (bl_mul_overflows(n + 3, 3, &cap) || bl_add_overflows(cap, 1, &cap)) return NULL;
    char *out = bl_malloc(cap);
    if (!out) return NULL;
    bl_utf8_stream u = {{0}, 0};
    size_t k = bl_utf8_stream_feed(&u, s, n, out);
    k += bl_utf8_stream_finish(&u, out + k);
    out[k] = 0;
    if (out_len) *out_len = k;
    return out;
}

bl_status bl_detok_init(bl_detok *d, const bl_tokenizer *t, bl_err *err) {
    memset(d, 0, sizeof *d);
    if (!t) return bl_fail(err, BL_ERR_ARG, "detokenizer: no tokenizer");
    size_t longest = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->dec_len[i] > longest) longest = t->dec_len[i];
    d->cap = 3 * (longest + 3) + 1;
    d->buf = bl_malloc(d->cap);
    if (!d->buf) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", t->path);
    d->tok = t;
    return BL_OK;
}

void bl_detok_free(bl_detok *d) {
    free(d->buf);
    memset(d, 0, sizeof *d);
}

const char *bl_detok_push(bl_detok *d, int32_t id, size_t *len) {
    size_t k = 0;
    if (id >= 0 && id < d->tok->n_vocab)
        k = bl_utf8_stream_feed(&d->utf8, d->tok->dec.p + d->tok->dec_off[id],
                                d->tok->dec_len[id], d->buf);
    d->buf[k] = 0;
    *len = k;
    return d->buf;
}

const char *bl_detok_finish(bl_detok *d, size_t *len) {
    size_t k = bl_utf8_stream_finish(&d->utf8, d->buf);
    d->buf[k] = 0;
    *len = k;
    return d->buf;
}
