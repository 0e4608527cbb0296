/* Text helpers of the server and the chat session: growable strings, whole UTF-8 characters for
 * streamed output, stop strings. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

bool srv_str_put(srv_str *s, const char *p, size_t n) {
    size_t need;
    if (bl_add_overflows(s->n, n, &need) || bl_add_overflows(need, 1, &need)) return false;
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *q = realloc(s->p, cap);
        if (!q) return false;
        s->p = q;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = 0;
    return true;
}

void srv_str_free(srv_str *s) {
    free(s->p);
    s->p = NULL;
    s->n = s->cap = 0;
}

/* ---- UTF-8 ---- */

/* Length of a well-formed sequence at s (n bytes available): > 0 complete, 0 a valid but
 * incomplete prefix, -1 invalid at its first byte. */
static int utf8_seq(const unsigned char *s, size_t n) {
    const unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;  /* no overlong forms */
        if (c == 0xED) hi = 0x9F;  /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;  /* <= U+10FFFF */
    } else {
        return -1;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        const unsigned lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i) return -1;
    }
    return len;
}

bool srv_utf8_push(srv_utf8 *h, const char *p, size_t n, bool final, srv_str *out) {
    static const char replacement[] = "\xEF\xBF\xBD";
    /* the held bytes first, completed from p one byte at a time */
    size_t used = 0;
    while (h->n > 0) {
        int l = utf8_seq(h->pend, (size_t)h->n);
        if (l > 0) {
            if (!srv_str_put(out, (const char *)h->pend, (size_t)l)) return false;
            memmove(h->pend, h->pend + l, (size_t)(h->n - l));
            h->n -= l;
        } else if (l < 0) {
            if (!srv_str_put(out, replacement, 3)) return false;
            memmove(h->pend, h->pend + 1, (size_t)(h->n - 1));
            h->n--;
        } else if (used < n) {
            h->pend[h->n++] = (unsigned char)p[used++];
        } else if (final) {
            if (!srv_str_put(out, replacement, 3)) return false;
            h->n = 0;
        } else {
            return true;
        }
    }
    const unsigned char *s = (const unsigned char *)p;
    size_t i = used, run = used; /* s[run..i) is valid text not yet copied */
    while (i < n) {
        int l = utf8_seq(s + i, n - i);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        if (!srv_str_put(out, p + run, i - run)) return false;
        if (l < 0) {
            if (!srv_str_put(out, replacement, 3)) return false;
            run = ++i;
            continue;
        }
        /* an incomplete character at the end */
        if (final) {
            if (!srv_str_put(out, replacement, 3)) return false;
        } else {
            memcpy(h->pend, s + i, n - i);
            h->n = (int)(n - i);
        }
        return true;
    }
    return srv_str_put(out, p + run, i - run);
}

/* ---- stop strings ---- */

long srv_find_stop(const char *text, size_t n, size_t from, char *const *stop, int n_stop) {
    long best = -1;
    for (int k = 0; k < n_stop; k++) {
        const size_t len = strlen(stop[k]);
        if (len == 0 || len > n) continue;
        size_t start = from >= len - 1 ? from - (len - 1) : 0;
        for (size_t i = start; i + len <= n; i++)
            if (memcmp(text + i, stop[k], len) == 0) {
                if (best < 0 || (long)i < best) best = (long)i;
                break;
            }
    }
    return best;
}

size_t srv_stop_hold(const char *text, size_t n, char *const *stop, int n_stop) {
    size_t hold = 0;
    for (int k = 0; k < n_stop; k++) {
        const size_t len = strlen(stop[k]);
        for (size_t l = len > 0 ? len - 1 : 0; l > hold; l--)
            if (l <= n && memcmp(text + n - l, stop[k], l) == 0) {
                hold = l;
                break;
            }
    }
    return hold;
}
